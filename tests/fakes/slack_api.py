"""A Slack Web API server on loopback, for slack-sdk's ``WebClient(base_url=server.url)``.

It is a real HTTP server (``http.server.ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port, in a
background thread): slack-sdk is not patched, so its request building, retry handlers (HTTP 429 with
Retry-After, 5xx, connection errors) and error handling all run as they do against slack.com.

Implemented methods, with the parameters the daemon uses:

- ``chat.postMessage``: channel (``#name``, ``name`` or an ID), text, blocks, metadata, thread_ts;
  answers the channel's ID (``C0001``, ...) and a new ``ts``, unique and increasing.
- Both refuse blocks past Slack's limits (50 blocks, 3000 characters a section): ``invalid_blocks``.
- ``chat.update``: channel ID, ts, text, blocks, metadata; ``message_not_found`` when there is no
  such message. As on Slack, metadata given replaces the message's, ``{}`` removes it, and without it
  the old one stays.
- ``conversations.history``: channel, oldest, latest, inclusive, include_all_metadata, limit, cursor;
  newest first, ``metadata`` only with include_all_metadata. ``latest=ts, inclusive, limit=1`` is
  the one message at ``ts`` (or the one before it, when that one is gone), as on Slack.
- ``conversations.replies``: channel, ts (the thread's parent), oldest, limit, cursor,
  include_all_metadata; the parent, then its replies, oldest first.
- ``conversations.list``: limit, cursor; every channel with its id and name.

Anything else answers ``unknown_method``. Every request needs ``Authorization: Bearer <token>`` with
the server's token, else ``invalid_auth``.

Channels are created on first use, unless the server is given a fixed list (``channels=[...]``): then
an unknown channel is ``channel_not_found``, as on a real workspace.

``server.answer_after = 0.05`` answers every POST that long after doing it: a client killed meanwhile
delivered without knowing it (tests/test_sigkill.py).

Faults are scripted per method and consumed one per request, in order::

    server.fail_next("chat.postMessage", status=429, retry_after=1)   # rate limited
    server.fail_next("chat.postMessage", status=500, times=3)         # server errors
    server.fail_next("chat.postMessage", error="channel_not_found")   # HTTP 200, ok: false

A request that gets a scripted fault changes nothing. Every request, answered or failed, is kept in
``server.requests`` (method, parsed parameters, HTTP status answered) so tests can assert exact
payloads and counts.

Message timestamps come from ``now`` (seconds since the epoch; the wall clock by default). A test that
holds the daemon's clock still must pass the same clock (``now=lambda: clock.now().timestamp()``):
the daemon looks for an in-doubt message in the history *since it queued it*, which only works when
Slack's clock and the daemon's roughly agree, as they do in production.

``stop()`` closes the listening socket (clients then get "connection refused", i.e. Slack is down);
``start()`` again listens on the same port with the messages and channels kept, i.e. Slack is back.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_PREFIX = "/api/"
BOT_USER = "U0BOT0001"
BOT_ID = "B0BOT0001"


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str  # the API method, e.g. "chat.postMessage"
    body: dict[str, Any]  # the parameters: JSON body, form body and query string, merged
    http_method: str  # "POST" (slack-sdk always posts) or "GET"
    content_type: str
    authorization: str | None
    status: int = 200  # the HTTP status answered
    ok: bool = True  # the ``ok`` answered
    error: str | None = None  # the ``error`` answered, if any
    received: float = field(default_factory=time.time)  # wall-clock time it arrived (bench/daemon.py)


@dataclass(frozen=True)
class Fault:
    status: int = 200
    error: str | None = None
    retry_after: float | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list | None
    metadata: dict | None
    thread_ts: str | None
    edited: bool = False
    updates: list[dict[str, Any]] = field(default_factory=list)

    def as_api(self, *, with_metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": self.ts, "text": self.text or ""}
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.edited:
            out["edited"] = {"user": BOT_USER, "ts": self.updates[-1]["ts"]}
        if with_metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out


class FakeSlackAPI:
    def __init__(
        self,
        token: str = "xoxb-test",
        *,
        channels: Iterable[str] | None = None,
        now: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.now = now
        # Seconds between doing what a POST asks and answering it (a slow network, a busy Slack): the
        # window in which a client that dies has delivered without knowing it.
        self.answer_after = 0.0
        self.host = host
        self.fixed_channels = channels is not None
        self._lock = threading.RLock()
        self._channels: dict[str, str] = {}  # name -> id
        self._messages: dict[str, list[Message]] = {}  # channel id -> messages, oldest first
        self._faults: dict[str, deque[Fault]] = {}
        self._requests: list[Request] = []
        self._last_ts_us = 0
        self._port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name in channels or ():
            self.create_channel(name)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeSlackAPI:
        """Listen (again, on the same port after a ``stop()``); returns self."""
        with self._lock:
            if self._server is not None:
                return self
            server = ThreadingHTTPServer((self.host, self._port), _handler(self))
            server.daemon_threads = True
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-slack-{self._port}", daemon=True
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until ``start()``. State is kept."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the fake Slack API has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL for ``WebClient(base_url=...)``, ending in '/'."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # -- scripting and inspection ---------------------------------------------------------------
    def fail_next(
        self, method: str, *, status: int = 200, error: str | None = None, retry_after: float | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests of ``method`` (``"*"``: any method) with a fault.

        ``status=429`` answers ``ratelimited`` (with a Retry-After header when ``retry_after`` is
        given); a 5xx status answers ``internal_error``; ``error`` alone answers HTTP 200 with
        ``ok: false`` and that error.
        """
        if status == 200 and not error:
            raise ValueError("a fault needs a non-200 status or an error")
        if status == 429 and error is None:
            error = "ratelimited"
        elif status >= 500 and error is None:
            error = "internal_error"
        fault = Fault(status, error, retry_after)
        with self._lock:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    def clear_faults(self) -> None:
        """The outage is over: no scripted fault is left."""
        with self._lock:
            self._faults.clear()

    def pending_faults(self, method: str | None = None) -> int:
        with self._lock:
            if method is not None:
                return len(self._faults.get(method, ()))
            return sum(len(q) for q in self._faults.values())

    @property
    def requests(self) -> list[Request]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def calls(self, method: str) -> list[Request]:
        """The requests of one API method, in arrival order."""
        return [r for r in self.requests if r.method == method]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def create_channel(self, name: str) -> str:
        """The ID of channel ``name`` (with or without '#'), created if need be."""
        name = name.lstrip("#")
        with self._lock:
            if name not in self._channels:
                self._channels[name] = f"C{len(self._channels) + 1:04d}"
                self._messages[self._channels[name]] = []
            return self._channels[name]

    def channel_id(self, name: str) -> str | None:
        with self._lock:
            return self._channels.get(name.lstrip("#"))

    def messages(self, channel: str | None = None) -> list[Message]:
        """Stored messages, oldest first: of one channel (name or ID), or of all channels."""
        with self._lock:
            if channel is None:
                out = [m for msgs in self._messages.values() for m in msgs]
                return sorted(out, key=lambda m: _ts_key(m.ts))
            channel_id = self._resolve(channel)
            return list(self._messages.get(channel_id, [])) if channel_id else []

    # -- request handling (called on the server's threads) --------------------------------------
    def handle(self, http_method: str, path: str, headers, raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        parts = urlsplit(path)
        method = parts.path[len(API_PREFIX) :] if parts.path.startswith(API_PREFIX) else parts.path.lstrip("/")
        content_type = headers.get("Content-Type", "") or ""
        body: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        parse_error = None
        if raw:
            try:
                if content_type.split(";")[0].strip().lower() == "application/json":
                    parsed = json.loads(raw.decode("utf-8"))
                    if not isinstance(parsed, dict):
                        raise ValueError("JSON body is not an object")
                    body.update(parsed)
                else:
                    body.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except (ValueError, UnicodeDecodeError) as exc:
                parse_error = f"invalid_json: {exc}"
        authorization = headers.get("Authorization")

        with self._lock:
            status, extra_headers, answer = self._answer(method, body, authorization, parse_error)
            self._requests.append(
                Request(
                    method, body, http_method, content_type, authorization, status, bool(answer.get("ok")), answer.get("error")
                )
            )
        return status, extra_headers, answer

    def _answer(
        self, method: str, body: dict[str, Any], authorization: str | None, parse_error: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if authorization != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        fault = self._take_fault(method)
        if fault is not None:
            extra = {"Retry-After": _header_number(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, extra, {"ok": False, "error": fault.error}
        if parse_error:
            return 200, {}, {"ok": False, "error": "invalid_json", "detail": parse_error}
        handler = _METHODS.get(method)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method", "req_method": method}
        return 200, {}, handler(self, body)

    def _take_fault(self, method: str) -> Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        return None

    def _resolve(self, channel: str, *, create: bool = False) -> str | None:
        """A channel parameter (``#name``, ``name`` or an ID) as an ID, or None when there is none."""
        if not channel:
            return None
        if channel in self._messages:
            return channel
        name = channel.lstrip("#")
        if name in self._channels:
            return self._channels[name]
        if create and not self.fixed_channels and not _looks_like_id(channel):
            return self.create_channel(name)
        return None

    def _next_ts(self) -> str:
        micros = max(int(self.now() * 1_000_000), self._last_ts_us + 100)
        self._last_ts_us = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- the API methods (under the lock) -------------------------------------------------------
    def _chat_post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(str(body.get("channel") or ""), create=True)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        text, blocks = body.get("text"), _maybe_json(body.get("blocks"))
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if not _valid_blocks(blocks):
            return {"ok": False, "error": "invalid_blocks"}
        metadata = _maybe_json(body.get("metadata"))
        if not _valid_metadata(metadata):
            return {"ok": False, "error": "invalid_metadata_format"}
        thread_ts = body.get("thread_ts") or None
        if thread_ts and not any(m.ts == thread_ts for m in self._messages[channel]):
            return {"ok": False, "error": "thread_not_found"}
        message = Message(channel, self._next_ts(), text, blocks, metadata, thread_ts)
        self._messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_api(with_metadata=True)}

    def _chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel") or "")
        if channel not in self._messages:
            return {"ok": False, "error": "channel_not_found"}
        ts = str(body.get("ts") or "")
        message = next((m for m in self._messages[channel] if m.ts == ts), None)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        text, blocks = body.get("text"), _maybe_json(body.get("blocks"))
        if text is None and blocks is None:
            return {"ok": False, "error": "no_text"}
        if not _valid_blocks(blocks):
            return {"ok": False, "error": "invalid_blocks"}
        metadata = _maybe_json(body.get("metadata"))
        if metadata != {} and not _valid_metadata(metadata):
            return {"ok": False, "error": "invalid_metadata_format"}
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if metadata is not None:
            message.metadata = metadata or None
        message.edited = True
        message.updates.append({"ts": self._next_ts(), "text": text, "blocks": blocks})
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.as_api(with_metadata=True),
        }

    def _conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(str(body.get("channel") or ""))
        if channel is None or channel not in self._messages:
            return {"ok": False, "error": "channel_not_found"}
        try:
            oldest = float(body.get("oldest") or 0)
            latest = float(body["latest"]) if body.get("latest") else None
            limit = max(1, min(int(body.get("limit") or 100), 999))
            offset = _decode_cursor(body.get("cursor"))
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        inclusive = _truthy(body.get("inclusive"))
        with_metadata = _truthy(body.get("include_all_metadata"))

        def within(message: Message) -> bool:
            ts = float(message.ts)
            above = ts >= oldest if inclusive else ts > oldest
            below = latest is None or (ts <= latest if inclusive else ts < latest)
            return above and below

        # Top-level messages only, as Slack does (replies live in conversations.replies).
        matching = [m for m in reversed(self._messages[channel]) if within(m) and (not m.thread_ts or m.thread_ts == m.ts)]
        return {**_page(matching, offset, limit, with_metadata), "pin_count": 0}

    def _conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(str(body.get("channel") or ""))
        if channel is None or channel not in self._messages:
            return {"ok": False, "error": "channel_not_found"}
        parent = str(body.get("ts") or "")
        try:
            oldest = float(body.get("oldest") or 0)
            limit = max(1, min(int(body.get("limit") or 100), 999))
            offset = _decode_cursor(body.get("cursor"))
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        if not any(m.ts == parent for m in self._messages[channel]):
            return {"ok": False, "error": "thread_not_found"}
        with_metadata = _truthy(body.get("include_all_metadata"))
        # The parent first, then its replies, oldest first, as Slack answers.
        thread = [m for m in self._messages[channel] if m.ts == parent or (m.thread_ts == parent and float(m.ts) >= oldest)]
        return _page(thread, offset, limit, with_metadata)

    def _conversations_list(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            limit = max(1, min(int(body.get("limit") or 100), 1000))
            offset = _decode_cursor(body.get("cursor"))
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        everything = sorted(self._channels.items(), key=lambda item: item[1])
        page = everything[offset : offset + limit]
        has_more = offset + limit < len(everything)
        return {
            "ok": True,
            "channels": [
                {"id": cid, "name": name, "is_channel": True, "is_private": False, "is_archived": False, "is_member": True}
                for name, cid in page
            ],
            "response_metadata": {"next_cursor": _encode_cursor(offset + limit) if has_more else ""},
        }


_METHODS: dict[str, Callable[[FakeSlackAPI, dict[str, Any]], dict[str, Any]]] = {
    "chat.postMessage": FakeSlackAPI._chat_post_message,
    "chat.update": FakeSlackAPI._chat_update,
    "conversations.history": FakeSlackAPI._conversations_history,
    "conversations.list": FakeSlackAPI._conversations_list,
    "conversations.replies": FakeSlackAPI._conversations_replies,
}


def _valid_blocks(blocks: Any) -> bool:
    """Slack's Block Kit limits the daemon could exceed: 50 blocks a message, 3000 characters a section."""
    if blocks is None:
        return True
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    return all(
        len((b.get("text") or {}).get("text", "")) <= 3000 for b in blocks if isinstance(b, dict) and b.get("type") == "section"
    )


def _page(messages: list[Message], offset: int, limit: int, with_metadata: bool) -> dict[str, Any]:
    """One page of a history or a thread, with the cursor of the next."""
    has_more = offset + limit < len(messages)
    return {
        "ok": True,
        "messages": [m.as_api(with_metadata=with_metadata) for m in messages[offset : offset + limit]],
        "has_more": has_more,
        "response_metadata": {"next_cursor": _encode_cursor(offset + limit) if has_more else ""},
    }


def _handler(api: FakeSlackAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeSlack/1.0"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def _serve(self, http_method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                status, extra_headers, answer = api.handle(http_method, self.path, self.headers, raw)
            except Exception as exc:  # a bug in the fake: say so loudly rather than hang the client
                status, extra_headers, answer = 500, {}, {"ok": False, "error": f"fake_slack_bug: {exc!r}"}
            if api.answer_after and http_method == "POST":  # done, but the client hears of it only later
                time.sleep(api.answer_after)
            payload = json.dumps(answer).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args) -> None:  # keep test output clean
            pass

    return Handler


def _maybe_json(value: Any) -> Any:
    """Blocks and metadata arrive as objects in a JSON body, as JSON text in a form body."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _valid_metadata(metadata: Any) -> bool:
    """Absent, or an object with ``event_type`` and ``event_payload`` (chat.postMessage and chat.update alike)."""
    return metadata is None or (isinstance(metadata, dict) and "event_type" in metadata and "event_payload" in metadata)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _looks_like_id(channel: str) -> bool:
    return channel[:1] in ("C", "G", "D") and channel[1:].isalnum() and channel.upper() == channel


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: Any) -> int:
    if not cursor:
        return 0
    text = base64.urlsafe_b64decode(str(cursor).encode()).decode()
    if not text.startswith("offset:"):
        raise ValueError(f"bad cursor {cursor!r}")
    return int(text[len("offset:") :])
