"""Monitor's own alerts: a receiver that fails for good, a check file that does not load.

Both are episodes of the reserved model ``(monitor)`` (:class:`OwnAlerts`), check ``receivers`` or
``check-files``, told to an owner through their receivers. The rest of this docstring is the
receiver's case; the daemon raises a check file's at start (monitor/daemon/service.py).

A revoked Slack token (``invalid_auth``), a channel that is gone, a pager URL answering 404, or a
notification given up on after ``give_up_after``: nobody would hear of any alert that receiver was
for. So the outbox opens an episode for the receiver, of the reserved model ``(monitor)`` (no check
file can define it: model names have no parentheses), check ``receivers``, feature the receiver's
name, and tells the config's ``platform_owner`` (else the failing receiver's own owner) through
every receiver of theirs but the one that fails; an owner with no other receiver is told on the
console. The next delivery that reaches the receiver resolves the episode, and they are told that
too. The daemon's health says so meanwhile (``receiver NAME`` on ``/healthz``).
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
CHECK = "receivers"
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

    def open(self, session: Session, check: str, feature: str | None = None) -> Alert | None:
        query = sa.select(Alert).where(Alert.model == MODEL, Alert.check == check, Alert.state.in_(OPEN_STATES))
        return session.scalars(query.where(Alert.feature == feature) if feature is not None else query).first()

    def all_open(self, session: Session, check: str) -> list[Alert]:
        query = sa.select(Alert).where(Alert.model == MODEL, Alert.check == check, Alert.state.in_(OPEN_STATES))
        return list(session.scalars(query))


@dataclass(frozen=True)
class ReceiverWatch:
    receivers: Receivers
    platform_owner: str | None = None

    def failed(self, session: Session, receiver: str, error: str, told: AlertMessage | None, now: datetime) -> bool:
        """Open the receiver's episode (once) and owe its news to someone else; returns whether it opened."""
        owner = self.platform_owner or receiver.rpartition("/")[0] or receiver
        details = [f"the error: {error}"]
        if told is not None:
            details.append(f"what it could not deliver: {told.subject}")
        details.append("until it is mended, alerts for its owner reach no one there; see docs/alerting.md, When monitoring fails")
        rule = f"notifications to {receiver} fail for good"
        return OwnAlerts(self.receivers).raise_(session, CHECK, receiver, owner, rule, details, now, exclude=receiver)

    def recovered(self, session: Session, receiver: str, now: datetime) -> bool:
        """Resolve the receiver's episode, if it has one, and tell whoever heard of it."""
        return OwnAlerts(self.receivers).clear(session, CHECK, receiver, f"{receiver} delivered again", now)


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
