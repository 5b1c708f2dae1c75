"""The rules judged on one evaluation, with what the check stored before it: the one seam between a
run's values and the pure core (``alerting/rules.py``) for rules that need history.

- A rule on a ``baseline`` compares with the median of the metric's values over its period.
- A rule with its own ``window:`` (a probe's availability over 1h) and an SLO's burn-rate rules are
  judged on the kind's values over those windows (``CheckKind.over_window``), from the stored values
  and this run's own; the windows a kind keeps (an SLO's budget) are stored on every run.

Every read is of one model version's values ("" for a check over all of them), through
``storage/history.py``, over one connection per evaluation. :func:`judge` is all the evaluator calls.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from monitor.alerting.conditions import ABOVE, BELOW
from monitor.alerting.rules import (
    Baseline,
    BaselineKey,
    MetricValue,
    Observation,
    Waiting,
    baselines_wanted,
    observe,
    waiting_for_baseline,
)
from monitor.checks import CHECKS
from monitor.checks.base import CheckSpec, Evaluation, Windowed
from monitor.config.durations import format_duration
from monitor.storage import history


@dataclass(frozen=True)
class WindowResult:
    """A kind's values over one rule window that ends with this run: stored with these bounds, so the
    ``metrics`` rows of ``availability`` over 1h and over 5m tell apart by their window."""

    window: timedelta
    start: datetime
    end: datetime
    windowed: Windowed

    def value(self, metric: str) -> float | None:
        return next((v.value for v in self.windowed.values if v.metric == metric and not v.feature), None)


@dataclass(frozen=True)
class Judged:
    """The rules' verdicts on one evaluation, and the evaluation with what they waited for in its evidence."""

    evaluation: Evaluation
    observations: list[Observation] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)  # rules whose baseline is not long enough yet
    windows: list[WindowResult] = field(default_factory=list)  # values over the rules' own windows


def judge(engine: Engine | None, model: str, check: CheckSpec, evaluation: Evaluation, started: datetime) -> Judged:
    """The check's rules judged on ``evaluation`` (of one model version, in a check split by it), a run
    started at ``started``; ``engine`` None: nothing is read, so no baseline and this run's values alone
    over each window."""
    if evaluation.outcome != "ok":
        return Judged(evaluation)
    version = evaluation.model_version
    wanted = baselines_wanted(check.alert)
    windows_wanted = _windows_wanted(check)
    with ExitStack() as stack:
        conn = stack.enter_context(engine.connect()) if engine is not None and (wanted or windows_wanted) else None
        baselines = _baselines(conn, model, check, wanted, started, version) if conn is not None else {}
        windows = _over_windows(conn, model, check, windows_wanted, started, evaluation.values, version)
    plain = [rule for rule in check.value_rules if not rule.windows]
    values = evaluation.values + kept_values(check, windows)
    observations = observe(plain, values, check.for_, baselines) + _observe_windows(check, windows)
    waiting = waiting_for_baseline(plain, values, baselines)
    evaluation = _with_waiting(evaluation, waiting, observed=bool(observations))
    evaluation = _with_windows_not_judged(evaluation, windows)
    return Judged(evaluation, observations, waiting, windows)


def kept_values(check: CheckSpec, windows: list[WindowResult]) -> list[MetricValue]:
    """The values over the windows a kind keeps (an SLO's error budget): rules without a window name them."""
    kind = CHECKS[check.kind]
    kept = kind.kept_windows(check) if kind.kept_windows else frozenset()
    return [v for w in windows for v in w.windowed.values if (v.metric, w.window) in kept]


def _baselines(
    conn: Connection, model: str, check: CheckSpec, wanted: set[tuple[str, timedelta]], started: datetime, version: str
) -> dict[BaselineKey, Baseline]:
    """The history each rule on a baseline compares with: the values this check stored for the metric
    (of this model version) over the rule's period before this run (one indexed query per metric and period)."""
    out: dict[BaselineKey, Baseline] = {}
    for metric, period in sorted(wanted):
        stored = history.CheckPeriod(model, check.name, started - period, started, version)
        past = history.values_by_feature(conn, stored, metric)
        out.update({(metric, feature, period): Baseline.of(values) for feature, values in past.items()})
    return out


def _windows_wanted(check: CheckSpec) -> dict[timedelta, set[str]]:
    """The metrics the kind computes over each window its rules have (and those it keeps, an SLO's budget
    period); none on a kind without ``over_window``."""
    kind = CHECKS[check.kind]
    wanted: dict[timedelta, set[str]] = {}
    if kind.over_window is None:
        return wanted
    for rule in check.value_rules:
        for window in rule.windows:
            wanted.setdefault(window, set()).add(rule.when.metric)
    for metric, window in kind.kept_windows(check) if kind.kept_windows else ():
        wanted.setdefault(window, set()).add(metric)
    return wanted


