"""The delivery loop: pending notifications in the database, claimed one at a time and sent.

The evaluator writes an alert's state change and its pending notifications in one transaction; this
loop only ever reads those rows. A notification is claimed with a conditional update
(``pending -> sending``) before the notifier is called and recorded after, so:

- a crash before the claim leaves it pending, and it is sent after the restart;
- a crash between the claim and the record leaves it ``sending`` (in doubt); the notifier is asked
  whether the message is out there (Slack: by the key in its metadata, with the model, check, episode
  and event), and it is marked sent or sent again accordingly. The key holds the database's
  installation id, so another database's message in the same channel is never taken for this one.
  A claim names the replica that made it (monitor/storage/replicas.py): what a gone replica left in
  doubt is settled at start-up and on every pass, by whichever replica looks first; a live replica's
  claims are left to it, so a replica starting never takes what another has in hand;
- a claim that is never recorded while its process lives on (a database error after the claim) is
  settled the same way once it is older than the lease (5 minutes by default), checked on every pass;
  ``monitor check`` settles only those, so it never re-sends what a running daemon has in hand;
- a payload this version cannot read (written by another version) is recorded as ``failed``;
- a retryable failure puts it back to pending with exponential backoff (or Slack's Retry-After);
- notifications of one alert to one receiver go out in order, so a "resolved" update never
  overtakes the "firing" message it updates;
- notifications due together to a Slack channel or mailbox may go as one message (a route's group,
  a summary past the cap per minute: monitor/notifiers/bundling.py); each is claimed on its own and
  carries the leader's id in ``bundle``, so a crash is settled for all of them by the leader's key;
- at start-up, what failed for good in the last ``give_up_after`` and still matters is tried once
  more: a restart is how a mended config takes effect.

The loop reports the ``delivery`` condition to :class:`~monitor.health.Health` (``/healthz``, the status
page, the log, once): while it cannot read or write its table, and while a notification is still
undelivered ``stuck_after`` (10 minutes) after it was owed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, object_session

from monitor.alerting.rules import SEVERITY_RANK
from monitor.alerting.silences import LABELS as SILENCE_LABELS
from monitor.alerting.silences import SilenceRule, holding
from monitor.clock import Clock
from monitor.config.durations import format_duration
from monitor.health import Health, LogThrottle, in_one_line
from monitor.logs import bind, log_context
from monitor.notifiers import bundling
from monitor.notifiers.base import Delivery, Notifier, Posted, Receiver
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.own_alerts import OwnAlerts, ReceiverWatch
from monitor.notifiers.registry import Receivers
from monitor.storage.db import installation_id
from monitor.storage.replicas import Replicas
from monitor.storage.tables import Alert, DeliveryAttempt, Notification, Silence

log = logging.getLogger(__name__)

UNFINISHED = ("pending", "sending")
HELD = "held"  # a silence holds it until it ends; then it goes, unless its news is moot
DROPPED = "silenced"  # not sent: the alert came and went within a silence
DELIVERY = "delivery"  # the condition of Health this loop reports
# By then a notification has had nine attempts (backoff 2 s doubling): a receiver failing that long is an
# outage to be told, not a blip retried quietly.
STUCK_AFTER = timedelta(minutes=10)
GIVE_UP_AFTER = timedelta(hours=24)
"""A retryable failure still failing this long after the notification was owed is recorded as failed:
the news is a day old, and a receiver broken that long needs a person, not another attempt."""
MAX_RETRY_AFTER_S = 3600.0
PER_MINUTE_SPAN = timedelta(minutes=1)
"""The span a receiver's cap (``notifiers.per_minute``) counts messages over."""
LATE_AFTER = timedelta(minutes=1)
"""A message sent this long after its state change says so, and how late it is."""


def delivery_key(installation: str, notification_id: int) -> str:
    """What a delivery is known by outside the database: notification ids repeat across databases."""
    return f"monitor-{installation}-{notification_id}"


# What a claimed notification needs to be sent: its notifier and receiver, the message, its key, the
# message it updates, and its episode's key.
_Ready = tuple[Notifier, Receiver, AlertMessage, str, Posted | None, str]


