"""The tables dashboards read and the daemon keeps its state in. See docs/database.md for each column.

They change only through Alembic revisions (alembic/versions); this module mirrors the head revision
for the daemon's queries, and a test keeps the two equal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OPEN_STATES = ("pending", "firing")


class UtcDateTime(TypeDecorator):
    """Timestamps are stored in UTC and always come back timezone-aware, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def table(mapped: type[Base]) -> sa.Table:
    """The Core table of a mapped class, typed as one (SQLAlchemy types ``__table__`` as any FromClause)."""
    return cast(sa.Table, mapped.__table__)


def fired_run(runs: sa.Table, alert: Any) -> sa.ColumnElement[bool]:
    """Which of the check runs fired ``alert`` (an :class:`Alert`, or the alerts table's columns in a
    join): the run of its check and model version that started when it fired (an episode is timed by
    its runs' starts)."""
    return sa.and_(runs.c.model == alert.model, runs.c.check == alert.check,
                   runs.c.model_version == alert.model_version, runs.c.started == alert.fired)  # fmt: skip


class CheckRun(Base):
    __tablename__ = "check_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(100))
    check: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(40))
    started: Mapped[datetime] = mapped_column(UtcDateTime)
    finished: Mapped[datetime] = mapped_column(UtcDateTime)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(sa.String(20))
    sample_size: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    evidence: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True))
    # The model version the row is of, in a check split by model_version (version_compare: the candidate);
    # "" for a check over every version (migration 0005).
    model_version: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")

    __table_args__ = (sa.Index("ix_check_runs_model_check_started", "model", "check", "started"),)


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    model: Mapped[str] = mapped_column(sa.String(100))
    check: Mapped[str] = mapped_column(sa.String(100))
    metric: Mapped[str] = mapped_column(sa.String(100))
    feature: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    value: Mapped[float] = mapped_column(sa.Float)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    sample_size: Mapped[int] = mapped_column(sa.Integer)
    run_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("check_runs.id", ondelete="SET NULL"))
    # The model version the row is of, in a check split by model_version (version_compare: the candidate);
    # "" for a check over every version (migration 0005).
    model_version: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")

    __table_args__ = (
        sa.Index("ix_metrics_model_metric_time", "model", "metric", "time"),
        sa.Index("ix_metrics_run_id", "run_id"),
    )


class HourlyMetric(Base):
    """An hour of one series of ``metrics``, folded in once its rows are past ``retention.raw``
    (monitor/storage/retention.py): read with the raw rows through the view ``metrics_series``."""

    __tablename__ = "metrics_hourly"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime)  # its start; the rows' ``time`` in it
    model: Mapped[str] = mapped_column(sa.String(100))
    check: Mapped[str] = mapped_column(sa.String(100))
    metric: Mapped[str] = mapped_column(sa.String(100))
    feature: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    model_version: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")
    min: Mapped[float] = mapped_column(sa.Float)
    max: Mapped[float] = mapped_column(sa.Float)
    mean: Mapped[float] = mapped_column(sa.Float)
    count: Mapped[int] = mapped_column(sa.Integer)
    last: Mapped[float] = mapped_column(sa.Float)  # the hour's latest value, and its time
    last_time: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        sa.UniqueConstraint("model", "check", "metric", "feature", "model_version", "hour", name="uq_metrics_hourly_series_hour"),
        sa.Index("ix_metrics_hourly_hour", "hour"),
    )


class Alert(Base):
    """One episode of one rule (and feature): opened when the condition first holds, closed when it stops."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(100))
    check: Mapped[str] = mapped_column(sa.String(100))
    rule: Mapped[str] = mapped_column(sa.String(200))
    feature: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    severity: Mapped[str] = mapped_column(sa.String(20))
    state: Mapped[str] = mapped_column(sa.String(20))
    started: Mapped[datetime] = mapped_column(UtcDateTime)
    fired: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_value: Mapped[float | None] = mapped_column(sa.Float)
    threshold: Mapped[float] = mapped_column(sa.Float)
    owner: Mapped[str] = mapped_column(sa.String(100))
    summary: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    updated: Mapped[datetime] = mapped_column(UtcDateTime)
    # What the episode belongs to: the rule's `id:`, else its canonical condition (see RuleSpec.key).
    rule_key: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    # Why it ended other than by its condition: a rule removed from its file, a manual close.
    reason: Mapped[str | None] = mapped_column(sa.Text)
    # Bumped by every change; an UPDATE names the version it read, so two writers never both win.
    version: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")
    # The model version the episode is of, in a check split by model_version (version_compare: the candidate);
    # "" for a check over every version (migration 0005).
    model_version: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")
    # The incident it is part of: the id of the episode of its check (and version) that fired first
    # while none of the others was firing, its own for that one; null until it fires (migration 0006).
    incident_id: Mapped[int | None] = mapped_column(BigId)
    # When someone said they are on it (`monitor alerts ack ID`): its incident is not repeated any more.
    acknowledged: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        sa.Index("ix_alerts_model_state", "model", "state"),
        sa.Index("ix_alerts_incident", "incident_id"),
        # At most one open episode per rule, feature and model version: the database, not the code, guarantees it.
        sa.Index(
            "uq_alerts_open_episode",
            "model",
            "check",
            "rule_key",
            "feature",
            "model_version",
            unique=True,
            sqlite_where=sa.text("state IN ('pending', 'firing')"),
            postgresql_where=sa.text("state IN ('pending', 'firing')"),
        ),
    )
    # SQLAlchemy adds `AND version = <read>` to every UPDATE and raises StaleDataError when another
    # writer (a replica, `monitor alerts close`) changed the row first.
    __mapper_args__ = {"version_id_col": version}


class Silence(Base):
    """A time when some alerts are recorded and not sent (``monitor silence add``): of one model, one
    check of it or any, and the labels in ``matchers`` (severity, feature, owner, rule, model_version)."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(100))
    check: Mapped[str | None] = mapped_column(sa.String(100))
    matchers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    starts: Mapped[datetime] = mapped_column(UtcDateTime)
    ends: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (sa.Index("ix_silences_ends", "ends"),)


