"""The ASGI application (Starlette), served by uvicorn inside ``monitor run``.

- ``POST /v1/models/{model}/predictions`` and ``.../labels``: a JSON object, an array, or JSON lines.
  A prediction may carry ``probability`` (the score of the positive class, 0 to 1, or null); a label
  must be one of the model's classes when it has them (its performance checks' ``classes``, or the
  reference's ``label`` column), and is kept as that class.
  202 with the counts; 400 naming every bad row (the good rows of the request are still taken);
  401 without the configured bearer token; 404 for a model without an ingest source; 413 past the
  body limit; 429 with Retry-After when too many requests are in flight or too much is waiting to
  be written; 503 with Retry-After when the database cannot be read (labels: or written).
- ``GET /healthz``: liveness and the last successful evaluation.
- ``GET /metrics``: Prometheus text format.
- ``GET /``: the status page.

Every request is refused unless its ``Host`` is an address the daemon listens on (421: DNS rebinding, a
foreign name resolving to this daemon), or a name in ``server.allowed_hosts``; one whose ``Origin`` is
another site than that ``Host`` (403: a browser page posting cross-site); and a POST whose body is
declared as anything but JSON or JSON lines (415: what an HTML form or a "simple" cross-site fetch sends).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from monitor.ingest.rows import BodyError, Parsed, validate_labels, validate_predictions
from monitor.ingest.sampler import Overloaded, Sampler, StorageUnavailable
from monitor.sources.ingest import IngestModel
from monitor.telemetry import CONTENT_TYPE, Telemetry


class BodyTooLarge(Exception):
    pass


@dataclass
class ServerState:
    models: dict[str, IngestModel]  # feature types and label classes, for models with an ingest source
    sampler: Sampler
    telemetry: Telemetry
    token: str
    max_body_bytes: int
    max_concurrent: int
    status_page: Callable[[], str]
    listen_host: str = "127.0.0.1"  # the host of server.listen: which Host headers are this daemon
    allowed_hosts: list[str] = field(default_factory=list)  # server.allowed_hosts: more names ("*": any)
    # The read endpoints ("status", "metrics", "healthz") that need the token too: beyond loopback, all
    # but those listed in server.public; on loopback, none.
    guarded_reads: frozenset[str] = frozenset()


# What a POST body may be declared as. A request without a Content-Type is taken (httpx and scripts send
# none); what a browser can send cross-site without asking first (text/plain, form encodings) is not.
ACCEPTED_TYPES = ("application/json", "application/x-ndjson", "application/jsonl")
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` of a Host header (or an origin's authority), the name lower-case, a bracketed IPv6
    address kept in brackets and a trailing dot dropped; None when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = value.partition(":")
        port = port_text if colon else None
    if port is not None and not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    name = name.rstrip(".")
    if not name or any(c in name for c in " /\\@?#%"):
        return None
    return name, int(port) if port else None


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` and ``Origin`` headers a request may carry (see the module's docstring)."""

    def __init__(self, listen_host: str, allowed: list[str]) -> None:
        listen = listen_host.lower().rstrip(".")
        self.any_host = "*" in allowed
        self.any_address = False  # listening on every interface: any IP address is one of ours
        names = {listen}
        try:
            address = ipaddress.ip_address(listen)
        except ValueError:
            loopback = listen == "localhost"
        else:
            loopback = address.is_loopback
            if address.is_unspecified:
                self.any_address = True
                names |= _LOOPBACK_NAMES | {socket.gethostname().lower()}
        if loopback:
            names |= _LOOPBACK_NAMES
        self.names = frozenset(names)
        self.allowed = frozenset(entry.strip().lower().rstrip(".") for entry in allowed if entry.strip() != "*")
        self.listen = listen_host
        self.host_refusal = functools.lru_cache(maxsize=256)(self._host_refusal)

    def _host_refusal(self, host: str | None) -> tuple[int, str] | None:
        if self.any_host:
            return None
        if host is None:
            return 400, "no Host header"
        split = _split_host(host)
        if split is None:
            return 400, f"malformed Host header {host!r}"
        name, port = split
        if name in self.names or name in self.allowed or (port is not None and f"{name}:{port}" in self.allowed):
            return None
        if self.any_address and _ip_literal(name):
            return None
        return (
            421,
            f"misdirected request: Host {host!r} is not this daemon's address ({self.listen}); a name that"
            " reaches it (a proxy, a DNS name) must be listed in server.allowed_hosts",
        )

    def origin_refusal(self, origin: str, host: str | None) -> str | None:
        """Why a request from a page at ``origin`` is refused: it is another site than ``host``."""
        scheme, sep, authority = origin.strip().lower().partition("://")
        ours = _split_host(host or "")
        theirs = _split_host(authority) if sep and "/" not in authority else None
        if ours is not None and theirs is not None and ours[0] == theirs[0]:
            origin_port = theirs[1] if theirs[1] is not None else _DEFAULT_PORTS.get(scheme)
            if ours[1] == origin_port or (ours[1] is None and theirs[1] is None):
                return None
        return f"cross-origin request refused: Origin {origin!r} is not this daemon ({host})"