def _lateness(created: datetime, late: timedelta) -> str:
    seconds = late.total_seconds()
    shown = timedelta(seconds=round(seconds / 60) * 60 if seconds >= 120 else round(seconds))
    return f"sent late: this changed at {created:%Y-%m-%d %H:%M:%S} UTC, {format_duration(shown)} before it could be sent"


def episode_key(installation: str, alert_id: int) -> str:
    """What an alert episode is known by outside the database: every delivery of it carries this."""
    return f"monitor-{installation}-alert-{alert_id}"


class Outbox:
    def __init__(
        self,
        engine: Engine,
        receivers: Receivers,
        clock: Clock,
        *,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        lease: timedelta = timedelta(minutes=5),
        on_attempt: Callable[[str, str], None] | None = None,
        health: Health | None = None,
        stuck_after: timedelta = STUCK_AFTER,
        give_up_after: timedelta = GIVE_UP_AFTER,
        jitter: float = 0.25,
        seed: int | None = None,
        platform_owner: str | None = None,
        maintenance: Callable[[datetime], list[SilenceRule]] | None = None,
        per_minute: int = 10,
        replicas: Replicas | None = None,
    ) -> None:
        self.engine = engine
        self.replicas = replicas or Replicas(engine, clock)  # whose claims are whose; this outbox's are its own
        self.receivers = receivers
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.lease = lease  # a claim older than this is in doubt even though its process may still run
        self.on_attempt = on_attempt
        self.health = health or Health()
        self.stuck_after = stuck_after  # an undelivered notification older than this makes delivery degraded
        self.give_up_after = give_up_after  # a notification still failing this long after it was owed fails for good
        self.jitter = jitter
        self._random = random.Random(seed)
        self.watch = ReceiverWatch(OwnAlerts(receivers), platform_owner)  # a receiver failing for good is told elsewhere
        self.maintenance = maintenance  # the check files' maintenance windows in force at a time, as silences
        self.per_minute = per_minute  # messages to one bundling receiver a minute; past it, a summary
        self._wake = threading.Event()
        self._recovered = False
        self._installation: str | None = None  # read once: a database keeps its id
        self._failing = LogThrottle(log)  # by receiver: an outage is one line, then one a minute

    def reconfigure(self, receivers: Receivers, *, give_up_after: timedelta, per_minute: int, platform_owner: str | None) -> None:
        """A reloaded daemon config: its receivers and delivery settings apply from the next delivery (a
        delivery in hand finishes with the ones it began with)."""
        self.receivers = receivers
        self.watch = ReceiverWatch(OwnAlerts(receivers), platform_owner)
        self.give_up_after = give_up_after
        self.per_minute = per_minute

    # -- the loop -------------------------------------------------------------------------------
    def wake(self) -> None:
        """Deliver now rather than at the next tick (called after an evaluation changed an alert)."""
        self._wake.set()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Deliver until ``stop`` is set, then once more, so what the last evaluations owe goes out."""
        while True:
            try:
                if not self._recovered:
                    self.recover()  # at start-up: what the last process (or any gone replica) left in doubt
                    self.retry_failed()  # and the config may have mended what failed for good
                    self._recovered = True
                else:
                    self.recover_stale()  # a replica gone since; claims never recorded (a database error)
                self.deliver_due()
                stuck = self.stuck()
                if stuck is None:
                    self.health.recovered(DELIVERY)
                else:
                    self.health.failing(DELIVERY, stuck)
            except sa.exc.SQLAlchemyError as exc:  # the database is down: keep the loop, try next tick
                reason = f"the outbox cannot read or write its notifications: {in_one_line(exc)}"
                self.health.failing(DELIVERY, reason, exc_info=exc)
            except Exception as exc:  # a bug must not end the thread while the daemon runs on delivering nothing
                reason = f"outbox pass failed: {type(exc).__name__}: {exc}; trying again next tick"
                self.health.failing(DELIVERY, reason, exc_info=exc)
            if stop.is_set():
                return
            self._wake.wait(interval)
            self._wake.clear()

    # -- recovery -------------------------------------------------------------------------------
    def recover(self, older_than: timedelta | None = None) -> int:
        """Settle deliveries left in doubt; returns how many were settled.

        A ``sending`` row counts when the replica that claimed it is gone (at start-up: the last process
        crashed), and, with ``older_than``, when it was claimed longer ago than that; a delivery a live
        replica has in hand (say, waiting out a Retry-After) is left to it. Each row is settled only if
        it is still the same claim, so one recorded meanwhile by its process is not touched.
        """
        query = sa.select(Notification).where(Notification.status == "sending")
        cutoff = self.clock.now() - older_than if older_than is not None else None
        with Session(self.engine) as session:
            rows = session.scalars(query.order_by(Notification.id)).all()
            mine = self.replicas.id
            live = self.replicas.live() if any(row.claimed_by != mine for row in rows) else {mine}
            # A bundle is settled whole, once its last claim is old enough: its members are claimed one
            # after another, and one settled without its leader would be sent again alone.
            newest: dict[int, datetime] = {}
            for row in rows:
                if row.bundle is not None:
                    newest[row.bundle] = max(newest.get(row.bundle, row.time), row.time)

            def settled_here(row: Notification) -> bool:
                if row.claimed_by not in live:  # its replica is gone (a claim before replicas had none)
                    return True
                return cutoff is not None and (newest[row.bundle] if row.bundle is not None else row.time) < cutoff

            in_doubt = [
                (row.id, row.receiver, row.created, row.time, row.payload, row.bundle,
                 None if row.bundle is not None else self._previous(session, row))
                for row in rows
                if settled_here(row)
            ]  # fmt: skip
        # A bundle's leader first: the others went out in its message, or did not, with it.
        in_doubt.sort(key=lambda doubt: (bundle := doubt[5]) is not None and bundle != doubt[0])
        leaders: dict[int, Posted | None] = {}
        settled = 0
        for notification_id, receiver, created, claimed, payload, bundle, previous in in_doubt:
            if bundle is None or bundle == notification_id:
                found = self._find(notification_id, receiver, created, payload, previous)
                leaders[notification_id] = found
            else:
                found = leaders.get(bundle)
            if bundle is not None and found is not None:
                found = Posted(None, found.channel_id)  # as when it was recorded: later changes are told anew
            values: dict[str, object]
            if found is not None:
                values = dict(status="sent", message_id=found.message_id, channel_id=found.channel_id, error=None)
            else:
                values = dict(status="pending", next_attempt=self.clock.now(), bundle=None)
            with self.engine.begin() as conn:
                done = (
                    conn.execute(
                        sa.update(Notification)
                        .where(Notification.id == notification_id, Notification.status == "sending", Notification.time == claimed)
                        .values(time=self.clock.now(), **values)
                    ).rowcount
                    == 1
                )
                if done:  # the attempt the crash interrupted: what became of it
                    outcome, why = ("sent", "in doubt after a restart: found delivered") if found is not None else (
                        "retry", "in doubt after a restart: not found delivered, sent again")  # fmt: skip
                    conn.execute(sa.insert(DeliveryAttempt).values(notification_id=notification_id, time=self.clock.now(),
                                                                   outcome=outcome, error=why))  # fmt: skip
            if done:
                settled += 1
                log.info(
                    "notification %s was in doubt: %s",
                    notification_id,
                    "found delivered, not sending it again" if found is not None else "sending it (again)",
                )
        return settled

    def retry_failed(self) -> int:
        """At start-up, queue again what failed for good in the last ``give_up_after`` and still matters:
        a restart is how a mended config (a new token, a channel that exists now) takes effect, and an
        incident still firing, or a resolution of a message that did go out, is owed. Only the last
        notification of each incident to each receiver; returns how many were queued."""
        since = self.clock.now() - self.give_up_after
        with Session(self.engine) as session:
            last = (
                sa.select(sa.func.max(Notification.id))
                .where(Notification.created >= since)
                .group_by(Notification.alert_id, Notification.receiver)
            )
            failed = session.scalars(
                sa.select(Notification)
                .where(Notification.id.in_(last), Notification.status == "failed")
                .order_by(Notification.id)
            ).all()
            queued = 0
            for row in failed:
                firing = session.scalar(
                    sa.select(sa.func.count()).where(
                        sa.or_(Alert.id == row.alert_id, Alert.incident_id == row.alert_id), Alert.state == "firing"
                    )
                )
                told = session.scalar(
                    sa.select(sa.func.count()).where(
                        Notification.alert_id == row.alert_id, Notification.receiver == row.receiver,
                        Notification.status == "sent", Notification.id < row.id,
                    )
                )  # fmt: skip
                if firing if row.event != "resolved" else told:
                    row.status, row.next_attempt = "pending", self.clock.now()
                    row.error = f"failed for good before the restart, tried again: {row.error}"
                    queued += 1
            session.commit()
        if queued:
            log.info(
                "%s notification(s) that failed for good in the last %s are tried again",
                queued,
                format_duration(self.give_up_after),
            )
        return queued

    def deliver_now(self) -> int:
        """One pass for a command (``monitor check``, ``monitor alerts close``) while daemons may run:
        what is due goes out, what a gone replica left in doubt is settled, and a delivery a running
        daemon has in hand is left to it; this command is a replica while it delivers, so that the
        daemons leave its claims alone. Returns how many were delivered."""
        try:
            with self.replicas.beating():
                self.recover_stale()
                return self.deliver_due()
        finally:
            self.replicas.leave()

    def recover_stale(self) -> int:
        """Settle the deliveries of gone replicas, and those claimed longer ago than the lease (safe while
        daemons run)."""
        return self.recover(older_than=self.lease)

    def installation(self) -> str:
        """This database's installation id, which every delivery key holds (raises when it has none)."""
        if self._installation is None:
            self._installation = installation_id(self.engine)
        return self._installation

    def key(self, notification_id: int) -> str:
        """The delivery key of a notification of this database."""
        return delivery_key(self.installation(), notification_id)

    def _find(
        self, notification_id: int, receiver: str, created: datetime, payload: dict, previous: Posted | None
    ) -> Posted | None:
        found = self.receivers.resolve(receiver)
        notifier = self.receivers.notifier(found.kind) if found else None
        if found is None or notifier is None:
            return None
        try:
            message = AlertMessage.from_dict(payload)
        except Exception:  # unreadable: nothing to look for; the delivery then records it as failed
            return None
        key = self.key(notification_id)  # outside the try: without it nothing can be found, nor sent again
        try:
            return notifier.find(found.target, key, message, created, previous)
        except Exception:  # a notifier bug: not knowing means sending again (at least once)
            log.exception("notifier %s could not look up notification %s", found.kind, notification_id)
            return None

    # -- delivery -------------------------------------------------------------------------------
    def deliver_due(self, limit: int = 200) -> int:
        """Send every notification that is due, each after those before it of its alert and receiver (an
        incident's firing, then its updates, then its resolution); returns how many were sent."""
        self.installation()  # before any claim: a delivery without its key could not be found after a crash
        sent = attempted = 0
        while attempted < limit:
            # Only the first in line of each alert and receiver is due; the next one is, once it is done.
            due = self._due(limit - attempted)
            if not due:
                break
            for lot in self._lots(due):
                attempted += len(lot)
                if len(lot) == 1:
                    if self._claim(lot[0]):
                        sent += self._deliver(lot[0])
                else:
                    sent += self._deliver_bundle(lot)
        return sent

    def _lots(self, due: list[int]) -> list[list[int]]:
        """What goes out as one message (monitor/notifiers/bundling.py), of the notifications ``due``. A
        receiver at its cap gets nothing now: its notifications wait (``next_attempt``) until the minute
        has room."""
        now = self.clock.now()
        with Session(self.engine) as session:
            rows = session.execute(
                sa.select(Notification.id, Notification.receiver, Notification.event, Notification.group_key)
                .where(Notification.id.in_(due))
                .order_by(Notification.id)
            ).all()
            by_receiver: dict[str, list[sa.Row]] = {}
            for row in rows:
                by_receiver.setdefault(row.receiver, []).append(row)
            lots: list[list[int]] = []
            for receiver, its in by_receiver.items():
                if not self.receivers.bundles(receiver):  # a pager: every notification its own event, no cap
                    lots.extend([row.id] for row in its)
                    continue
                told, first = self._told_in_last_minute(session, receiver, now)
                going, waiting = bundling.lots([bundling.Due(r.id, r.event, r.group_key) for r in its], self.per_minute - told)
                lots.extend(going)
                if waiting:  # the minute is full: these wait until it has room
                    free = (first or now) + PER_MINUTE_SPAN
                    session.execute(sa.update(Notification).where(Notification.id.in_(waiting)).values(next_attempt=free))
            session.commit()
        return sorted(lots, key=min)  # in the order they were owed, whoever they go to

    def _told_in_last_minute(self, session: Session, receiver: str, now: datetime) -> tuple[int, datetime | None]:
        """News sent to ``receiver`` in the last minute (a bundle counts once; an update or a resolution,
        edited in place, not at all), and when the first was."""
        since = now - PER_MINUTE_SPAN
        count, first = session.execute(
            sa.select(sa.func.count(), sa.func.min(Notification.time)).where(
                Notification.receiver == receiver,
                Notification.time > since,
                Notification.status == "sent",
                Notification.event.in_(bundling.NEWS),
                sa.or_(Notification.bundle.is_(None), Notification.bundle == Notification.id),
            )
        ).one()
        return count or 0, first

    def stuck(self) -> str | None:
        """Why delivery is stuck, or None: notifications still undelivered ``stuck_after`` after they
        were owed (the receiver keeps failing, or the loop cannot keep up), the oldest named."""
        cutoff = self.clock.now() - self.stuck_after
        late = sa.and_(Notification.status.in_(UNFINISHED), Notification.created <= cutoff)
        with Session(self.engine) as session:
            # Both read through ix_notifications_status_next: only unfinished rows, never the history.
            waiting, oldest = session.execute(sa.select(sa.func.count(), sa.func.min(Notification.created)).where(late)).one()
            if not waiting:
                return None
            row = session.scalars(sa.select(Notification).where(late, Notification.created == oldest).limit(1)).one()
        return (
            f"{waiting} notification(s) undelivered for more than {format_duration(self.stuck_after)}; the oldest, "
            f"#{row.id} to {row.receiver} owed since {row.created.isoformat(timespec='seconds')}, "
            f"after {row.attempts} attempt(s): {row.error or 'not attempted yet'}"
        )

    def pending_count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(sa.select(sa.func.count()).where(Notification.status.in_(UNFINISHED))) or 0

    def _due(self, limit: int) -> list[int]:
        now = self.clock.now()
        with Session(self.engine) as session:
            # The oldest unfinished notification of each (alert, receiver) is the only one that may go.
            heads = (
                sa.select(sa.func.min(Notification.id))
                .where(Notification.status.in_((*UNFINISHED, HELD)))  # a held firing holds its resolution back too
                .group_by(Notification.alert_id, Notification.receiver)
            )
            return list(
                session.scalars(
                    sa.select(Notification.id)
                    .where(
                        Notification.status.in_(("pending", HELD)), Notification.next_attempt <= now, Notification.id.in_(heads)
                    )
                    .order_by(Notification.id)
                    .limit(limit)
                )
            )

    def _claim(self, notification_id: int) -> bool:
        with self.engine.begin() as conn:
            claimed = conn.execute(
                sa.update(Notification)
                .where(Notification.id == notification_id, Notification.status.in_(("pending", HELD)))
                .values(status="sending", attempts=Notification.attempts + 1, time=self.clock.now(), claimed_by=self.replicas.id)
            )
            return claimed.rowcount == 1

    def _deliver(self, notification_id: int) -> int:
        with log_context(notification_id=notification_id):  # on each line of the delivery, in JSON logs
            return self._deliver_one(notification_id)

    def _deliver_one(self, notification_id: int) -> int:
        with Session(self.engine) as session:
            row = session.get(Notification, notification_id)
            if row is None:  # deleted since it was claimed (retention): nothing to send
                return 0
            bind(receiver=row.receiver)
            if self._silenced(session, row):  # held until its silence ends, or dropped: nothing is sent
                session.commit()
                return 0
            receiver = self.receivers.resolve(row.receiver)
            kind = receiver.kind if receiver else "unknown"
            ready = self._prepare(session, row, receiver)
        # The transaction is over before the receiver is called: a slow Slack holds no database
        # connection, no lock and no snapshot (the row is ours by its claim).
        if not isinstance(ready, Delivery) and not self._still_ours([notification_id]):
            return 0
        delivery = ready if isinstance(ready, Delivery) else self._send(notification_id, *ready)
        with Session(self.engine) as session:
            row = session.get(Notification, notification_id)
            if row is None or not self._ours(row):
                return int(delivery.ok)
            self._record(row, delivery)
            status = row.status
            if not isinstance(ready, Delivery):  # the receiver itself answered: is it broken, or mended?
                self._watch_receiver(session, row, ready[2])
            session.commit()
        if self.on_attempt:
            try:
                self.on_attempt(kind, status)
            except Exception:
                log.exception("on_attempt failed for notification %s", notification_id)
        return int(delivery.ok)

    def _deliver_bundle(self, ids: list[int]) -> int:
        """Send several notifications to one receiver as one message: the worst one's, listing the others.

        Each is claimed as when sent alone, and carries the leader's id in ``bundle`` from its claim on,
        so a crash in between is settled for all of them by the leader's delivery key. The message is
        new (not an update of an earlier one) and later changes of each are told in messages of their own.
        """
        claimed = [i for i in ids if self._claim(i)]
        with Session(self.engine) as session:
            rows = [row for i in claimed if (row := session.get(Notification, i)) is not None]
            readable: list[tuple[Notification, AlertMessage]] = []
            for row in rows:
                if self._silenced(session, row):
                    continue
                try:
                    readable.append((row, AlertMessage.from_dict(row.payload)))
                except Exception as exc:  # written by another version: retrying cannot help
                    self._record(row, Delivery.failed(f"unreadable payload: {type(exc).__name__}: {exc}", retry=False))
            # The worst news leads: a firing before a repeat, then by severity, then the first owed.
            readable.sort(key=lambda item: (item[1].event != "firing", -SEVERITY_RANK.get(item[1].severity, -1), item[0].id))
            members = [(row.id, message.subject) for row, message in readable]
            ready: Delivery | _Ready | None = None
            if len(readable) > 1:
                head, message = readable[0]
                for row, _ in readable:
                    row.bundle = head.id
                receiver = self.receivers.resolve(head.receiver)
                kind = receiver.kind if receiver else "unknown"
                ready = self._prepare(session, head, receiver)
            session.commit()
        if len(members) <= 1:  # one left: it goes as it would alone, claimed already
            return self._deliver(members[0][0]) if members else 0
        head_id = members[0][0]
        if isinstance(ready, Delivery) or ready is None:
            delivery = ready or Delivery.failed("nothing to send", retry=False)
        else:
            notifier, receiver_, told, key, _previous, episode = ready
            told = dataclasses.replace(told, more=[subject for _, subject in members[1:]])
            if not self._still_ours([row_id for row_id, _ in members]):
                return 0
            delivery = self._send(head_id, notifier, receiver_, told, key, None, episode)
        with Session(self.engine) as session:
            statuses = []
            for row_id, _ in members:
                row = session.get(Notification, row_id)
                if row is None or not self._ours(row):
                    continue
                self._record(row, delivery)
                # Later changes of each are told anew: an update in place would overwrite the others.
                row.message_id = None
                if row.status != "sent":
                    row.bundle = None  # retried, it may go with others, or alone
                statuses.append(row.status)
            if not isinstance(ready, Delivery):
                first = session.get(Notification, head_id)
                if first is not None:
                    self._watch_receiver(session, first, message)
            session.commit()
        if self.on_attempt:
            for status in statuses:
                try:
                    self.on_attempt(kind, status)
                except Exception:
                    log.exception("on_attempt failed for notification %s", head_id)
        return len(statuses) if delivery.ok else 0

    def _ours(self, row: Notification) -> bool:
        """Whether ``row`` is still this outbox's claim. It is not when another replica took this one for
        gone (a pause past GONE_AFTER: a stopped process, a machine that froze) and settled it meanwhile:
        what that replica sent or recorded is not overwritten."""
        if row.status == "sending" and row.claimed_by == self.replicas.id:
            return True
        log.warning(
            "notification %s was settled by another replica while this one had it in hand (%s): left to it",
            row.id, row.claimed_by or row.status,
        )  # fmt: skip
        return False

    def _still_ours(self, ids: list[int]) -> bool:
        """Just before the receiver is called: every one of ``ids`` is still this outbox's claim."""
        with Session(self.engine) as session:
            return all((row := session.get(Notification, i)) is not None and self._ours(row) for i in ids)

    def _silenced(self, session: Session, row: Notification) -> bool:
        """Hold a claimed notification a silence matches until the silence ends; drop one whose news the
        silence made moot (a firing that resolved before it ended, or the resolution of such a firing).
        Returns whether it did either; the claim is undone (no attempt was made)."""
        now = self.clock.now()
        payload = row.payload if isinstance(row.payload, dict) else {}
        labels = {name: str(payload.get(name) or "") for name in ("model", "check", *SILENCE_LABELS)}
        active = session.scalars(sa.select(Silence).where(Silence.starts <= now, Silence.ends > now)).all()
        rules = [SilenceRule(s.id, s.model, s.check, s.starts, s.ends, s.reason, s.matchers or {}) for s in active]
        silence = holding([*rules, *(self.maintenance(now) if self.maintenance else [])], labels, now)
        if silence is not None:
            row.status, row.next_attempt, row.attempts = HELD, silence.ends, max(row.attempts - 1, 0)
            by = f"#{silence.id}" if silence.id else "the check file"  # a maintenance window has no number
            row.error = f"silenced by {by} until {silence.ends:%Y-%m-%d %H:%M:%S} UTC: {silence.reason}"
            return True
        same = sa.and_(Notification.alert_id == row.alert_id, Notification.receiver == row.receiver)

        def count(*where: Any) -> int:
            return session.scalar(sa.select(sa.func.count()).where(same, *where)) or 0

        if row.event != "resolved":
            was_held = (row.error or "").startswith("silenced by")
            if was_held and count(Notification.id > row.id, Notification.event == "resolved"):
                why = "not sent: it resolved while it was silenced"
            else:
                return False
        elif count(Notification.id < row.id, Notification.status == DROPPED) and not count(
            Notification.id < row.id, Notification.status == "sent"
        ):
            why = "not sent: what it resolves was silenced throughout"
        else:
            return False
        row.status, row.attempts, row.error = DROPPED, max(row.attempts - 1, 0), why
        return True

    def _prepare(self, session: Session, row: Notification, receiver: Receiver | None) -> Delivery | _Ready:
        """What sending ``row`` needs, read from the database; or the failure that makes it unsendable."""
        if receiver is None:
            return Delivery.failed(f"receiver {row.receiver!r} is not in the config any more", retry=False)
        notifier = self.receivers.notifier(receiver.kind)
        if notifier is None:
            return Delivery.failed(f"no notifier for {receiver.kind!r} receivers is configured", retry=False)
        try:
            message = AlertMessage.from_dict(row.payload)
        except Exception as exc:  # e.g. a key this version does not know: retrying cannot help
            log.error("notification %s has a payload this version cannot read: %s: %s", row.id, type(exc).__name__, exc)
            return Delivery.failed(f"unreadable payload: {type(exc).__name__}: {exc}", retry=False)
        late = self.clock.now() - row.created
        if late >= LATE_AFTER:  # the on-call engineer must know this is not news
            message = dataclasses.replace(message, late=_lateness(row.created, late))
        episode = episode_key(self.installation(), row.alert_id)
        return notifier, receiver, message, self.key(row.id), self._previous(session, row), episode

    def _send(
        self, notification_id: int, notifier: Notifier, receiver: Receiver, message: AlertMessage, key: str,
        previous: Posted | None, episode: str,
    ) -> Delivery:  # fmt: skip
        try:
            return notifier.send(receiver.target, message, key, previous, episode=episode)
        except Exception as exc:  # a notifier bug must not stop the loop; it is recorded and retried
            log.exception("notifier %s failed on notification %s", receiver.kind, notification_id)
            return Delivery.failed(f"{type(exc).__name__}: {exc}", retry=True)

    def _previous(self, session: Session, row: Notification) -> Posted | None:
        """The message an "updated" or "resolved" notification updates in place: the first one of its
        alert this receiver was sent (the "firing" one, or an "updated" one for a receiver a rise in
        severity brought in)."""
        if row.event == "firing":
            return None
        first = session.scalars(
            sa.select(Notification)
            .where(
                Notification.alert_id == row.alert_id,
                Notification.receiver == row.receiver,
                Notification.event.in_(("firing", "updated")),
                Notification.status == "sent",
                Notification.message_id.is_not(None),
                Notification.id < row.id,
            )
            .order_by(Notification.id)
            .limit(1)
        ).first()
        return Posted(first.message_id, first.channel_id) if first and first.message_id else None

    def _watch_receiver(self, session: Session, row: Notification, message: AlertMessage) -> None:
        condition = f"receiver {row.receiver}"
        if row.status == "failed":
            self.health.failing(condition, f"notifications to it fail for good: {row.error}")
            if self.watch.failed(session, row.receiver, row.error or "", message, self.clock.now()):
                self.wake()
        elif row.status == "sent":
            self.health.recovered(condition)
            if self.watch.recovered(session, row.receiver, self.clock.now()):
                self.wake()

    def _record(self, row: Notification, delivery: Delivery) -> None:
        now = self.clock.now()
        row.time = now
        if delivery.ok:
            row.status, row.error = "sent", None
            row.message_id, row.channel_id = delivery.posted.message_id, delivery.posted.channel_id
            model = row.payload.get("model") if isinstance(row.payload, dict) else None
            log.info("notification %s (%s, %s) delivered to %s", row.id, model, row.event, row.receiver)
            self._failing.clear(row.receiver)
        elif delivery.retry and now - row.created >= self.give_up_after:
            row.status = "failed"
            row.error = f"gave up after {format_duration(self.give_up_after)} and {row.attempts} attempts: {delivery.error}"
            log.error("notification %s to %s: %s", row.id, row.receiver, row.error)
        elif delivery.retry:
            row.status, row.error = "pending", delivery.error
            row.next_attempt = now + self.backoff(row.attempts, delivery.retry_after)
            self._failing.log(
                row.receiver,
                logging.WARNING,
                f"notification {row.id} to {row.receiver} failed ({delivery.error}); attempt {row.attempts}, "
                f"next at {row.next_attempt.isoformat(timespec='seconds')}",
            )
        else:
            row.status, row.error = "failed", delivery.error
            log.error("notification %s to %s failed for good: %s", row.id, row.receiver, delivery.error)
        session = object_session(row)
        if session is not None:  # every attempt, for `monitor alerts show`
            outcome = {"sent": "sent", "pending": "retry"}.get(row.status, "failed")
            session.add(DeliveryAttempt(notification_id=row.id, time=now, outcome=outcome, error=row.error))

    def backoff(self, attempts: int, retry_after: float | None = None) -> timedelta:
        """The wait before attempt ``attempts + 1``: doubling from ``backoff_base`` up to ``backoff_cap``,
        less up to a quarter at random (``jitter``), so that deliveries failed together by one outage do
        not all come back in the same second; never shorter than the receiver's Retry-After."""
        delay = min(self.backoff_base * 2 ** min(max(attempts - 1, 0), 60), self.backoff_cap)
        delay *= 1.0 - self.jitter * self._random.random()
        # A receiver's Retry-After is honoured up to an hour: `Retry-After: 1e12` must not stop delivery.
        asked = retry_after if retry_after is not None and math.isfinite(retry_after) and retry_after > 0 else 0.0
        return timedelta(seconds=max(delay, min(asked, MAX_RETRY_AFTER_S)))
