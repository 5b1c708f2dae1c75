"""Rules and the values they judge: which (rule, feature) pairs hold their condition now.

A check produces :class:`MetricValue` rows; a rule (:class:`RuleSpec`, one ``alert:`` item of a check
file) names one metric. A rule on a data-set metric (``drift_share > 0.3``) gives one observation; a
rule on a per-feature metric (``drifted == 1``) gives one per feature, each its own episode.

A condition may compare with the reference (``missing_share > reference + 0.05``: the value's own
``reference``) or with a baseline (``p95_ms > 1.5x baseline``: the median of the metric over the
rule's ``baseline`` period, which the caller reads from the history and passes in as
:class:`Baseline` values). A value without its reference, or a baseline with fewer than the rule's
``baseline_min_points`` values, is judged neither way; for the second, :func:`waiting_for_baseline`
says which rules wait and why. ``resolve_when`` or ``margin`` (hysteresis) decides when a firing
episode may resolve: :attr:`Observation.cleared`.

A rule is known by its :attr:`RuleSpec.key`: the ``id:`` the file gives it, else its condition in
canonical form, so an edit of spacing keeps the rule and an edit of the threshold without an ``id``
makes a new one (the old one's open episode is then closed, see :func:`orphaned`). ``resolve_when``,
``margin``, ``baseline``, ``baseline_min_points`` and ``window`` are not part of it: tuning them keeps the episode.

A rule with its own ``window:`` (``availability < 99%`` over 1h) is judged on the value of its metric
over that window, which the caller computes from the history and passes in like any other value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, WithJsonSchema

from monitor.alerting.conditions import ABOVE, BELOW, Anchor, Condition, past_range, tidy
from monitor.config.durations import format_duration
from monitor.config.types import Duration, Name, StrictModel, Wait

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
ConditionText = Annotated[Condition, PlainValidator(Condition.parse), WithJsonSchema({"type": "string"})]

DEFAULT_BASELINE = timedelta(days=7)
"""The period whose median is ``baseline`` when a rule gives no ``baseline:``."""
DEFAULT_BASELINE_POINTS = 10
"""How many past values a baseline needs when a rule gives no ``baseline_min_points:``."""


@dataclass(frozen=True)
class Margin:
    """How far back past its threshold a value must be before a firing episode resolves, in the metric's
    units; ``percent`` when it was written as a percentage (``1%`` is 0.01)."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, raw: Any) -> Margin:
        if isinstance(raw, Margin):
            return raw
        wrong = "expected a margin such as 0.05, in the units of the condition's metric (or 1% on a condition written with one)"
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError(wrong)
        written = str(raw).strip()
        percent = written.endswith("%")
        try:
            value = float(written.removesuffix("%").strip())
        except ValueError:
            raise ValueError(wrong) from None
        if not math.isfinite(value):
            raise ValueError("a margin must be a finite number")
        if value <= 0:
            raise ValueError(f"a margin is how far back past the threshold a value must be: write more than 0, got {value:g}")
        return cls(value / 100.0 if percent else value, percent)


MarginValue = Annotated[Margin, PlainValidator(Margin.parse), WithJsonSchema({"type": ["number", "string"]})]


@dataclass(frozen=True)
class MetricValue:
    """One number a check produced; ``feature`` is empty for a data-set level value. ``reference`` is
    the same metric of the same feature over the model's reference data set, where the kind computes
    it, for a rule that compares with it (``missing_share > reference + 0.05``)."""

    metric: str
    value: float
    feature: str = ""
    reference: float | None = None
    # The range (low, high) the metric takes over the reference's own windows of this window's size,
    # where a rule asks for it (``missing_share outside reference``; monitor/checks/bands.py).
    band: tuple[float, float] | None = None


class RuleSpec(StrictModel):
    id: Name | None = None  # keeps the rule (and its open alert) when its condition is edited
    when: ConditionText
    severity: Severity = "warning"
    for_: Wait | None = Field(
        None, alias="for", description="how long the condition must hold (0s: fire at once); the check's `for` otherwise"
    )
    resolve_when: ConditionText | None = Field(
        None, description="hysteresis: a firing episode resolves only when this condition on the same metric holds"
    )
    margin: MarginValue | None = Field(
        None, description="hysteresis: a firing episode resolves only when the value is this far back past the threshold"
    )
    baseline: Duration | None = Field(
        None, description="the past period whose median `baseline` is in a condition; 7d when unset"
    )
    baseline_min_points: int | None = Field(
        None, ge=1, description="past values a baseline needs before the rule is judged; 10 when unset"
    )
    window: Duration | None = Field(
        None, description="the rule's own window: its metric is over the check's values in it (availability over 1h)"
    )

    @property
    def windows(self) -> tuple[timedelta, ...]:
        """The windows its metric is judged over; it holds when it holds over each (an SLO's long and short one)."""
        return (self.window,) if self.window is not None else ()

    @property
    def key(self) -> str:
        """What an episode belongs to. An id has no spaces and a condition always has, so they never meet."""
        return self.id if self.id else self.when.canonical

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return (self.when,) if self.resolve_when is None else (self.when, self.resolve_when)

    def uses(self, anchor: Anchor) -> bool:
        """Whether its condition (or its resolve_when) compares with the reference or a baseline."""
        return any(condition.anchor == anchor for condition in self.conditions)

    @property
    def baseline_period(self) -> timedelta:
        return self.baseline if self.baseline is not None else DEFAULT_BASELINE

    @property
    def min_points(self) -> int:
        return self.baseline_min_points if self.baseline_min_points is not None else DEFAULT_BASELINE_POINTS


