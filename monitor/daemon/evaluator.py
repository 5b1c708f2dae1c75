"""One evaluation of one check, end to end: read the window, compute, apply the rules, record.

The run, its metric values, the alert episodes it moves and the notifications those moves owe are
written in one transaction, so the database never holds a state change without its deliveries (or
the other way round). Delivery itself is the outbox's business.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.alerting.episodes import OpenEpisode, advance, open_state
from monitor.alerting.routing import owners_for
from monitor.alerting.rules import Observation, canonical_condition, observe
from monitor.checks import CHECKS
from monitor.checks.base import CheckKind, CheckSpec, Evaluation, Window
from monitor.clock import Clock
from monitor.config.durations import format_duration
from monitor.config.models import DaemonConfig, ModelConfig
from monitor.notifiers.message import TOP_FEATURES, AlertMessage
from monitor.notifiers.registry import Receivers
from monitor.sources import SOURCES, SourceContext, SourceError, open_source
from monitor.sources.base import SKIPPED_FILES, SampledSource, Source, SourceSpec
from monitor.sources.reference import load_reference
from monitor.storage.tables import OPEN_STATES, Alert, CheckRun, Metric, Notification

log = logging.getLogger(__name__)


@dataclass
class Change:
    """An alert whose state changed in this run, and the notification it owes (if any)."""

    alert_id: int
    rule: str
    feature: str
    state: str
    value: float
    notify: str | None


@dataclass
class RunResult:
    model: str
    check: str
    outcome: str  # ok, breach, insufficient_data or error
    evaluation: Evaluation
    window_start: datetime
    window_end: datetime
    observations: list[Observation] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    run_id: int | None = None
    duration_s: float = 0.0

    @property
    def notifications_owed(self) -> int:
        return sum(1 for c in self.changes if c.notify)


class Evaluator:
    def __init__(self, engine: Engine, config: DaemonConfig, clock: Clock, receivers: Receivers | None = None) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self.receivers = receivers or Receivers(config)
        self._sources: dict[tuple[str, str], Source] = {}
        self._watched_since: dict[str, datetime] = {}  # model -> its first recorded run

    def run(self, model: ModelConfig, check: CheckSpec, *, dry_run: bool = False, read_alerts: bool = True) -> RunResult:
        """Evaluate and record in one transaction. ``dry_run`` rolls it back; with ``read_alerts``
        False as well, the database is not touched at all (there may be none yet), so no alert moves."""
        began = time.perf_counter()
        started = self.clock.now()
        window_start, window_end = check.bounds(started)
        # A value no database can hold (inf, NaN) is left out and named in the evidence, so one bad
        # number never costs the whole run its record.
        evaluation = self._evaluate(model, check, window_start, window_end).without_non_finite()
        observations = observe(check.alert, evaluation.values, check.for_) if evaluation.outcome == "ok" else []
        outcome = "breach" if any(o.breached for o in observations) else evaluation.outcome
        result = RunResult(model.model, check.name, outcome, evaluation, window_start, window_end, observations)
        if dry_run and not read_alerts:
            result.duration_s = time.perf_counter() - began
            return result
        with Session(self.engine) as session:
            self._record(session, model, check, result, started)
            if dry_run:
                session.rollback()
                result.run_id = None
            else:
                session.commit()
        result.duration_s = time.perf_counter() - began
        return result

    # -- computing ------------------------------------------------------------------------------
    def _source(self, model: ModelConfig, source: SourceSpec) -> Source:
        key = (model.model, source.model_dump_json())
        if key not in self._sources:
            self._sources[key] = open_source(source, SourceContext(model.model, self.engine))
        return self._sources[key]

    def _window(self, model: ModelConfig, kind: CheckKind, start: datetime, end: datetime) -> Window:
        """The rows a kind reads, from the model's source; a kind that reads none gets the bounds alone."""
        import pandas as pd

        if not kind.reads_rows or model.source is None:
            return Window(start, end, pd.DataFrame())
        source = self._source(model, model.source)
        summary = source.summary(start, end) if isinstance(source, SampledSource) else None
        return Window(start, end, source.read(start, end), summary)

    def _evaluate(self, model: ModelConfig, check: CheckSpec, start: datetime, end: datetime) -> Evaluation:
        kind = CHECKS[check.kind]
        features = model.source.features if model.source else []
        try:
            unwatched = self._unwatched(model, kind, check, self.clock.now())
            if unwatched:
                return Evaluation("insufficient_data", 0, error=unwatched)
            window = self._window(model, kind, start, end)
            reference = None
            if (kind.needs_reference or kind.uses_reference) and model.reference is not None:
                reference = load_reference(model.reference.path, features).for_source(model.source)
            evaluation = kind.evaluate(check, window, reference, features)
            skipped = window.frame.attrs.get(SKIPPED_FILES)
            if skipped:  # files the source could not read: the run is over the others, and says so
                evaluation.evidence[SKIPPED_FILES] = skipped
            return evaluation
        except SourceError as exc:
            return Evaluation.failed(str(exc))
        except Exception as exc:  # a failing check is an `error` run with its reason, never a dead daemon
            # The reason is in the run and in its (throttled) log line; the traceback, for whoever asks.
            log.debug("check %s/%s failed", model.model, check.name, exc_info=True)
            return Evaluation.failed(f"{type(exc).__name__}: {exc}")

    def _unwatched(self, model: ModelConfig, kind: CheckKind, check: CheckSpec, now: datetime) -> str | None:
        """Why a counting check is not to be trusted yet: over a source that has rows only since the
        daemon first watched the model (its first recorded run), the kind's start grace has not passed."""
        if kind.start_grace is None or model.source is None or not SOURCES[model.source.kind].rows_since_daemon:
            return None
        grace = kind.start_grace(check)
        since = self._watched_since.get(model.model)
        if since is None:
            with Session(self.engine) as session:
                since = session.scalar(sa.select(sa.func.min(CheckRun.started)).where(CheckRun.model == model.model))
            if since is not None:
                self._watched_since[model.model] = since
        watched = now - since if since is not None else timedelta(0)
        if watched >= grace:
            return None
        how_long = f"for {format_duration(watched)}" if watched else "from now on"
        return (
            f"the daemon watches {model.model} {how_long}, less than this check's start_grace of "
            f"{format_duration(grace)}: a count over time it did not watch would read as silence"
        )

    # -- recording ------------------------------------------------------------------------------
    def _record(self, session: Session, model: ModelConfig, check: CheckSpec, result: RunResult, started: datetime) -> None:
        evaluation, now = result.evaluation, self.clock.now()
        run = CheckRun(
            model=model.model,
            check=check.name,
            kind=check.kind,
            started=started,
            finished=now,
            window_start=result.window_start,
            window_end=result.window_end,
            outcome=result.outcome,
            sample_size=evaluation.sample_size,
            error=evaluation.error,
            evidence=evaluation.evidence or None,
        )
        session.add(run)
        session.flush()
        result.run_id = run.id
        session.add_all(
            Metric(
                time=now,
                model=model.model,
                check=check.name,
                metric=v.metric,
                feature=v.feature,
                value=v.value,
                window_start=result.window_start,
                window_end=result.window_end,
                sample_size=evaluation.sample_size,
                run_id=run.id,
            )
            for v in evaluation.values
        )
        if not result.observations:
            return
        # Episodes are timed by when runs start, not end: a slow run must not delay a `for:` by an interval.
        at = started
        open_alerts = {
            (a.rule_key, a.feature): a
            for a in session.scalars(
                sa.select(Alert).where(Alert.model == model.model, Alert.check == check.name, Alert.state.in_(OPEN_STATES))
            )
        }
        # An episode of a rule that only gained or lost its id since: known by its unchanged condition.
        keys = {rule.key for rule in check.alert}
        by_condition = {(canonical_condition(a.rule), a.feature): a for (key, _), a in open_alerts.items() if key not in keys}
        for observation in result.observations:
            alert = open_alerts.get(observation.key) or by_condition.pop(
                (observation.rule.when.canonical, observation.feature), None
            )
            if alert is not None:
                alert.rule_key = observation.rule.key
            episode = OpenEpisode(open_state(alert.state), alert.started) if alert else None
            step = advance(episode, observation.breached, at, observation.hold)
            if step is None:
                continue
            if alert is None:
                alert = Alert(
                    model=model.model,
                    check=check.name,
                    rule=observation.rule.when.text,
                    rule_key=observation.rule.key,
                    feature=observation.feature,
                    severity=observation.rule.severity,
                    started=at,
                    threshold=observation.rule.when.threshold,
                    owner=model.owner,
                )
                session.add(alert)
            changed = alert.state != step.state
            alert.state, alert.last_value, alert.updated = step.state, observation.value, at
            # A rule kept by its id may have a new condition: the row shows the one now judged.
            alert.rule, alert.threshold = observation.rule.when.text, observation.rule.when.threshold
            if step.notify == "firing":
                alert.fired = at
            if not step.is_open:
                alert.resolved = at
            session.flush()
            if step.notify:
                message = self._message(model, check, alert, observation, result, step.notify)
                alert.summary = message.subject
                self._enqueue(session, alert, message, at)
            if changed or step.notify:
                result.changes.append(Change(alert.id, alert.rule, alert.feature, alert.state, observation.value, step.notify))

    def _message(
        self, model: ModelConfig, check: CheckSpec, alert: Alert, observation: Observation, result: RunResult, event: str
    ) -> AlertMessage:
        features = result.evaluation.evidence.get("features", [])
        drifted = [{k: f[k] for k in ("feature", "score", "method", "threshold")} for f in features if f.get("drifted")]
        owner = self.config.owners.get(model.owner)

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return AlertMessage(
            alert_id=alert.id,
            event=event,
            model=model.model,
            check=check.name,
            kind=check.kind,
            owner=model.owner,
            severity=alert.severity,
            rule=alert.rule,
            metric=observation.rule.when.metric,
            value=observation.value,
            threshold=alert.threshold,
            started=alert.started.isoformat(),
            fired=iso(alert.fired),
            resolved=iso(alert.resolved),
            window=format_duration(check.window),
            window_start=result.window_start.isoformat(),
            window_end=result.window_end.isoformat(),
            sample_size=result.evaluation.sample_size,
            feature=alert.feature,
            mentions=list(owner.mention) if owner else [],
            top_features=drifted[:TOP_FEATURES],
            skipped_features=[
                {"feature": f["feature"], "reason": f["reason"]}
                for f in result.evaluation.evidence.get("skipped", [])[:TOP_FEATURES]
            ],
            links={name: str(url) for name, url in check.links.model_dump().items() if url},
        )

    def _enqueue(self, session: Session, alert: Alert, message: AlertMessage, now: datetime) -> None:
        labels = {"severity": alert.severity, "model": alert.model, "check": alert.check, "owner": alert.owner}
        routes = [(route.match.labels(), route.also) for route in self.config.routes]
        names = [r.name for owner in owners_for(alert.owner, labels, routes) for r in self.receivers.of(owner)]
        for receiver in dict.fromkeys(names):
            session.add(Notification.pending(alert.id, message.event, receiver, message.to_dict(), now))
