"""Who is told, and how: one module per receiver kind behind :class:`~monitor.notifiers.base.Notifier`,
and the outbox that delivers the pending notifications the evaluator writes.
"""

from __future__ import annotations

from typing import TextIO

from monitor.config.models import DaemonConfig
from monitor.notifiers.base import Delivery, Notifier, Posted
from monitor.notifiers.console import ConsoleNotifier


def build_notifiers(config: DaemonConfig, console: TextIO | None = None) -> dict[str, Notifier]:
    """The notifiers the config enables, keyed by receiver scheme (see monitor.alerting.routing)."""
    notifiers: dict[str, Notifier] = {"console": ConsoleNotifier(console)}
    token = config.notifiers.slack.token.get_secret_value()
    if token:
        from monitor.notifiers.slack import SlackNotifier

        notifiers["slack"] = SlackNotifier(token, config.notifiers.slack.base_url)
    return notifiers


__all__ = ["Delivery", "Notifier", "Posted", "build_notifiers"]
