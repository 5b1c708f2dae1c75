"""Receiver ``console``: the alert printed to the terminal, for the demo and for daemons without Slack."""

from __future__ import annotations

import sys
from datetime import datetime
from threading import Lock
from typing import TextIO

from monitor.notifiers.base import Delivery, Posted
from monitor.notifiers.message import AlertMessage


class ConsoleNotifier:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = Lock()

    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None) -> Delivery:
        stream = self.stream or sys.stdout
        rule = "=" * 78
        with self._lock:
            stream.write(f"\n{rule}\nALERT for {target}\n{message.text()}\n{rule}\n")
            stream.flush()
        return Delivery.sent()

    def find(self, target: str, key: str, since: datetime) -> Posted | None:
        # A terminal keeps no record: an in-doubt console delivery is printed again (at least once).
        return None
