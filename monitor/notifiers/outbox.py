"""The delivery loop: pending notifications in the database, claimed one at a time and sent.

The evaluator writes an alert's state change and its pending notifications in one transaction; this
loop only ever reads those rows. A notification is claimed with a conditional update
(``pending -> sending``) before the notifier is called and recorded after, so:

- a crash before the claim leaves it pending, and it is sent after the restart;
- a crash between the claim and the record leaves it ``sending`` (in doubt); at start-up the notifier
  is asked whether the message is out there (Slack: by the key in its metadata), and it is marked
  sent or sent again accordingly;
- a retryable failure puts it back to pending with exponential backoff (or Slack's Retry-After);
- notifications of one alert to one receiver go out in order, so a "resolved" update never
  overtakes the "firing" message it updates.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.clock import Clock
from monitor.notifiers.base import Delivery, Notifier, Posted
from monitor.notifiers.message import AlertMessage
from monitor.storage.tables import Notification

log = logging.getLogger(__name__)

UNFINISHED = ("pending", "sending")


def delivery_key(notification_id: int) -> str:
    return f"monitor-notification-{notification_id}"


class Outbox:
    def __init__(self, engine: Engine, notifiers: Mapping[str, Notifier], clock: Clock, *,
                 backoff_base: float = 2.0, backoff_cap: float = 300.0,
                 on_attempt: Callable[[str, str], None] | None = None) -> None:
        self.engine = engine
        self.notifiers = dict(notifiers)
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_attempt = on_attempt
        self._wake = threading.Event()

    # -- the loop -------------------------------------------------------------------------------
    def wake(self) -> None:
        """Deliver now rather than at the next tick (called after an evaluation changed an alert)."""
        self._wake.set()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Deliver until ``stop`` is set, then once more, so what the last evaluations owe goes out."""
        recovered = False
        while True:
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                self.deliver_due()
            except sa.exc.SQLAlchemyError as exc:  # the database is down: keep the loop, try next tick
                log.error("outbox cannot reach the database: %s", exc)
            if stop.is_set():
                return
            self._wake.wait(interval)
            self._wake.clear()

    # -- recovery -------------------------------------------------------------------------------
    def recover(self) -> int:
        """Settle deliveries left in doubt by a crash; returns how many there were."""
        with Session(self.engine) as session:
            in_doubt = session.scalars(sa.select(Notification).where(Notification.status == "sending")).all()
            for row in in_doubt:
                scheme, target = _split(row.receiver)
                notifier = self.notifiers.get(scheme)
                found = notifier.find(target, delivery_key(row.id), row.created) if notifier else None
                if found is not None:
                    log.info("notification %s was delivered before the restart; not sending it again", row.id)
                    row.status, row.message_id, row.channel_id, row.error = "sent", found.message_id, found.channel_id, None
                else:
                    row.status, row.next_attempt = "pending", self.clock.now()
                row.time = self.clock.now()
            session.commit()
            return len(in_doubt)

    # -- delivery -------------------------------------------------------------------------------
    def deliver_due(self, limit: int = 200) -> int:
        """Send every notification that is due and first in line for its alert; returns how many were sent."""
        sent = 0
        for notification_id in self._due(limit):
            if self._claim(notification_id):
                sent += self._deliver(notification_id)
        return sent

    def pending_count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(sa.select(sa.func.count()).where(Notification.status.in_(UNFINISHED))) or 0

    def _due(self, limit: int) -> list[int]:
        now = self.clock.now()
        with Session(self.engine) as session:
            # The oldest unfinished notification of each (alert, receiver) is the only one that may go.
            heads = (sa.select(sa.func.min(Notification.id))
                     .where(Notification.status.in_(UNFINISHED))
                     .group_by(Notification.alert_id, Notification.receiver))
            return list(session.scalars(
                sa.select(Notification.id)
                .where(Notification.status == "pending", Notification.next_attempt <= now, Notification.id.in_(heads))
                .order_by(Notification.id).limit(limit)))

    def _claim(self, notification_id: int) -> bool:
        with self.engine.begin() as conn:
            claimed = conn.execute(
                sa.update(Notification)
                .where(Notification.id == notification_id, Notification.status == "pending")
                .values(status="sending", attempts=Notification.attempts + 1, time=self.clock.now()))
            return claimed.rowcount == 1

    def _deliver(self, notification_id: int) -> int:
        with Session(self.engine) as session:
            row = session.get(Notification, notification_id)
            scheme, target = _split(row.receiver)
            notifier = self.notifiers.get(scheme)
            if notifier is None:
                delivery = Delivery.failed(f"no notifier for {scheme!r} receivers is configured", retry=False)
            else:
                message = AlertMessage.from_dict(row.payload)
                previous = self._previous(session, row) if row.event == "resolved" else None
                try:
                    delivery = notifier.send(target, message, delivery_key(row.id), previous)
                except Exception as exc:  # a notifier bug must not stop the loop; it is recorded and retried
                    log.exception("notifier %s failed on notification %s", scheme, row.id)
                    delivery = Delivery.failed(f"{type(exc).__name__}: {exc}", retry=True)
            self._record(row, delivery)
            session.commit()
            if self.on_attempt:
                self.on_attempt(scheme, row.status)
            return int(delivery.ok)

    def _previous(self, session: Session, row: Notification) -> Posted | None:
        first = session.scalars(
            sa.select(Notification)
            .where(Notification.alert_id == row.alert_id, Notification.receiver == row.receiver,
                   Notification.event == "firing", Notification.status == "sent")
            .order_by(Notification.id.desc()).limit(1)).first()
        return Posted(first.message_id, first.channel_id) if first and first.message_id else None

    def _record(self, row: Notification, delivery: Delivery) -> None:
        now = self.clock.now()
        row.time = now
        if delivery.ok:
            row.status, row.error = "sent", None
            row.message_id, row.channel_id = delivery.posted.message_id, delivery.posted.channel_id
            log.info("notification %s (%s, %s) delivered to %s", row.id, row.payload["model"], row.event, row.receiver)
        elif delivery.retry:
            row.status, row.error = "pending", delivery.error
            row.next_attempt = now + self.backoff(row.attempts, delivery.retry_after)
            log.warning("notification %s to %s failed (%s); attempt %s, next at %s", row.id, row.receiver,
                        delivery.error, row.attempts, row.next_attempt.isoformat(timespec="seconds"))
        else:
            row.status, row.error = "failed", delivery.error
            log.error("notification %s to %s failed for good: %s", row.id, row.receiver, delivery.error)

    def backoff(self, attempts: int, retry_after: float | None = None) -> timedelta:
        delay = min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_cap)
        return timedelta(seconds=max(delay, retry_after or 0.0))


def _split(receiver: str) -> tuple[str, str]:
    scheme, _, target = receiver.partition(":")
    return scheme, target