class HostGuard:
    """ASGI middleware: applies a :class:`HostPolicy` to every HTTP request before it is routed."""

    def __init__(self, app: Any, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                elif name == b"origin":
                    origin = value.decode("latin-1")
            refusal = self.policy.host_refusal(host)
            if refusal is None and origin is not None:
                reason = self.policy.origin_refusal(origin, host)
                refusal = None if reason is None else (403, reason)
            if refusal is not None:
                await _json(refusal[0], {"error": refusal[1]})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def create_app(state: ServerState) -> Starlette:
    permits = asyncio.Semaphore(state.max_concurrent)
    expected = f"Bearer {state.token}".encode() if state.token else None

    def authorised(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > state.max_body_bytes:
            raise BodyTooLarge()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > state.max_body_bytes:
                raise BodyTooLarge()
            chunks.append(chunk)
        return b"".join(chunks)

    async def ingest(request: Request, work: Callable[[str, bytes, float], tuple[Parsed, dict]]) -> Response:
        if not authorised(request):
            return _json(401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-type")
        if declared is not None and declared.partition(";")[0].strip().lower() not in ACCEPTED_TYPES:
            return _json(
                415,
                {"error": f"Content-Type {declared!r} is not accepted: send {', '.join(ACCEPTED_TYPES)}"},
                {"Accept-Post": ", ".join(ACCEPTED_TYPES)},
            )
        model = request.path_params["model"]
        if model not in state.models:
            known = ", ".join(sorted(state.models)) or "none"
            return _json(404, {"error": f"unknown model {model!r}: models with an ingest source are {known}"})
        if permits.locked():
            return _json(429, {"error": "too many requests in flight; retry shortly"}, {"Retry-After": "1"})
        async with permits:
            try:
                body = await read_body(request)
            except BodyTooLarge:
                return _json(413, {"error": f"body larger than {state.max_body_bytes} bytes: send smaller batches"})
            from starlette.concurrency import run_in_threadpool

            try:
                parsed, extra = await run_in_threadpool(work, model, body, time.time())
            except BodyError as exc:
                return _json(400, {"error": str(exc), "accepted": 0, "rejected": 0})
            except Overloaded:
                return _json(429, {"error": "ingest is behind on writing to the database; retry shortly"}, {"Retry-After": "2"})
            except StorageUnavailable:
                return _json(503, {"error": "the database is unavailable; retry shortly"}, {"Retry-After": "5"})
        payload = {"accepted": len(parsed.rows), "rejected": len(parsed.rejected), **extra}
        if parsed.rejected:
            payload["errors"] = [r.to_dict() for r in parsed.rejected]
            return _json(400, payload)
        return _json(202, payload)

    def take_predictions(model: str, body: bytes, received: float) -> tuple[Parsed, dict]:
        parsed = validate_predictions(body, state.models[model].features, received)
        state.sampler.add(model, parsed.rows, len(parsed.rejected), received)
        state.telemetry.rows.labels(model, "accepted").inc(len(parsed.rows))
        state.telemetry.rows.labels(model, "rejected").inc(len(parsed.rejected))
        return parsed, {}

    def take_labels(model: str, body: bytes, received: float) -> tuple[Parsed, dict]:
        parsed = validate_labels(body, state.models[model].classes)
        matched = state.sampler.add_labels(model, parsed.rows, received) if parsed.rows else 0
        state.telemetry.labels.labels(model, "matched").inc(matched)
        state.telemetry.labels.labels(model, "unmatched").inc(len(parsed.rows) - matched)
        state.telemetry.labels.labels(model, "rejected").inc(len(parsed.rejected))
        return parsed, {"matched": matched}

    async def predictions(request: Request) -> Response:
        return await ingest(request, take_predictions)

    async def labels(request: Request) -> Response:
        return await ingest(request, take_labels)

    def refused(name: str, request: Request) -> Response | None:
        if name in state.guarded_reads and not authorised(request):
            return _json(401, {"error": f"missing or wrong bearer token (or list {name} in server.public)"},
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip
        return None

    async def healthz(request: Request) -> Response:
        if (answer := refused("healthz", request)) is not None:
            return answer
        last = state.telemetry.last_success
        return _json(
            200,
            {
                "status": "ok",
                "uptime_s": round(time.time() - state.telemetry.started, 1),
                "last_success": None if last is None else round(last, 3),
                "last_success_age_s": None if last is None else round(time.time() - last, 1),
            },
        )

    async def metrics(request: Request) -> Response:
        if (answer := refused("metrics", request)) is not None:
            return answer
        state.telemetry.sample_rows.set(state.sampler.sampled_rows())
        return Response(state.telemetry.render(), media_type=CONTENT_TYPE)

    async def index(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        if (answer := refused("status", request)) is not None:
            return answer
        return HTMLResponse(await run_in_threadpool(state.status_page))

    return Starlette(
        routes=[
            Route("/v1/models/{model}/predictions", predictions, methods=["POST"]),
            Route("/v1/models/{model}/labels", labels, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/", index, methods=["GET"]),
        ],
        middleware=[Middleware(HostGuard, policy=HostPolicy(state.listen_host, state.allowed_hosts))],
    )
