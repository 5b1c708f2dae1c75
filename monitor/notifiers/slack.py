"""Receiver ``slack``: one message per alert episode in the owner's channel, updated in place.

Sent with slack-sdk's WebClient. Its retry handlers wait out short rate limits (HTTP 429 with
Retry-After), connection resets and server errors inside one attempt; what still fails is returned
to the outbox with ``retry`` set, and the outbox tries again later with backoff.

Each message carries in Slack message metadata its delivery key (unique across databases: it holds
the installation id) with the model, check, episode and event it tells of; an update on resolve
replaces the metadata with its own. After a crash between "sending" and "sent",
:meth:`SlackNotifier.find` looks for all of them: in the message a "resolved" update was to edit,
then in the channel's recent history. So a message or update that did go out is not sent a second
time, and another deployment's message in the same channel is never taken for ours (needs the
``channels:history`` and ``channels:read`` scopes; without them an in-doubt delivery is sent again).
"""

from __future__ import annotations

import logging
from datetime import datetime
from threading import Lock
from typing import TYPE_CHECKING, Any

from monitor.notifiers.base import Delivery, Posted, Receiver, ReceiverKind
from monitor.notifiers.message import AlertMessage

if TYPE_CHECKING:
    from monitor.config.models import DaemonConfig, Owner

log = logging.getLogger(__name__)


class _ToDebug(logging.Filter):
    """slack-sdk logs an ERROR line for every failed attempt (27 in 50 s of an outage for 2 messages);
    each failure is the outbox's to tell, once and then at most once a minute, so the SDK's own lines are
    demoted to debug and shown only with ``monitor --verbose``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return log.isEnabledFor(logging.DEBUG)


_SDK_LOG = logging.getLogger(f"{__name__}.sdk")
_SDK_LOG.addFilter(_ToDebug())

METADATA_EVENT = "monitor_alert"
_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
# Errors that go away by themselves; anything else (invalid_auth, channel_not_found, ...) needs a person.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackNotifier:
    def __init__(
        self, token: str, base_url: str = "https://slack.com/api/", *, rate_limit_retries: int = 2, timeout: float = 10.0
    ) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
            ServerErrorRetryHandler,
        )

        if not base_url.endswith("/"):
            base_url += "/"
        self.client = WebClient(
            token=token,
            base_url=base_url,
            timeout=int(timeout),
            logger=_SDK_LOG,
            retry_handlers=[
                ConnectionErrorRetryHandler(max_retry_count=2),
                RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
                ServerErrorRetryHandler(max_retry_count=2),
            ],
        )
        self._channel_ids: dict[str, str] = {}
        self._lock = Lock()

    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None, *, episode: str = "") -> Delivery:
        from slack_sdk.errors import SlackApiError, SlackClientError

        text, blocks, metadata = fallback_text(message), blocks_of(message), metadata_of(key, message)

        def post():
            return self.client.chat_postMessage(channel=target, text=text, blocks=blocks, unfurl_links=False, metadata=metadata)

        try:
            if message.event == "repeat" and (where := _where(previous)) is not None:
                # Still firing: said in the thread of its message, which stays as it is.
                channel, ts = where
                response = self.client.chat_postMessage(
                    channel=channel, thread_ts=ts, text=text, blocks=blocks, unfurl_links=False, metadata=metadata
                )
            elif (where := _where(previous)) is not None:
                channel, ts = where
                try:
                    # The metadata too: it is how find() recognises this update once it is in Slack.
                    response = self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks, metadata=metadata)
                except SlackApiError as exc:
                    if exc.response.get("error") != "message_not_found":
                        raise
                    # Someone deleted the message to update: say it in a new one rather than not at all.
                    log.warning("slack message %s in %s is gone; posting a new one to %s", ts, channel, target)
                    response = post()
            else:
                response = post()
        except SlackApiError as exc:
            return _failure(exc.response)
        except (SlackClientError, OSError) as exc:
            return Delivery.failed(f"slack unreachable: {type(exc).__name__}: {exc}", retry=True)
        return Delivery.sent(response.get("ts"), response.get("channel"))

    def find(self, target: str, key: str, message: AlertMessage, since: datetime, previous: Posted | None) -> Posted | None:
        from slack_sdk.errors import SlackApiError, SlackClientError

        expected = metadata_of(key, message)
        try:
            if message.event == "repeat" and (where := _where(previous)) is not None:
                return self._find_reply(*where, expected, since)
            if (where := _where(previous)) is not None:
                updated, ts = where
                # An update edits an older message, which no history since `since` would show: that one message.
                page = self.client.conversations_history(
                    channel=updated, latest=ts, inclusive=True, limit=1, include_all_metadata=True
                )
                at_ts: list[dict[str, Any]] = page.get("messages", [])  # or the one before, if that one is gone
                for item in at_ts:
                    if item.get("ts") == ts and _matches(item, expected):
                        return Posted(ts, updated)
            # Not updated: maybe posted as a new message (the one to update was deleted), or not at all.
            channel = self._channel_id(target)
            if channel is None:
                return None
            cursor = None
            while True:
                page = self.client.conversations_history(
                    channel=channel, oldest=f"{since.timestamp() - 60:.6f}", include_all_metadata=True, limit=200, cursor=cursor
                )
                messages: list[dict[str, Any]] = page.get("messages", [])
                for item in messages:
                    if _matches(item, expected):
                        return Posted(item.get("ts"), channel)
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("cannot look up slack history for %s (%s): an in-doubt message will be sent again", target, exc)
            return None

    def _find_reply(self, channel: str, thread: str, expected: dict[str, Any], since: datetime) -> Posted | None:
        """A repeat is a reply in its incident's thread, which no channel history shows: the thread's."""
        cursor = None
        while True:
            page = self.client.conversations_replies(
                channel=channel, ts=thread, oldest=f"{since.timestamp() - 60:.6f}", include_all_metadata=True, limit=200,
                cursor=cursor,
            )  # fmt: skip
            replies: list[dict[str, Any]] = page.get("messages", [])
            for item in replies:
                if item.get("ts") != thread and _matches(item, expected):
                    return Posted(item.get("ts"), channel)
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def _channel_id(self, target: str) -> str | None:
        if not target.startswith("#"):
            return target  # already an ID such as C0123
        name = target[1:]
        with self._lock:
            if name in self._channel_ids:
                return self._channel_ids[name]
        cursor = None
        while True:
            page = self.client.conversations_list(limit=1000, cursor=cursor, types="public_channel,private_channel")
            channels: list[dict[str, Any]] = page.get("channels", [])
            for channel in channels:
                with self._lock:
                    self._channel_ids[channel["name"]] = channel["id"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return self._channel_ids.get(name)


def metadata_of(key: str, message: AlertMessage) -> dict[str, Any]:
    """The Slack message metadata of one delivery: its key, and what it tells of.

    All strings, so what Slack hands back compares equal to what was sent whatever it does with numbers.
    """
    payload = {
        "key": key,
        "model": message.model,
        "check": message.check,
        "alert_id": str(message.alert_id),
        "event": message.event,
    }
    return {"event_type": METADATA_EVENT, "event_payload": payload}


def _matches(item: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a message from the history carries ``expected`` (every field: not the key alone)."""
    metadata = item.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return metadata.get("event_type") == expected["event_type"] and all(
        payload.get(name) == value for name, value in expected["event_payload"].items()
    )


