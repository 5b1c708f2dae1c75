"""The notifier plug-in interface: send one alert message to one target, and say what happened.

As in Alertmanager, the notifier decides whether a failure is worth retrying: a rate limit or a
server error is; a revoked token or an unknown channel is not, and becomes a visible error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from monitor.notifiers.message import AlertMessage


@dataclass(frozen=True)
class Posted:
    """Where a delivered message is, so that a later state change can update it in place."""

    message_id: str | None = None
    channel_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    ok: bool
    posted: Posted = Posted()
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None

    @classmethod
    def sent(cls, message_id: str | None = None, channel_id: str | None = None) -> Delivery:
        return cls(True, Posted(message_id, channel_id))

    @classmethod
    def failed(cls, error: str, *, retry: bool, retry_after: float | None = None) -> Delivery:
        return cls(False, error=error, retry=retry, retry_after=retry_after)


class Notifier(Protocol):
    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None) -> Delivery:
        """Deliver ``message``; with ``previous``, update that earlier message instead of posting anew.

        ``key`` is unique per delivery; a notifier that can attach it to the message lets ``find``
        tell after a crash whether the delivery went out.
        """

    def find(self, target: str, key: str, since: datetime) -> Posted | None:
        """The message delivered with ``key`` since ``since``, or None when it is not there (or unknowable)."""