def _over_windows(
    conn: Connection | None,
    model: str,
    check: CheckSpec,
    wanted: dict[timedelta, set[str]],
    started: datetime,
    values: list[MetricValue],
    version: str,
) -> list[WindowResult]:
    """The kind's values over each window wanted, from what this check stored over it and this run's own
    values (``conn`` None: this run's alone)."""
    over_window = CHECKS[check.kind].over_window
    if over_window is None:
        return []
    out = []
    for window, metrics in sorted(wanted.items()):
        past = _Stored(conn, model, check.name, started - window, started, values, version)
        out.append(WindowResult(window, started - window, started, over_window(check, past, window, frozenset(metrics))))
    return out


class _Stored:
    """What a check stored over ``(since, until]`` (the metrics table; no connection: nothing) and this
    run's own values, which are not written yet: the :class:`~monitor.checks.base.Past` of a window."""

    def __init__(
        self,
        conn: Connection | None,
        model: str,
        check: str,
        since: datetime,
        until: datetime,
        current: list[MetricValue],
        model_version: str = "",
    ) -> None:
        # A value stored exactly one window ago is outside it: a 5m window of a check every 30s holds 10.
        self.conn, self.current = conn, current
        self.period = history.CheckPeriod(model, check, since + timedelta(microseconds=1), until, model_version)

    def _own(self, metric: str) -> list[float]:
        return [v.value for v in self.current if v.metric == metric and not v.feature]

    def count_and_sum(self, metric: str) -> tuple[int, float]:
        own = self._own(metric)
        if self.conn is None:
            return len(own), sum(own)
        count, total = history.count_and_sum(self.conn, self.period, metric, "")
        return count + len(own), total + sum(own)

    def values(self, metric: str) -> list[float]:
        past = history.values(self.conn, self.period, metric, "") if self.conn else []
        return self._own(metric) + past


def _observe_windows(check: CheckSpec, windows: list[WindowResult]) -> list[Observation]:
    """Each rule with windows judged on its metric over them: it holds when it holds over each, so it is
    judged on the value least past its limit (the lower burn rate of 1h and 5m for ``> 14.4``). A window
    with too few values yet leaves the rule unjudged: no data is not a breach, nor a recovery."""
    by_window = {w.window: w for w in windows}
    out: list[Observation] = []
    for rule in check.value_rules:
        if not rule.windows:
            continue
        found = [by_window[w].value(rule.when.metric) if w in by_window else None for w in rule.windows]
        judged = [v for v in found if v is not None]
        if len(judged) < len(found):
            continue
        op = rule.when.op
        value = min(judged) if op in ABOVE else max(judged) if op in BELOW else judged[0]
        out += observe([rule], [MetricValue(rule.when.metric, value)], check.for_)
    return out


def _with_windows_not_judged(evaluation: Evaluation, windows: list[WindowResult]) -> Evaluation:
    """The windows with too few values to judge a rule over, in the evidence (a fresh probe's first minutes)."""
    short = [
        {"window": format_duration(w.window), "values": w.windowed.sample_size, "needed": w.windowed.needed}
        for w in windows
        if not w.windowed.values
    ]
    return replace(evaluation, evidence={**evaluation.evidence, "windows_not_judged": short}) if short else evaluation


WAITING_SHOWN = 5
"""Rules waiting for their baseline named in a run's error at most (the evidence has them all)."""


def _with_waiting(evaluation: Evaluation, waiting: list[Waiting], *, observed: bool) -> Evaluation:
    """The evaluation with the rules that wait for their baseline in its evidence; when they are all its
    rules could judge (none was observed), the run is ``insufficient_data`` and its error says why."""
    if not waiting:
        return evaluation
    evidence = dict(evaluation.evidence)
    evidence["waiting_for_baseline"] = [
        {
            "rule": w.rule.when.text,
            "feature": w.feature,
            "baseline": format_duration(w.period),
            "points": w.points,
            "needed": w.needed,
        }
        for w in waiting
    ]
    if observed:
        return replace(evaluation, evidence=evidence)
    reasons = [w.reason for w in waiting[:WAITING_SHOWN]]
    if len(waiting) > WAITING_SHOWN:
        reasons.append(f"and {len(waiting) - WAITING_SHOWN} more")
    return replace(evaluation, outcome="insufficient_data", evidence=evidence, error="; ".join(reasons))