def canonical_condition(text: str) -> str:
    """The canonical form of a stored condition text, or the text itself if it no longer parses."""
    try:
        return Condition.parse(text).canonical
    except ValueError:
        return text


# (metric, feature, period): the baseline of one metric of one feature over one past period.
BaselineKey = tuple[str, str, timedelta]


@dataclass(frozen=True)
class Baseline:
    """What the history holds of a metric over a rule's period: how many values, and their median."""

    points: int
    median: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Baseline:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        return cls(len(finite), statistics.median(finite) if finite else None)


NO_BASELINE = Baseline(0, None)


def baselines_wanted(rules: Iterable[RuleSpec]) -> set[tuple[str, timedelta]]:
    """The (metric, period) pairs whose history the rules compare with: what the caller must read."""
    return {(rule.when.metric, rule.baseline_period) for rule in rules if rule.uses("baseline")}


@dataclass(frozen=True)
class Observation:
    """One rule judged on one value. ``threshold`` is the limit the value was compared with (on an
    anchor, ``factor × anchor + offset``, with ``anchor`` the reference or baseline it came from).
    ``cleared`` says whether a firing episode may resolve: the condition does not hold and, with
    hysteresis, ``resolve_when`` holds or the value is ``margin`` back past the threshold."""

    rule: RuleSpec
    feature: str
    value: float
    breached: bool
    hold: timedelta
    threshold: float
    cleared: bool
    anchor: float | None = None
    band: tuple[float, float] | None = None  # on ``outside reference``: the range, ``threshold`` its edge

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.key, self.feature)


@dataclass(frozen=True)
class Waiting:
    """A rule not judged on a value because its baseline has too few past values yet."""

    rule: RuleSpec
    feature: str
    points: int
    needed: int
    period: timedelta

    @property
    def reason(self) -> str:
        where = f" [{self.feature}]" if self.feature else ""
        return (
            f"rule '{self.rule.when.text}'{where} waits for its baseline: {self.points} value(s) of "
            f"{self.rule.when.metric} in the last {format_duration(self.period)}, {self.needed} needed"
        )


def observe(
    rules: Iterable[RuleSpec],
    values: Iterable[MetricValue],
    check_hold: timedelta,
    baselines: Mapping[BaselineKey, Baseline] | None = None,
) -> list[Observation]:
    """One observation per rule and matching value; ``hold`` is the rule's ``for``, else the check's.

    ``baselines`` holds the history of each (metric, feature, period) a rule on ``baseline`` needs;
    one missing from it has no values yet."""
    return [j for j in _judge(rules, values, check_hold, baselines or {}) if isinstance(j, Observation)]


def waiting_for_baseline(
    rules: Iterable[RuleSpec], values: Iterable[MetricValue], baselines: Mapping[BaselineKey, Baseline] | None = None
) -> list[Waiting]:
    """The (rule, value) pairs :func:`observe` left out because the baseline is not long enough yet."""
    return [j for j in _judge(rules, values, timedelta(0), baselines or {}) if isinstance(j, Waiting)]


def _judge(
    rules: Iterable[RuleSpec], values: Iterable[MetricValue], check_hold: timedelta, baselines: Mapping[BaselineKey, Baseline]
) -> Iterator[Observation | Waiting]:
    by_metric: dict[str, list[MetricValue]] = {}
    for value in values:
        by_metric.setdefault(value.metric, []).append(value)
    for rule in rules:
        hold = rule.for_ if rule.for_ is not None else check_hold
        for value in by_metric.get(rule.when.metric, []):
            if value.value is None or math.isnan(value.value):
                continue  # no value is neither a breach nor a recovery (roc_auc of a one-class window)
            if rule.when.anchor == "range":  # validate refuses resolve_when, margin and baseline beside it
                if value.band is not None:  # no band (too few reference windows): neither breach nor recovery
                    breached, edge = past_range(rule.when, value.value, value.band)
                    yield Observation(rule, value.feature, value.value, breached, hold, edge, not breached, band=value.band)
                continue
            anchors: dict[str | None, float | None] = {None: None, "reference": value.reference}
            if rule.uses("baseline"):
                period = rule.baseline_period
                baseline = baselines.get((rule.when.metric, value.feature, period), NO_BASELINE)
                if baseline.median is None or baseline.points < rule.min_points:
                    yield Waiting(rule, value.feature, baseline.points, rule.min_points, period)
                    continue
                anchors["baseline"] = baseline.median
            limit = rule.when.limit(anchors[rule.when.anchor])
            if limit is None:
                continue  # no reference value to compare with: neither a breach nor a recovery
            breached = rule.when.compare(value.value, limit)
            cleared = not breached
            if rule.resolve_when is not None:
                resolve_limit = rule.resolve_when.limit(anchors[rule.resolve_when.anchor])
                if resolve_limit is None:
                    continue
                cleared = cleared and rule.resolve_when.compare(value.value, resolve_limit)
            elif rule.margin is not None and rule.when.op in ABOVE + BELOW:
                back = tidy(limit - rule.margin.value if rule.when.op in ABOVE else limit + rule.margin.value)
                cleared = not rule.when.compare(value.value, back)
            anchor = anchors[rule.when.anchor]
            yield Observation(rule, value.feature, value.value, breached, hold, limit, cleared, anchor)
