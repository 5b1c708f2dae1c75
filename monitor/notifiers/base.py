"""The receiver plug-in interface: a receiver kind finds an owner's receivers in the config and sends
one alert message to one of them, saying what happened.

A *receiver* is named ``owner/kind`` (``fraud-team/slack``): that name is what the ``notifications``
table and the logs show. Its *target* (a channel, a webhook URL) stays in memory, taken from the
config at start: a secret in a target is never stored or logged.

As in Alertmanager, the notifier decides whether a failure is worth retrying: a rate limit or a
server error is; a revoked token or an unknown channel is not, and becomes a visible error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TextIO

from monitor.notifiers.message import AlertMessage

if TYPE_CHECKING:
    from monitor.config.models import DaemonConfig, Owner


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
    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None, *, episode: str = "") -> Delivery:
        """Deliver ``message``; with ``previous``, update that earlier message instead of posting anew.

        ``key`` is unique per delivery across databases (it carries the installation id); a notifier
        that can attach it to the message, with the message's model, check, episode and event, lets
        ``find`` tell after a crash whether the delivery went out. ``episode`` is the same for every
        delivery of one alert episode, and unique across databases too (a pager's dedup key).
        """

    def find(self, target: str, key: str, message: AlertMessage, since: datetime, previous: Posted | None) -> Posted | None:
        """Where ``send(target, message, key, previous)`` delivered since ``since``, or None when that is
        not there (or unknowable). With ``previous``, the delivery may be that message, updated."""


@dataclass(frozen=True)
class Receiver:
    name: str  # "fraud-team/slack": what tables and logs show
    kind: str  # which notifier delivers to it
    target: str = ""  # what that notifier needs (a channel, a URL); may be a secret: never stored or logged


@dataclass(frozen=True)
class ReceiverKind:
    """A plug-in: the kind, an owner's receivers of this kind, the notifier (None: not configured), and
    whether messages to it may be bundled."""

    kind: str
    receivers: Callable[[str, Owner, DaemonConfig], list[Receiver]]
    notifier: Callable[[DaemonConfig, TextIO | None], Notifier | None]
    # Whether several notifications may go as one message (a route's group, a summary past the cap per
    # minute): a person reads a channel or a mailbox; a pager opens one incident per dedup_key.
    bundles: bool = True
