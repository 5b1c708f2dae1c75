"""A receiver that fails for good is itself an alert, sent through another receiver.

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
RULE_KEY = "receiver-failing"


@dataclass(frozen=True)
class ReceiverWatch:
    receivers: Receivers
    platform_owner: str | None = None

    def failed(self, session: Session, receiver: str, error: str, told: AlertMessage | None, now: datetime) -> bool:
        """Open the receiver's episode (once) and owe its news to someone else; returns whether it opened."""
        if self._open(session, receiver) is not None:
            return False
        owner = self.platform_owner or receiver.rpartition("/")[0] or receiver
        alert = Alert(model=MODEL, check=CHECK, rule=f"notifications to {receiver} fail for good", rule_key=RULE_KEY,
                      feature=receiver, severity="critical", state="firing", started=now, fired=now, last_value=1.0,
                      threshold=1.0, owner=owner, updated=now)  # fmt: skip
        session.add(alert)
        session.flush()
        alert.incident_id = alert.id
        details = [f"the error: {error}"]
        if told is not None:
            details.append(f"what it could not deliver: {told.subject}")
        details.append("until it is mended, alerts for its owner reach no one there; see docs/alerting.md, When monitoring fails")
        message = _message(alert, "firing", details)
        alert.summary = message.subject
        self._tell(session, alert, message, exclude=receiver, now=now)
        return True

    def recovered(self, session: Session, receiver: str, now: datetime) -> bool:
        """Resolve the receiver's episode, if it has one, and tell whoever heard of it."""
        alert = self._open(session, receiver)
        if alert is None:
            return False
        alert.state, alert.resolved, alert.updated, alert.last_value = "resolved", now, now, 0.0
        message = _message(alert, "resolved", [f"{receiver} delivered again"])
        alert.summary = message.subject
        told = session.scalars(sa.select(Notification.receiver).where(Notification.alert_id == alert.id).distinct())
        for name in sorted(told):
            session.add(Notification.pending(alert.id, "resolved", name, message.to_dict(), now))
        return True

    def _open(self, session: Session, receiver: str) -> Alert | None:
        return session.scalars(
            sa.select(Alert).where(
                Alert.model == MODEL, Alert.check == CHECK, Alert.feature == receiver, Alert.state.in_(OPEN_STATES)
            )
        ).first()

    def _tell(self, session: Session, alert: Alert, message: AlertMessage, *, exclude: str, now: datetime) -> None:
        others = [r.name for r in self.receivers.of(alert.owner) if r.name != exclude]
        for name in others or [f"{alert.owner}/console"]:
            session.add(Notification.pending(alert.id, message.event, name, message.to_dict(), now))


def _message(alert: Alert, event: str, details: list[str]) -> AlertMessage:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return AlertMessage(
        alert_id=alert.id,
        event=event,
        model=MODEL,
        check=CHECK,
        kind="receiver",
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
