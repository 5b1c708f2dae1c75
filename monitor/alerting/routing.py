"""Who is told about an alert: the owner's receivers, plus those of every route whose labels match.

A receiver is named ``scheme:target`` (``slack:#fraud-alerts``, ``console:fraud-team``); the scheme
picks the notifier. Without a Slack token, every Slack receiver becomes the console.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.config.models import DaemonConfig


def owner_receivers(owner: str, config: DaemonConfig) -> list[str]:
    settings = config.owners.get(owner)
    slack_on = bool(config.notifiers.slack.token.get_secret_value())
    if settings is not None and settings.slack and slack_on:
        return [f"slack:{settings.slack}"]
    return [f"console:{owner}"]


def receivers_for(owner: str, labels: Mapping[str, str], config: DaemonConfig) -> list[str]:
    """Receivers in order, each once: the owner's first, then each matching route's ``also`` owners."""
    out = owner_receivers(owner, config)
    for route in config.routes:
        if all(labels.get(key) == value for key, value in route.match.labels().items()):
            for other in route.also:
                out += owner_receivers(other, config)
    return list(dict.fromkeys(out))
