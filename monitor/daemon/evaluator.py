"""One evaluation of one check, end to end: read the window, compute, apply the rules, record.

The run, its metric values, the alert episodes it moves and the notifications those moves owe are
written in one transaction, so the database never holds a state change without its deliveries (or
the other way round). Delivery itself is the outbox's business.

Reading the window here includes the earlier one a kind asks for (volume's rows_ratio); a check split
by model version is cut into each version's evaluation by ``versions.py``, and each evaluation's rules
are judged, with the history baselines and rule windows need, by ``judging.py``; what the moved
episodes owe (one message per incident) is written by ``telling.py``. What is left here: the rows
read, the runs recorded, the check's failing runs counted, and episodes moved (and those of versions
no longer judged ended).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.alerting.episodes import OpenEpisode, advance, open_state
from monitor.alerting.ladders import judge_ladders, ladders
from monitor.alerting.rules import MetricValue, canonical_condition, observe
from monitor.checks import CHECKS, bands
from monitor.checks.base import FAILING_RUNS, CheckKind, CheckSpec, Evaluation, EvidenceData, Window, is_failing
from monitor.clock import Clock
from monitor.config.durations import format_duration
from monitor.config.models import DaemonConfig, ModelConfig
from monitor.daemon.closing import end_episode, version_orphaned
from monitor.daemon.judging import judge
from monitor.daemon.results import Change, RunResult
from monitor.daemon.telling import Moved, Teller
from monitor.daemon.versions import Evaluated, per_version, splits_by_version
from monitor.notifiers.registry import Receivers
from monitor.sources import SOURCES, SourceContext, SourceError, open_source
from monitor.sources.base import SKIPPED_FILES, VERSION, SampledSource, Source, SourceSpec
from monitor.sources.reference import load_reference
from monitor.storage.tables import OPEN_STATES, Alert, CheckRun, Metric, table

log = logging.getLogger(__name__)


class Evaluator:
    def __init__(
        self, engine: Engine, config: DaemonConfig, clock: Clock, receivers: Receivers | None = None,
        evidence_url: Callable[[int], str | None] | None = None, source_engine: Engine | None = None,
    ) -> None:  # fmt: skip
        self.engine = engine
        # Where an ingest source's samples are: this database, but for a replay's, which records elsewhere.
        self.source_engine = source_engine or engine
        self.config = config
        self.clock = clock
        self.evidence_url = evidence_url  # the messages' links to evidence reports (the daemon's)
        self.teller = Teller(config, receivers or Receivers(config), evidence_url)
        self._sources: dict[tuple[str, str], Source] = {}
        self._watched_since: dict[str, datetime] = {}  # model -> its first recorded run
        # Where a run's window is read and its check computed: here, or in a worker process
        # (monitor/daemon/workers.py); the judging and recording are always here.
        self.compute: Callable[[ModelConfig, CheckSpec, datetime, datetime], Evaluated] = self.read_and_compute

    def reconfigure(self, config: DaemonConfig, receivers: Receivers) -> None:
        """A reloaded daemon config: owners, routes and receivers apply from the next run."""
        self.config = config
        self.teller = Teller(config, receivers, self.evidence_url)

    def run(self, model: ModelConfig, check: CheckSpec, *, dry_run: bool = False, read_alerts: bool = True) -> RunResult:
        """Evaluate and record in one transaction. ``dry_run`` rolls it back; with ``read_alerts``
        False as well, the database is not touched at all (there may be none yet), so no alert moves."""
        began = time.perf_counter()
        started = self.clock.now()
        window_start, window_end = check.bounds(started)
        evaluated = self.compute(model, check, window_start, window_end)
        read = read_alerts or not dry_run
        # A value no database can hold (inf, NaN) is left out and named in the evidence, so one bad
        # number never costs the whole run its record.
        parts = [
            self._judge(model, check, evaluation.without_non_finite(), started, window_start, window_end, read=read)
            for evaluation in evaluated.evaluations
        ]
        if dry_run and not read_alerts:
            result = _combined(check, parts, [])
            result.duration_s = time.perf_counter() - began
            return result
        with Session(self.engine) as session:
            for part in parts:
                self._record(session, model, check, part, started)
            ended = self._end_unjudged(session, model, check, evaluated, parts, started)
            if dry_run:
                session.rollback()
                for part in parts:
                    part.run_id = None
            else:
                session.commit()
        result = _combined(check, parts, ended)
        result.duration_s = time.perf_counter() - began
        return result

    def _judge(
        self,
        model: ModelConfig,
        check: CheckSpec,
        evaluation: Evaluation,
        started: datetime,
        window_start: datetime,
        window_end: datetime,
        *,
        read: bool,
    ) -> RunResult:
        """The rules judged on one evaluation (of one model version, in a check split by it)."""
        judged = judge(self.engine if read else None, model.model, check, evaluation, started)
        outcome = "breach" if any(o.breached for o in judged.observations) else judged.evaluation.outcome
        return RunResult(
            model.model,
            check.name,
            outcome,
            judged.evaluation,
            window_start,
            window_end,
            judged.observations,
            waiting=judged.waiting,
            windows=judged.windows,
            model_version=evaluation.model_version,
        )

    # -- computing ------------------------------------------------------------------------------
    def _source(self, model: ModelConfig, source: SourceSpec) -> Source:
        key = (model.model, source.model_dump_json())
        if key not in self._sources:
            self._sources[key] = open_source(source, SourceContext(model.model, self.source_engine))
        return self._sources[key]

    def _window(self, model: ModelConfig, kind: CheckKind, start: datetime, end: datetime) -> Window:
        """The rows a kind reads, from the model's source; a kind that reads none gets the bounds alone,
        one that reads the newest row only gets the bounds and that row's timestamp."""
        import pandas as pd

        if not kind.reads_rows or model.source is None:
            return Window(start, end, pd.DataFrame())
        source = self._source(model, model.source)
        if kind.reads_newest:
            return Window(start, end, pd.DataFrame(), newest=source.newest(end))
        summary = source.summary(start, end) if isinstance(source, SampledSource) else None
        frame = source.read(start, end, schema=True) if kind.reads_schema else source.read(start, end)
        return Window(start, end, frame, summary)

    def evidence_data(
        self, model: ModelConfig, check: CheckSpec, start: datetime, end: datetime, model_version: str = ""
    ) -> EvidenceData:
        """What a run's evidence report shows (``CheckKind.evidence``): the rows of its window (of one model
        version, for a check split by it) and the model's reference, read as the run read them. Raises
        SourceError, and ValueError when the kind finds nothing to report."""
        kind = CHECKS[check.kind]
        if kind.evidence is None:
            raise ValueError(f"a {check.kind} check has no evidence report")
        features = model.source.features if model.source else []
        frame = self._window(model, kind, start, end).frame
        if model_version and VERSION in frame.columns:
            frame = frame[frame[VERSION].astype(str) == model_version]
        reference = None
        if model.reference is not None:
            reference = load_reference(model.reference.path, features).for_source(model.source)
        return kind.evidence(check, frame, reference, features)

    def read_and_compute(self, model: ModelConfig, check: CheckSpec, start: datetime, end: datetime) -> Evaluated:
        """What the check finds in the window ``start``-``end``: its rows read from the model's source,
        the reference loaded, the kind's evaluation (per model version when split); never raises."""
        kind = CHECKS[check.kind]
        features = model.source.features if model.source else []
        try:
            unwatched = self._unwatched(model, kind, check, self.clock.now())
            if unwatched:
                # Expected while the daemon is new to the model: not a failing check.
                return Evaluated([Evaluation("insufficient_data", 0, error=unwatched, evidence={"settling": True})], None)
            window = self._window(model, kind, start, end)
            shift = kind.earlier(check) if kind.earlier is not None else None
            if shift is not None:  # the same window further back (volume's rows_ratio), read the same way
                window = self._with_earlier(model, kind, window, shift)
            reference = None
            if (kind.needs_reference or kind.uses_reference) and model.reference is not None:
                reference = load_reference(model.reference.path, features).for_source(model.source)
            if check.split_by is not None:
                evaluated = per_version(kind, check, window, reference, features)
            else:
                evaluation = bands.evaluate(kind, check, window, reference, features)
                judged = frozenset({evaluation.model_version} - {""}) if kind.compares_versions else frozenset({""})
                evaluated = Evaluated([evaluation], judged)
            skipped = window.frame.attrs.get(SKIPPED_FILES)
            if skipped:  # files the source could not read: the run is over the others, and says so
                for evaluation in evaluated.evaluations:
                    evaluation.evidence[SKIPPED_FILES] = skipped
            return evaluated
        except SourceError as exc:
            return Evaluated([Evaluation.failed(str(exc))], None)
        except Exception as exc:  # a failing check is an `error` run with its reason, never a dead daemon
            # The reason is in the run and in its (throttled) log line; the traceback, for whoever asks.
            log.debug("check %s/%s failed", model.model, check.name, exc_info=True)
            return Evaluated([Evaluation.failed(f"{type(exc).__name__}: {exc}")], None)

    def _with_earlier(self, model: ModelConfig, kind: CheckKind, window: Window, shift: timedelta) -> Window:
        """``window`` with the same window ``shift`` earlier read from the source as this one was, or with
        the reason it is not: time the daemon did not watch reads as silence, so it is not read as a count."""
        start, end = window.start - shift, window.end - shift
        unwatched = self._earlier_unwatched(model, start, end, shift)
        if unwatched:
            return replace(window, no_earlier=unwatched)
        try:
            earlier = self._window(model, kind, start, end)
        except SourceError as exc:
            return replace(window, no_earlier=f"the window {format_duration(shift)} earlier could not be read: {exc}")
        return replace(window, earlier=earlier)

    def _earlier_unwatched(self, model: ModelConfig, start: datetime, end: datetime, shift: timedelta) -> str | None:
        """Why the window ``shift`` earlier holds no count to trust: over a source whose rows exist only since
        the daemon watched the model (ingest), it is before the model's first run, or past what is kept."""
        if not _rows_since_daemon(model):
            return None
        earlier = f"the window {format_duration(shift)} earlier ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)"
        since = self._first_watched(model.model)
        if since is None or start < since:
            watched = f"since {since:%Y-%m-%d %H:%M} UTC" if since is not None else "from now on"
            return (
                f"{earlier} is before the daemon watched {model.model} (it does {watched}): a count there would read as silence"
            )
        retention = self.config.ingest.retention
        if start < self.clock.now() - retention:
            return (
                f"{earlier} is older than the counts kept (ingest.retention: {format_duration(retention)}): "
                f"raise ingest.retention to {format_duration(self.clock.now() - start)} or more"
            )
        return None

    def _unwatched(self, model: ModelConfig, kind: CheckKind, check: CheckSpec, now: datetime) -> str | None:
        """Why a counting check is not to be trusted yet: over a source that has rows only since the
        daemon first watched the model (its first recorded run), the kind's start grace has not passed."""
        if kind.start_grace is None or not _rows_since_daemon(model):
            return None
        grace = kind.start_grace(check)
        since = self._first_watched(model.model)
        watched = now - since if since is not None else timedelta(0)
        if watched >= grace:
            return None
        how_long = f"for {format_duration(watched)}" if watched else "from now on"
        return (
            f"the daemon watches {model.model} {how_long}, less than this check's start_grace of "
            f"{format_duration(grace)}: a count over time it did not watch would read as silence"
        )

    def _first_watched(self, model: str) -> datetime | None:
        """When the daemon first watched ``model``: its first recorded run (None: none yet)."""
        since = self._watched_since.get(model)
        if since is None:
            with Session(self.engine) as session:
                since = session.scalar(sa.select(sa.func.min(CheckRun.started)).where(CheckRun.model == model))
            if since is not None:
                self._watched_since[model] = since
        return since

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
            model_version=result.model_version,
        )
        session.add(run)
        session.flush()
        result.run_id = run.id
        rows = [_metric_row(run, v, result.window_start, result.window_end, evaluation.sample_size) for v in evaluation.values]
        rows.extend(  # a value over a rule's window carries that window and how many values it is over
            _metric_row(run, v, w.start, w.end, w.windowed.sample_size)
            for w in result.windows
            for v in w.windowed.values
            if math.isfinite(v.value)
        )
        if rows:  # one statement for them all, not an object each: a run records tens of values
            session.execute(sa.insert(table(Metric)), rows)
        failing = observe([check.failing_rule], [self._failing_runs(session, run, check)], timedelta(0))
        result.failing = failing[0]
        # Episodes are timed by when runs start, not end: a slow run must not delay a `for:` by an interval.
        at = started
        open_alerts = {
            (a.rule_key, a.feature): a
            for a in session.scalars(
                sa.select(Alert).where(
                    Alert.model == model.model,
                    Alert.check == check.name,
                    Alert.state.in_(OPEN_STATES),
                    Alert.model_version == result.model_version,
                )
            )
        }
        # An episode of a ladder whose lead only gained or lost its id since: known by its unchanged condition.
        check_ladders = ladders(check.rules)
        keys = {ladder.key for ladder in check_ladders}
        by_condition = {(canonical_condition(a.rule), a.feature): a for (key, _), a in open_alerts.items() if key not in keys}
        moved: dict[int, Moved] = {}
        for judged in judge_ladders(check_ladders, [*result.observations, *failing]):
            alert = open_alerts.get(judged.key) or next(
                (a for r in judged.ladder.rules if (a := by_condition.pop((r.when.canonical, judged.feature), None))), None
            )
            if alert is not None:
                alert.rule_key = judged.ladder.key
            episode = OpenEpisode(open_state(alert.state), alert.started, alert.severity) if alert else None
            step = advance(episode, judged.rungs, at)
            if step is None:
                continue
            observation = judged.shown(step.severity)
            if alert is None:
                alert = Alert(
                    model=model.model,
                    check=check.name,
                    rule=observation.rule.when.text,
                    rule_key=judged.ladder.key,
                    feature=judged.feature,
                    severity=step.severity,
                    started=at,
                    threshold=observation.threshold,
                    owner=model.owner,
                    model_version=result.model_version,
                )
                session.add(alert)
            changed = alert.state != step.state
            alert.state, alert.last_value, alert.updated = step.state, observation.value, at
            # The rung judged now: a rule kept by its id may have a new condition, a ladder climbs and
            # falls, and on a reference or a baseline the limit moves.
            alert.rule, alert.threshold, alert.severity = observation.rule.when.text, observation.threshold, step.severity
            if step.notify == "firing":
                alert.fired = at
            if not step.is_open:
                alert.resolved = at
            session.flush()
            notify = step.notify or ("updated" if step.changed else None)
            was_state, was_severity = (episode.state, episode.severity) if episode else ("", "")
            moved[alert.id] = Moved(alert, observation, notify, was_state, was_severity)
            if notify:
                alert.summary = self.teller.message(model, check, alert, observation, result, notify).subject
            if changed or notify:
                result.changes.append(
                    Change(alert.id, alert.rule, alert.feature, alert.state, observation.value, notify, result.model_version)
                )
        # The check's firing episodes this run did not judge are still part of its incident.
        for alert in open_alerts.values():
            if alert.id not in moved and alert.state == "firing":
                moved[alert.id] = Moved(alert, None, None, "firing", alert.severity)
        self.teller.tell(session, model, check, result, list(moved.values()), at)

    def _failing_runs(self, session: Session, run: CheckRun, check: CheckSpec) -> MetricValue:
        """How many of the check's last runs, this one included, failed in a row (at most alert_after:
        that is all the failing rule needs to know)."""
        last = session.execute(
            sa.select(CheckRun.outcome, CheckRun.evidence)
            .where(CheckRun.model == run.model, CheckRun.check == run.check, CheckRun.model_version == run.model_version)
            .order_by(CheckRun.started.desc(), CheckRun.id.desc())  # ix_check_runs_model_check_started
            .limit(check.alert_after)
        ).all()
        failing = next((i for i, (outcome, evidence) in enumerate(last) if not is_failing(outcome, evidence)), len(last))
        return MetricValue(FAILING_RUNS, float(failing))

    def _end_unjudged(
        self, session: Session, model: ModelConfig, check: CheckSpec, evaluated: Evaluated, parts: list[RunResult], at: datetime
    ) -> list[Change]:
        """End the open episodes of a check by model version whose version this run read the window for and
        did not judge: a version with no rows in it, a candidate that is no longer one (version_compare),
        or the episodes of all versions of a check that now splits. Each one that fired is told why."""
        if evaluated.judged is None or not splits_by_version(check):
            return []
        stale = session.scalars(
            sa.select(Alert)
            .where(
                Alert.model == model.model,
                Alert.check == check.name,
                Alert.state.in_(OPEN_STATES),
                Alert.model_version.not_in(sorted(evaluated.judged)),
            )
            .order_by(Alert.id)
        ).all()
        window = f"{parts[0].window_start:%Y-%m-%d %H:%M} to {parts[0].window_end:%Y-%m-%d %H:%M} UTC"
        candidates = sorted(evaluated.judged)
        out = []
        for alert in stale:
            orphaned = version_orphaned(alert, check)  # an episode of all versions, of a check that now splits
            if orphaned:
                reason = orphaned
            elif CHECKS[check.kind].compares_versions and candidates:
                reason = f"model_version {alert.model_version} is no longer the candidate: {', '.join(candidates)} is, in the window {window}"
            else:
                reason = (
                    f"no rows of model_version {alert.model_version} in the window {window}: it is not judged while it has none"
                )
            notify = "resolved" if alert.state == "firing" else None
            end_episode(session, alert, reason, at)
            value = alert.last_value if alert.last_value is not None else math.nan
            out.append(Change(alert.id, alert.rule, alert.feature, alert.state, value, notify, alert.model_version))
        return out


