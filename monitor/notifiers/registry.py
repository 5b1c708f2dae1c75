"""Which receiver kinds exist, and every owner's receivers, built once from the daemon config.

Adding a receiver kind is one module defining ``KIND`` (a :class:`~monitor.notifiers.base.ReceiverKind`)
and one line in ``RECEIVER_KINDS``. An owner with no receiver that can be reached (no Slack token,
say) is told on the console, so an alert is never addressed to no one.
"""

from __future__ import annotations

from typing import TextIO

from monitor.config.models import DaemonConfig
from monitor.notifiers import console, mail, slack, webhook
from monitor.notifiers.base import Notifier, Receiver, ReceiverKind

RECEIVER_KINDS: dict[str, ReceiverKind] = {kind.kind: kind for kind in (console.KIND, slack.KIND, webhook.KIND, mail.KIND)}


class Receivers:
    """Receivers by owner and by name, and the notifier of each configured kind."""

    def __init__(self, config: DaemonConfig, console_stream: TextIO | None = None) -> None:
        self.notifiers: dict[str, Notifier] = {}
        for name, kind in RECEIVER_KINDS.items():
            notifier = kind.notifier(config, console_stream)
            if notifier is not None:
                self.notifiers[name] = notifier
        self._by_owner: dict[str, list[Receiver]] = {}
        for owner, settings in config.owners.items():
            found = [r for kind in RECEIVER_KINDS.values() for r in kind.receivers(owner, settings, config)]
            self._by_owner[owner] = [r for r in found if r.kind in self.notifiers]
        self._by_name = {r.name: r for receivers in self._by_owner.values() for r in receivers}

    def of(self, owner: str) -> list[Receiver]:
        """The owner's receivers, or its console when it has none that can be reached."""
        return self._by_owner.get(owner) or [console.receiver(owner)]

    def resolve(self, name: str) -> Receiver | None:
        """The receiver a notification row names, as the config says now; None when it is gone."""
        if name in self._by_name:
            return self._by_name[name]
        owner, _, kind = name.rpartition("/")
        if kind == "console" and owner:
            return console.receiver(owner)
        scheme, sep, target = name.partition(":")
        if sep and scheme in self.notifiers:  # a row written by monitor 0.1, named scheme:target
            return Receiver(name, scheme, target)
        return None

    def notifier(self, kind: str) -> Notifier | None:
        return self.notifiers.get(kind)

    def bundles(self, name: str) -> bool:
        """Whether several notifications to the receiver named ``name`` may go as one message."""
        receiver = self.resolve(name)
        return receiver is not None and receiver.kind in RECEIVER_KINDS and RECEIVER_KINDS[receiver.kind].bundles
