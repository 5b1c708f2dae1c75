"""Receiver ``console``: the alert printed to the terminal, for the demo and for owners with no other
receiver that can be reached (no Slack token, say)."""

from __future__ import annotations

import sys
from datetime import datetime
from threading import Lock
from typing import TYPE_CHECKING, TextIO

from monitor.notifiers.base import Delivery, Posted, Receiver, ReceiverKind
from monitor.notifiers.message import AlertMessage

if TYPE_CHECKING:
    from monitor.config.models import DaemonConfig, Owner


class ConsoleNotifier:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = Lock()

    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None, *, episode: str = "") -> Delivery:
        stream = self.stream or sys.stdout
        rule = "=" * 78
        with self._lock:
            stream.write(f"\n{rule}\nALERT for {target}\n{message.text()}\n{rule}\n")
            stream.flush()
        return Delivery.sent()

    def find(self, target: str, key: str, message: AlertMessage, since: datetime, previous: Posted | None) -> Posted | None:
        # A terminal keeps no record: an in-doubt console delivery is printed again (at least once).
        return None


def receiver(owner: str) -> Receiver:
    return Receiver(f"{owner}/console", "console", owner)


def _receivers(owner: str, settings: Owner, config: DaemonConfig) -> list[Receiver]:
    return []  # the console is the fallback of an owner with no other receiver, never chosen


KIND = ReceiverKind("console", _receivers, lambda config, stream: ConsoleNotifier(stream))
