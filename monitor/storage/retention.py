"""The tables' own retention: raw metrics folded into hourly aggregates, old runs and delivered
notifications deleted, a small batch per transaction.

``metrics`` grows by a row per value per run (about 177,000 a day for 8 checks). Past ``retention.raw``
(30 days) its rows are folded into ``metrics_hourly`` (per model, check, metric, feature, model
version and hour: min, max, mean, count and the last value) and deleted, in the same transaction, so
a crash leaves each row either raw or folded, never both nor neither; past ``retention.hourly`` (a
year) the hourly rows go too. The view ``metrics_series`` is both, one time series a dashboard reads
across the boundary (docs/database.md). ``check_runs`` past ``retention.runs`` and notifications past
``retention.notifications`` are deleted, but never a notification of an alert still open: its message
is the one a resolution updates in place.

Each batch is one short transaction (the write lock on SQLite, row locks on PostgreSQL): evaluations
and ingest wait for one batch at most, never for the backlog. On PostgreSQL the raw rows of a batch
are claimed with ``FOR UPDATE SKIP LOCKED``, so two daemons folding at once never fold a row twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from monitor.storage.tables import Alert, CheckRun, HourlyMetric, Metric, Notification, table

ROWS_PER_BATCH = 5000
FINAL = ("sent", "failed")  # a notification in one of these is done with


@dataclass(frozen=True)
class Pruned:
    folded: int = 0  # raw metric rows folded into hourly ones
    hourly: int = 0  # hourly rows deleted
    runs: int = 0
    notifications: int = 0

    def __bool__(self) -> bool:
        return bool(self.folded or self.hourly or self.runs or self.notifications)

    def __str__(self) -> str:
        return (f"{self.folded} metric rows folded into hourly ones, {self.hourly} hourly rows, {self.runs} runs and "
                f"{self.notifications} notifications deleted")  # fmt: skip


def prune(engine: Engine, *, raw_before: datetime, hourly_before: datetime, runs_before: datetime,
          notifications_before: datetime) -> Pruned:  # fmt: skip
    """Everything past its age, batch by batch, until none is left."""
    return Pruned(
        folded=_until_done(engine, lambda conn: _fold(conn, raw_before)),
        hourly=_until_done(engine, lambda conn: _delete_ids(conn, HourlyMetric, table(HourlyMetric).c.hour < hourly_before)),
        runs=_until_done(engine, lambda conn: _delete_ids(conn, CheckRun, table(CheckRun).c.started < runs_before)),
        notifications=_until_done(engine, lambda conn: _delete_notifications(conn, notifications_before)),
    )


def _until_done(engine: Engine, batch) -> int:
    done = 0
    while True:
        with engine.begin() as conn:
            count = batch(conn)
        done += count
        if count < ROWS_PER_BATCH:
            return done


def _fold(conn: Connection, before: datetime) -> int:
    """One batch of raw metric rows older than ``before`` into their hours; returns how many."""
    metrics, hourly = table(Metric), table(HourlyMetric)
    rows = conn.execute(
        sa.select(metrics.c.id, metrics.c.time, metrics.c.model, metrics.c.check, metrics.c.metric, metrics.c.feature,
                  metrics.c.model_version, metrics.c.value)
        .where(metrics.c.time < before)
        .order_by(metrics.c.time, metrics.c.id)
        .limit(ROWS_PER_BATCH)
        .with_for_update(skip_locked=True)  # PostgreSQL: another daemon's batch is not ours; SQLite: one writer
    ).all()  # fmt: skip
    if not rows:
        return 0
    groups: dict[tuple, _Hour] = {}
    for row in rows:
        if row.value is None or not math.isfinite(row.value):  # none the daemon writes; another tool's: not a number to fold
            continue
        hour = row.time.replace(minute=0, second=0, microsecond=0)
        key = (row.model, row.check, row.metric, row.feature, row.model_version, hour)
        groups.setdefault(key, _Hour()).add(row.value, row.time)
    for (model, check, metric, feature, version, hour), folded in groups.items():
        where = (hourly.c.model == model, hourly.c.check == check, hourly.c.metric == metric, hourly.c.feature == feature,
                 hourly.c.model_version == version, hourly.c.hour == hour)  # fmt: skip
        existing = conn.execute(sa.select(hourly).where(*where).with_for_update()).first()
        if existing is None:
            conn.execute(sa.insert(hourly).values(model=model, check=check, metric=metric, feature=feature,
                                                  model_version=version, hour=hour, **folded.values()))  # fmt: skip
        else:
            had = existing._mapping  # by name: a row's "count" is also a tuple's method
            before_hour = _Hour(had["min"], had["max"], had["mean"] * had["count"], had["count"], had["last"], had["last_time"])
            conn.execute(sa.update(hourly).where(hourly.c.id == had["id"]).values(**before_hour.merged(folded).values()))
    conn.execute(sa.delete(metrics).where(metrics.c.id.in_([row.id for row in rows])))
    return len(rows)


@dataclass
class _Hour:
    """What an hour of one series folds into."""

    min: float = float("inf")
    max: float = float("-inf")
    sum: float = 0.0
    count: int = 0
    last: float = 0.0
    last_time: datetime | None = None

    def add(self, value: float, time: datetime) -> None:
        self.min, self.max = min(self.min, value), max(self.max, value)
        self.sum += value
        self.count += 1
        if self.last_time is None or time >= self.last_time:
            self.last, self.last_time = value, time

    def merged(self, other: _Hour) -> _Hour:
        later = other if self.last_time is None or (other.last_time is not None and other.last_time >= self.last_time) else self
        return _Hour(min(self.min, other.min), max(self.max, other.max), self.sum + other.sum, self.count + other.count,
                     later.last, later.last_time)  # fmt: skip

    def values(self) -> dict[str, object]:
        return {"min": self.min, "max": self.max, "mean": self.sum / self.count, "count": self.count, "last": self.last,
                "last_time": self.last_time}  # fmt: skip


def _delete_ids(conn: Connection, mapped, where) -> int:
    rows = table(mapped)
    ids = conn.scalars(sa.select(rows.c.id).where(where).order_by(rows.c.id).limit(ROWS_PER_BATCH)).all()
    if ids:
        conn.execute(sa.delete(rows).where(rows.c.id.in_(ids)))
    return len(ids)


def _delete_notifications(conn: Connection, before: datetime) -> int:
    notifications, alerts = table(Notification), table(Alert)
    open_alerts = sa.select(alerts.c.id).where(alerts.c.state.in_(("pending", "firing")))
    done = sa.and_(notifications.c.time < before, notifications.c.status.in_(FINAL), notifications.c.alert_id.not_in(open_alerts))
    return _delete_ids(conn, Notification, done)