class Notification(Base):
    """One message to one receiver about one state change of an episode, and what became of it."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("alerts.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(sa.String(20))
    receiver: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(20))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt: Mapped[datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[str | None] = mapped_column(sa.String(100))
    channel_id: Mapped[str | None] = mapped_column(sa.String(100))
    payload: Mapped[dict] = mapped_column(sa.JSON)
    # Set by a route's group_by: firing messages to one receiver with the same key, due together, go as one.
    group_key: Mapped[str | None] = mapped_column(sa.String(400))
    repeat_s: Mapped[float | None] = mapped_column(sa.Float)  # a route's repeat; null: notifiers.repeat
    # The notification whose message this one went out in (with others: a group, or a summary past the
    # receiver's cap); its own id when it led it; null when it went alone.
    bundle: Mapped[int | None] = mapped_column(BigId)
    # The replica whose outbox claimed it (while ``sending``): another replica's start-up recovery leaves
    # a live one's claims alone.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))

    @classmethod
    def pending(
        cls, alert_id: int, event: str, receiver: str, payload: dict, now: datetime, *,
        due: datetime | None = None, group_key: str | None = None, repeat_s: float | None = None,
    ) -> Notification:  # fmt: skip
        """A delivery owed now (to go at ``due``, when that is later), not yet attempted."""
        return cls(alert_id=alert_id, event=event, receiver=receiver, status="pending", attempts=0, created=now, time=now,
                   next_attempt=due or now, payload=payload, group_key=group_key, repeat_s=repeat_s)  # fmt: skip

    __table_args__ = (
        sa.Index("ix_notifications_status_next", "status", "next_attempt"),
        sa.Index("ix_notifications_alert", "alert_id"),
        sa.Index("ix_notifications_receiver_time", "receiver", "time"),
    )


class DeliveryAttempt(Base):
    """One attempt at delivering a notification, and what came of it: ``monitor alerts show`` lists them."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(sa.String(20))  # sent, retry, failed, found (in doubt, found delivered)
    error: Mapped[str | None] = mapped_column(sa.Text)


class IngestStat(Base):
    """Exact counts and the latency sketch of one model's rows for one minute (by the rows' own time)."""

    __tablename__ = "ingest_stats"

    model: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    # The replica that counted these rows: each writes its own, readers add them up.
    writer: Mapped[str] = mapped_column(sa.String(64), primary_key=True, server_default="")
    accepted: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    labels: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_sketch: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)


class Sample(Base):
    """One slot of a minute's uniform reservoir sample of a model's rows (at most N slots a minute)."""

    __tablename__ = "samples"

    model: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    writer: Mapped[str] = mapped_column(sa.String(64), primary_key=True, server_default="")  # as in ingest_stats
    slot: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    row_id: Mapped[str] = mapped_column(sa.String(200))
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    features: Mapped[dict] = mapped_column(sa.JSON)
    prediction: Mapped[object | None] = mapped_column(sa.JSON(none_as_null=True))
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    model_version: Mapped[str | None] = mapped_column(sa.String(100))
    label: Mapped[object | None] = mapped_column(sa.JSON(none_as_null=True))
    probability: Mapped[float | None] = mapped_column(sa.Float)
    labelled: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (sa.Index("ix_samples_model_row_id", "model", "row_id"),)


class Replica(Base):
    """A running daemon: replicas on one PostgreSQL each have a row, beaten every few seconds."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column(sa.Integer)
    started: Mapped[datetime] = mapped_column(UtcDateTime)
    seen: Mapped[datetime] = mapped_column(UtcDateTime)


class CheckLease(Base):
    """A scheduled job across the fleet (a check ``model/check``, or ``daemon:NAME``): when it is next due,
    and the replica that last took a run of it, when."""

    __tablename__ = "check_leases"

    job: Mapped[str] = mapped_column(sa.String(220), primary_key=True)
    next_due: Mapped[datetime] = mapped_column(UtcDateTime)
    holder: Mapped[str | None] = mapped_column(sa.String(64))
    taken: Mapped[datetime | None] = mapped_column(UtcDateTime)
    spec: Mapped[str | None] = mapped_column(sa.String(32))  # the check's fingerprint as last taken
    recorded: Mapped[datetime | None] = mapped_column(UtcDateTime)  # when its last recorded run began


class Installation(Base):
    """Which database this is: one row, with a random id made when the database was (migration 0004).

    Delivery keys carry it, so two databases posting to one Slack channel never take each other's
    messages for their own.
    """

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
