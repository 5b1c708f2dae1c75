"""Monitor's own alerts: when monitoring itself fails, it is an alert like a model's, told to a person.

Each is an episode of the reserved model ``(monitor)`` (no check file can define it: model names have
no parentheses; start-up closing leaves it alone), one check per cause, the failing thing as its
feature, at most one open per (check, feature), told to an owner through their receivers but the
failing one, or their console when none is left, and resolved when the cause is gone:

- ``receivers``: a receiver that fails for good (a revoked Slack token, a channel that is gone, a
  pager answering 404, a notification given up on after ``give_up_after``), raised and resolved by
  the outbox (:class:`ReceiverWatch`), told to the config's ``platform_owner``, else the receiver's
  own owner;
- ``check-files``: a check file that does not load, raised and resolved at the daemon's start;
- ``schedule``: a check that has not run for twice its interval, checked every minute by the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from monitor.notifiers.message import AlertMessage
from monitor.notifiers.registry import Receivers
from monitor.storage.tables import OPEN_STATES, Alert, Notification

MODEL = "(monitor)"
RECEIVERS = "receivers"
CHECK_FILES = "check-files"
SCHEDULE = "schedule"  # a check that has not run for twice its interval (monitor/daemon/service.py)


@dataclass(frozen=True)
class OwnAlerts:
    """Monitor's own episodes (model ``(monitor)``): one open per (check, feature) at most, told to an
    owner's receivers but ``exclude`` (the one that fails), or their console when none is left."""

    receivers: Receivers

    def raise_(
        self, session: Session, check: str, feature: str, owner: str, rule: str, details: list[str], now: datetime,
        exclude: str = "",
    ) -> bool:  # fmt: skip
        """Open the episode (once) and owe its news; returns whether it opened."""
        if self.open(session, check, feature) is not None:
            return False
        alert = Alert(model=MODEL, check=check, rule=rule, rule_key=f"{check}-failing", feature=feature,
                      severity="critical", state="firing", started=now, fired=now, last_value=1.0, threshold=1.0,
                      owner=owner, updated=now)  # fmt: skip
        session.add(alert)
        session.flush()
        alert.incident_id = alert.id
        message = _message(alert, "firing", details)
        alert.summary = message.subject
        others = [r.name for r in self.receivers.of(owner) if r.name != exclude]
        for name in others or [f"{owner}/console"]:
            session.add(Notification.pending(alert.id, "firing", name, message.to_dict(), now))
        return True

    def clear(self, session: Session, check: str, feature: str, detail: str, now: datetime) -> bool:
        """Resolve the episode, if there is one, and tell whoever heard of it."""
        alert = self.open(session, check, feature)
        if alert is None:
            return False
        alert.state, alert.resolved, alert.updated, alert.last_value = "resolved", now, now, 0.0
        message = _message(alert, "resolved", [detail])
        alert.summary = message.subject
        told = session.scalars(sa.select(Notification.receiver).where(Notification.alert_id == alert.id).distinct())
        for name in sorted(told):
            session.add(Notification.pending(alert.id, "resolved", name, message.to_dict(), now))
        return True

    def open(self, session: Session, check: str, feature: str) -> Alert | None:
        return next((a for a in self.all_open(session, check, feature) if a.feature == feature), None)

    def all_open(self, session: Session, check: str, feature: str | None = None) -> list[Alert]:
        """The open episodes of one cause (of one feature, when given)."""
        query = sa.select(Alert).where(Alert.model == MODEL, Alert.check == check, Alert.state.in_(OPEN_STATES))
        return list(session.scalars(query.where(Alert.feature == feature) if feature is not None else query))


@dataclass(frozen=True)
class ReceiverWatch:
    """A receiver's own alert, raised when it fails for good and resolved when it delivers again."""

    own: OwnAlerts
    platform_owner: str | None = None

    def failed(self, session: Session, receiver: str, error: str, told: AlertMessage | None, now: datetime) -> bool:
        """Open the receiver's episode (once) and owe its news to someone else; returns whether it opened."""
        owner = self.platform_owner or receiver.rpartition("/")[0] or receiver
        details = [f"the error: {error}"]
        if told is not None:
            details.append(f"what it could not deliver: {told.subject}")
        details.append("until it is mended, alerts for its owner reach no one there; see docs/alerting.md, When monitoring fails")
        rule = f"notifications to {receiver} fail for good"
        return self.own.raise_(session, RECEIVERS, receiver, owner, rule, details, now, exclude=receiver)

    def recovered(self, session: Session, receiver: str, now: datetime) -> bool:
        """Resolve the receiver's episode, if it has one, and tell whoever heard of it."""
        return self.own.clear(session, RECEIVERS, receiver, f"{receiver} delivered again", now)


def _message(alert: Alert, event: str, details: list[str]) -> AlertMessage:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return AlertMessage(
        alert_id=alert.id,
        event=event,
        model=MODEL,
        check=alert.check,
        kind=alert.check,
        owner=alert.owner,
        severity=alert.severity,
        rule=alert.rule,
        metric="failing",
        value=1.0 if event == "firing" else 0.0,
        threshold=1.0,
        started=alert.started.isoformat(),
        fired=iso(alert.fired),
        resolved=iso(alert.resolved),
        window="",
        window_start="",
        window_end="",
        sample_size=0,
        feature=alert.feature,
        details=details,
    )
