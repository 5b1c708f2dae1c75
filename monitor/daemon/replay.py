"""What a check file's rules would have done over past data: ``monitor replay``.

The file's checks are evaluated by the daemon's own evaluator, at the times the daemon would have run
them (every ``every``, or every ``--step``), on a clock set to each time, over windows read from the
model's source as it stands now: the stored samples of an ``ingest`` source, the files or the table of
the others. Runs, values, episodes and the notifications they owe are written to a database of the
replay's own, in a temporary folder, and read back as episodes and messages; nothing is stored in the
daemon's database and nothing is sent. So a replay of the file the daemon ran, from the daemon's first
run, opens the episodes the daemon opened; and two versions of a file replayed over the same time say
what a pull request would change: the alert budget.

Over an ``ingest`` source, a check that waits for ``start_grace`` after the model's first run waits
after the replay's first run, as a fresh daemon would. Probes are not replayed: they read no past
data, and would call their endpoint now.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from monitor.alerting.conditions import Condition
from monitor.checks import CHECKS
from monitor.clock import FixedClock
from monitor.config.durations import format_duration
from monitor.config.models import DaemonConfig, ModelConfig
from monitor.daemon.evaluator import Evaluator
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.registry import Receivers
from monitor.storage import db
from monitor.storage.tables import Alert, CheckRun, Metric, Notification


@dataclass
class Episode:
    rule: str
    feature: str
    severity: str
    started: datetime
    fired: datetime | None
    resolved: datetime | None  # None: still open at the replay's end
    peak: float | None  # the worst value of its metric while it was open


@dataclass
class Message:
    at: datetime
    event: str
    receiver: str
    subject: str


@dataclass
class Reason:
    outcome: str
    error: str
    runs: int


SHOWN_REASONS = 3


@dataclass
class CheckReplay:
    model: str
    check: str
    every: timedelta
    runs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # Why runs found no values (error and insufficient_data): up to SHOWN_REASONS texts, the most runs first.
    reasons: list[Reason] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    @property
    def alerts(self) -> int:
        """Episodes that fired (a pending one that cleared first told no one)."""
        return sum(1 for episode in self.episodes if episode.fired is not None)


@dataclass
class Replay:
    since: datetime
    until: datetime
    checks: list[CheckReplay]

    @property
    def alerts(self) -> int:
        return sum(c.alerts for c in self.checks)

    @property
    def messages(self) -> int:
        return sum(len(c.messages) for c in self.checks)

    def to_dict(self) -> dict:
        def plain(value):
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, timedelta):
                return format_duration(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        checks = [{**plain(asdict(c)), "alerts": c.alerts} for c in self.checks]
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "checks": checks,
                "totals": {"alerts": self.alerts, "messages": self.messages, "runs": sum(c.runs for c in self.checks)}}  # fmt: skip


MAX_RUNS = 100_000
"""Runs a replay does at most (a week of a check every 10 s is 60,480)."""


class ReplayError(Exception):
    """The replay asked for cannot be done: one line saying what to change."""


def replayed(model: ModelConfig) -> list[int]:
    """The indexes of the checks a replay evaluates: not those that wait on something outside (a probe
    would call its endpoint now, with its headers, once per past run: that is not past data)."""
    return [i for i, check in enumerate(model.checks) if not CHECKS[check.kind].own_workers]


def run_times(model: ModelConfig, since: datetime, until: datetime, step: timedelta | None) -> list[tuple[datetime, int]]:
    """When each of the model's replayed checks runs (check's index), in order: from ``since``, every
    ``step`` or the check's own ``every``, up to ``until``."""
    total = sum((until - since) // (step or model.checks[i].every) + 1 for i in replayed(model))
    if total > MAX_RUNS:
        raise ReplayError(f"{total:,} runs: at most {MAX_RUNS:,}; replay a shorter time, or a longer --step")
    times = []
    for index in replayed(model):
        every = step or model.checks[index].every
        at = since
        while at <= until:
            times.append((at, index))
            at += every
    return sorted(times)


def replay(
    config: DaemonConfig, model: ModelConfig, since: datetime, until: datetime, *, step: timedelta | None = None,
    source_engine: sa.Engine | None = None, progress: Callable[[int, int], None] | None = None,
) -> Replay:  # fmt: skip
    """Evaluate ``model``'s checks over [since, until]; ``source_engine``: the daemon's database, where an
    ingest source's samples are (read only)."""
    times = run_times(model, since, until, step)
    with tempfile.TemporaryDirectory(prefix="monitor-replay-") as folder:
        engine = db.create_engine(f"sqlite:///{Path(folder) / 'replay.db'}")
        try:
            db.upgrade(engine)
            clock = FixedClock(since)
            evaluator = Evaluator(engine, config, clock, Receivers(config), source_engine=source_engine)
            for done, (at, index) in enumerate(times, start=1):
                clock.set(at)
                evaluator.run(model, model.checks[index])
                if progress is not None:
                    progress(done, len(times))
            checks = [_read_back(engine, model, model.checks[i].name, step or model.checks[i].every) for i in replayed(model)]
        finally:
            engine.dispose()
    return Replay(since, until, checks)


def _read_back(engine: sa.Engine, model: ModelConfig, check: str, every: timedelta) -> CheckReplay:
    out = CheckReplay(model.model, check, every)
    with Session(engine) as session:
        for outcome, count in session.execute(
            sa.select(CheckRun.outcome, sa.func.count()).where(CheckRun.check == check).group_by(CheckRun.outcome)
        ):
            out.outcomes[outcome] = count
        out.runs = sum(out.outcomes.values())
        reasons = session.execute(
            sa.select(CheckRun.outcome, CheckRun.error, sa.func.count().label("runs"))
            .where(CheckRun.check == check, CheckRun.outcome.in_(("error", "insufficient_data")), CheckRun.error.is_not(None))
            .group_by(CheckRun.outcome, CheckRun.error)
            .order_by(sa.desc("runs"), CheckRun.outcome, CheckRun.error)
            .limit(SHOWN_REASONS)
        )
        out.reasons = [Reason(outcome, error or "", runs) for outcome, error, runs in reasons]
        alerts = session.scalars(sa.select(Alert).where(Alert.check == check).order_by(Alert.id)).all()
        told: dict[int, list[float]] = {}  # the values each episode's messages said while it was open
        ids = [a.id for a in alerts]
        for note in session.scalars(sa.select(Notification).where(Notification.alert_id.in_(ids)).order_by(Notification.id)):
            try:
                message = AlertMessage.from_dict(note.payload)
                subject = message.subject
                if message.event != "resolved":
                    told.setdefault(note.alert_id, []).append(message.value)
            except Exception:  # noqa: BLE001 - a payload of another version: its event says enough
                subject = note.event
            out.messages.append(Message(note.created, note.event, note.receiver, subject))
        for alert in alerts:
            out.episodes.append(Episode(alert.rule, alert.feature, alert.severity, alert.started, alert.fired,
                                        alert.resolved, _peak(session, alert, told.get(alert.id, []))))  # fmt: skip
    return out


def _peak(session: Session, alert: Alert, told: list[float]) -> float | None:
    """The worst value of the episode's metric while it was open (the highest for a rule on `>`): from
    the metrics the runs stored, else (a metric no run stores: ``failing_runs``) from what its
    messages said, else the last value it saw."""
    try:
        condition = Condition.parse(alert.rule)
    except ValueError:
        return max(told, default=alert.last_value)
    worst = sa.func.min if condition.lower_is_worse else sa.func.max
    query = sa.select(worst(Metric.value)).where(
        Metric.check == alert.check, Metric.metric == condition.metric, Metric.feature == alert.feature,
        Metric.model_version == alert.model_version, Metric.time >= alert.started,
    )  # fmt: skip
    if alert.resolved is not None:
        query = query.where(Metric.time <= alert.resolved)
    value = session.scalar(query)
    if value is not None and math.isfinite(value):
        return value
    if told:
        return min(told) if condition.lower_is_worse else max(told)
    return alert.last_value