def _rows_since_daemon(model: ModelConfig) -> bool:
    """Whether the model's source has rows only since the daemon watched the model (ingest): a count
    over time before that would read as silence."""
    return model.source is not None and SOURCES[model.source.kind].rows_since_daemon


def _metric_row(
    run: CheckRun, value: MetricValue, window_start: datetime, window_end: datetime, sample_size: int
) -> dict[str, object]:
    """A ``metrics`` row of ``run`` (flushed: it has its id), at its end: ``value`` over the window it is of."""
    return {
        "time": run.finished,
        "model": run.model,
        "check": run.check,
        "metric": value.metric,
        "feature": value.feature,
        "value": value.value,
        "window_start": window_start,
        "window_end": window_end,
        "sample_size": sample_size,
        "run_id": run.id,
        "model_version": run.model_version,
    }


def _combined(check: CheckSpec, parts: list[RunResult], ended: list[Change]) -> RunResult:
    """The result of a run: its one part, or for a check split by model_version one over every version's
    (the worst outcome, every change), with each version's result in ``versions``."""
    if check.split_by is None and len(parts) == 1:
        parts[0].changes.extend(ended)
        return parts[0]
    first = parts[0]
    outcomes = {part.outcome for part in parts}
    outcome = next(o for o in ("breach", "error", "ok", "insufficient_data") if o in outcomes)
    errors = [f"{part.model_version or 'all versions'}: {part.evaluation.error}" for part in parts if part.evaluation.error]
    evaluation = Evaluation(
        "ok" if outcome == "breach" else outcome,
        sum(part.evaluation.sample_size for part in parts),
        evidence={"versions": {part.model_version: part.outcome for part in parts}},
        error="; ".join(errors) or None,
    )
    result = RunResult(first.model, first.check, outcome, evaluation, first.window_start, first.window_end)
    result.observations = [o for part in parts for o in part.observations]
    result.changes = [c for part in parts for c in part.changes] + ended
    result.run_id = first.run_id
    result.versions = parts
    return result