def _where(previous: Posted | None) -> tuple[str, str] | None:
    """The channel and ts of the message to update, when there is one."""
    if previous is not None and previous.message_id and previous.channel_id:
        return previous.channel_id, previous.message_id
    return None


def _failure(response) -> Delivery:
    error = response.get("error") if hasattr(response, "get") else None
    status = response.status_code
    retry_after = None
    for name, value in (response.headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                retry_after = float(raw)
            except (TypeError, ValueError):
                retry_after = None
    transient = status == 429 or status >= 500 or error in _TRANSIENT
    return Delivery.failed(f"slack answered HTTP {status}: {error or 'no error code'}", retry=transient, retry_after=retry_after)


# -- rendering: the message in Slack's mrkdwn and Block Kit -----------------------------------------
def fallback_text(message: AlertMessage) -> str:
    """The plain text for Slack's fallback (notifications, screen readers), escaped as mrkdwn."""
    return "\n".join([escape(message.subject), *_lines(message)])


SECTION_CHARS = 3000
"""Slack refuses (``invalid_blocks``) a section whose text is longer; a message holds at most 50 blocks."""
MAX_SECTIONS = 40


def blocks_of(message: AlertMessage) -> list[dict[str, Any]]:
    emoji = ":white_check_mark:" if message.event == "resolved" else _EMOJI.get(message.severity, "")
    head = _cut(f"{emoji} *{escape(message.subject)}*", SECTION_CHARS)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        *({"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in _sections(_lines(message), message.alert_id)),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"monitor alert #{message.alert_id}"}]},
    ]


def _sections(lines: list[str], alert_id: int) -> list[str]:
    """The body in sections Slack takes: each at most SECTION_CHARS, at most MAX_SECTIONS of them (a
    summary of a large outage lists many alerts; the rest is in ``monitor alerts show``)."""
    sections: list[str] = []
    current = ""
    for line in (_cut(line, SECTION_CHARS) for line in lines):
        if current and len(current) + 1 + len(line) > SECTION_CHARS:
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        sections.append(current)
    if len(sections) > MAX_SECTIONS:
        sections = [*sections[: MAX_SECTIONS - 1], f"... more in `monitor alerts show {alert_id}`"]
    return sections


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lines(message: AlertMessage) -> list[str]:
    # The owner line is left as written: its mentions are Slack control sequences such as <@U0123>.
    return [escape(line) if not line.startswith("owner:") else line for line in message.lines()]


def escape(text: str) -> str:
    """Slack mrkdwn control characters in text that came from files or data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the plug-in ------------------------------------------------------------------------------------
def _receivers(owner: str, settings: Owner, config: DaemonConfig) -> list[Receiver]:
    return [Receiver(f"{owner}/slack", "slack", settings.slack)] if settings.slack else []


def _notifier(config: DaemonConfig, stream: object) -> SlackNotifier | None:
    token = config.notifiers.slack.token.get_secret_value()
    return SlackNotifier(token, config.notifiers.slack.base_url) if token else None


KIND = ReceiverKind("slack", _receivers, _notifier)
