"""What every check kind shares: its YAML section, the values it produces, and the plug-in interface.

A check kind is one module that defines a ``Spec`` (its keys in a check file, a pydantic model with
``kind`` as the discriminator), the metrics it produces, and ``evaluate``, a function of the
:class:`Window` (its rows, or a uniform sample of them with exact summaries) and the reference. It knows nothing of rules, alerts or storage: those only see
:class:`MetricValue` rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, HttpUrl, field_validator

from monitor.alerting.rules import MetricValue, RuleSpec
from monitor.config.types import Duration, Labels, Name, StrictModel, Wait

if TYPE_CHECKING:
    import pandas as pd

    from monitor.sources.base import Summary
    from monitor.sources.reference import Reference


FAILING_RUNS = "failing_runs"
FAILING_RULE = "check-failing"


def is_failing(outcome: str, evidence: dict[str, Any] | None) -> bool:
    """Whether a run counts towards its check failing: an error, or too little data for a reason the
    daemon does not expect (a baseline still filling and a source not watched long enough are)."""
    if outcome == "error":
        return True
    expected = evidence is not None and ("waiting_for_baseline" in evidence or "settling" in evidence)
    return outcome == "insufficient_data" and not expected


class Links(StrictModel):
    runbook: HttpUrl | None = None
    dashboard: HttpUrl | None = None


class Calibration(StrictModel):
    """How a check calibrates on its reference's own windows: ``threshold: auto`` (monitor/checks/calibration.py)
    and ``outside reference`` rules (monitor/checks/bands.py); docs/drift.md."""

    k: float = Field(3.0, gt=0, le=10, description="past the reference windows' mean + k standard deviations is outside")
    windows: int = Field(50, ge=10, le=500, description="how many reference windows to score, at most")
    seed: int = Field(0, ge=0, description="the seed of the bootstrap draws, for a reference without time")


class CheckSpec(StrictModel):
    """Keys every check has; each kind adds its own."""

    name: Name
    kind: str
    every: Duration = Field(description="how often the check runs; at least 1s")
    window: Duration
    min_rows: int = Field(30, ge=1, description="fewer rows in the window than this is insufficient_data")
    for_: Wait = Field(timedelta(0), alias="for")  # 0s, the default, may be written: fire at once
    alert: list[RuleSpec] = []
    links: Links = Links()
    labels: Labels = Field({}, description="labels of the check's alerts, over the model's, for routes to match")
    split_by: Literal["model_version"] | None = Field(
        None, description="evaluate the check per model version: its values and episodes are each version's own"
    )
    alert_after: int = Field(
        3, ge=1, description="this many runs in a row that error (or lack data) alert the owner that the check is failing"
    )

    @field_validator("every")
    @classmethod
    def _not_too_often(cls, every: timedelta) -> timedelta:
        if every < timedelta(seconds=1):
            raise ValueError("a check runs at most once a second: write every: 1s or longer")
        return every

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """The window a run at ``now`` looks at: the last ``window`` before now."""
        return now - self.window, now

    @property
    def rules(self) -> list[RuleSpec]:
        """Every rule the check judges: its ``alert:`` items, those a kind makes of its own keys (a
        probe's ``slo:``) and the check's own health (:attr:`failing_rule`). Episodes, orphan closing
        and the evaluator go by these."""
        return [*self.value_rules, self.failing_rule]

    @property
    def value_rules(self) -> list[RuleSpec]:
        """The rules on the kind's values: ``alert:`` and the kind's own (not the check's health)."""
        return [*self.alert, *self.kind_rules]

    @property
    def kind_rules(self) -> list[RuleSpec]:
        """The rules a kind makes of its own keys; none unless it says so."""
        return []

    @cached_property  # made once per loaded check: it is judged on every run
    def failing_rule(self) -> RuleSpec:
        """The check is failing: ``alert_after`` runs in a row errored or lacked data (``FAILING_RUNS``,
        counted by the evaluator from the runs it recorded). Its owner is told, with the error."""
        return RuleSpec(id=FAILING_RULE, when=f"{FAILING_RUNS} >= {self.alert_after}", severity="warning")

    def is_failing_rule(self, rule: str) -> bool:
        """Whether ``rule`` (a rule's text, as an alert names it) is :attr:`failing_rule`: an episode of
        the check's runs, not of a window's values (it has no evidence report)."""
        return rule == self.failing_rule.when.text


@dataclass(frozen=True)
class Window:
    """The rows a check looks at: ``frame`` holds them all, or a uniform sample of them when
    ``summary`` is set; the summary then has the exact count and latency over every row. For a kind
    that ``reads_newest``, ``frame`` is empty and ``newest`` is the newest row's timestamp before
    ``end`` (None: the source has no row at all)."""

    start: datetime
    end: datetime
    frame: pd.DataFrame
    summary: Summary | None = None
    newest: datetime | None = None
    # For a kind with ``earlier`` (volume's rows_ratio): the same window shifted back, read from the
    # source like this one; None with ``no_earlier`` saying why (time the daemon did not watch, say).
    earlier: Window | None = None
    no_earlier: str | None = None

    @property
    def rows(self) -> int:
        return self.summary.rows if self.summary is not None else len(self.frame)


Outcome = Literal["ok", "insufficient_data", "error"]


@dataclass
class Evaluation:
    """What a check found in one window. Whether that is a breach is for the rules to say."""

    outcome: Outcome
    sample_size: int
    values: list[MetricValue] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # The model version the values are of: each version's own in a check split by model_version, the
    # candidate in a version_compare; "" for a check over every version.
    model_version: str = ""
    # What an alert on these values also says, a line each (freshness's newest row, the versions a
    # version_compare compared): the message's details, not stored with the run.
    notes: list[str] = field(default_factory=list)

    @classmethod
    def insufficient(cls, sample_size: int, needed: int) -> Evaluation:
        return cls("insufficient_data", sample_size, error=f"{sample_size} rows in the window, {needed} needed")

    @classmethod
    def failed(cls, reason: str, sample_size: int = 0) -> Evaluation:
        return cls("error", sample_size, error=reason)

    def without_non_finite(self) -> Evaluation:
        """A copy that can be stored: every value finite, the evidence JSON.

        A value that is NaN, infinite or None is dropped (the metrics table holds numbers, and a rule
        reads no value as neither a breach nor a recovery) and named in the evidence under
        ``not_finite`` as ``{"metric", "feature"}``. In the evidence, a non-finite float anywhere
        becomes None (JSON, so PostgreSQL's json column, has no NaN or Infinity) and numpy scalars
        and arrays become plain numbers and lists.
        """
        kept, dropped = [], []
        for value in self.values:
            if value.value is not None and math.isfinite(value.value):
                kept.append(value)
            else:
                dropped.append({"metric": value.metric, "feature": value.feature})
        evidence = _json_safe(self.evidence)
        if dropped:
            evidence["not_finite"] = [*evidence.get("not_finite", []), *dropped]
        return replace(self, values=kept, evidence=evidence)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if type(value).__module__ == "numpy":  # numpy scalars and arrays, without importing numpy here
        value = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(value, list):
            return _json_safe(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def import_evidently() -> None:
    """Load evidently's legacy reports (about 4 s, once per process)."""
    import evidently.legacy.report  # noqa: F401


class Past(Protocol):
    """What a check stored over one window that ends with this run, this run's values included (the
    evaluator reads it from the ``metrics`` table, monitor/storage/history.py): for ``over_window``."""

    def count_and_sum(self, metric: str) -> tuple[int, float]:
        """How many values of the data-set metric there are, and their sum."""
        ...

    def values(self, metric: str) -> list[float]:
        """The values themselves, newest first."""
        ...


@dataclass(frozen=True)
class Windowed:
    """A kind's values over a rule's window: none when the window holds fewer than ``needed`` of the
    check's values (``sample_size``), so that a rule over it is not judged yet."""

    values: list[MetricValue]
    sample_size: int
    needed: int


# A problem a check kind finds in its spec against the model's reference, at load time: the path of
# the key within the check (``("method",)``, ``("features", 2)``) and what to change.
SpecProblem = tuple[tuple[str | int, ...], str]


@dataclass(frozen=True)
class EvidenceData:
    """What a firing run's evidence report is made of (monitor/evidence/): evidently's metrics and the
    rows they run on, the window's (``rows`` of them) and the reference's (None: the window alone), as
    data frames or as evidently Datasets that name their columns' roles."""

    metrics: list[Any]
    current: Any
    rows: int
    reference: Any = None


def feature_evidence(metrics: list[Any], current: pd.DataFrame, reference: Reference | None, features: list[str]) -> EvidenceData:
    """A report of ``metrics`` over the ``features`` of the window's rows, beside the reference's."""
    ours = current[[f for f in features if f in current.columns]]
    theirs = reference.frame[[f for f in features if f in reference.frame.columns]] if reference is not None else None
    return EvidenceData(metrics, ours, len(ours), theirs)


@dataclass(frozen=True)
class CheckKind:
    """A plug-in: the ``kind`` it answers to, its spec, its metrics, what it needs and its evaluation.

    What it needs decides what the evaluator reads for it: ``reads_rows`` (the source's rows in the
    window; a kind without it, such as a probe, is given a :class:`Window` with no rows and may run
    on a model that has no source), ``needs_reference`` (the model's reference data set; ``uses_reference``: when it has one) and
    ``required_roles`` (source columns beyond the features, e.g. ``@latency_ms``).
    ``check_reference``, when set, is asked at load time (``monitor validate`` and the daemon's start)
    what in the spec cannot work with this reference, so that it fails there and not on every run.
    """

    kind: str
    spec: type[CheckSpec]
    dataset_metrics: frozenset[str]
    feature_metrics: frozenset[str]
    evaluate: Callable[[Any, Window, Reference | None, list[str]], Evaluation]
    reads_rows: bool = True
    # Reads the source, but only its newest row's timestamp (Source.newest), whatever the window: the
    # Window has no rows and its ``newest`` set (see freshness).
    reads_newest: bool = False
    # Reads the window's rows with the columns the source found (Source.read(schema=True)): a declared
    # feature the data lacks is missing values, not an error, and frame.attrs[SCHEMA] says so (see data_quality).
    reads_schema: bool = False
    # A count over unwatched time reads as silence: over a source whose rows exist only since the daemon
    # first watched the model, the check is insufficient_data for this long after that (see volume).
    start_grace: Callable[[Any], timedelta] | None = None
    needs_reference: bool = False
    uses_reference: bool = False  # reads the model's reference when it has one, without needing one
    required_roles: tuple[str, ...] = ()
    metrics_for: Callable[[Any], frozenset[str]] | None = None
    # The metrics whose values carry ``MetricValue.reference`` (the same metric over the reference data
    # set), so that a rule may compare with it (``missing_share > reference + 0.05``); validate refuses
    # ``reference`` in a rule on any other metric.
    reference_metrics: frozenset[str] = frozenset()
    # The metrics a rule may judge against the reference's range (``missing_share outside reference``):
    # ``evaluate`` can be run on the reference's own rows as a window (it reads only features, the
    # prediction and the label) and they are computed from those rows (not the columns' list).
    range_metrics: frozenset[str] = frozenset()
    check_reference: Callable[[Any, Reference, list[str]], list[SpecProblem]] | None = None
    # Likewise, what works with this reference but is likely not meant: a warning, not a refusal.
    reference_warnings: Callable[[Any, Reference, list[str]], list[SpecProblem]] | None = None
    # Work done once before the daemon's first run of the kind (loading a library that takes seconds),
    # so the first scheduled run is not late and does not make the next one skip.
    warm_up: Callable[[], None] | None = None
    # A firing alert's evidence report (monitor/evidence/): ``evidence(spec, rows, reference, features)``
    # gives evidently's metrics and the data they run on, from the rows of the run's window (of the
    # version that fired) and the model's reference; it raises ValueError when the rows hold nothing to
    # report. None: the kind has no report.
    evidence: Callable[[Any, pd.DataFrame, Reference | None, list[str]], EvidenceData] | None = None
    # The metrics a rule with its own ``window:`` may name (a probe's availability over 1h), which
    # ``over_window(spec, past, window, wanted)`` computes from what the check stored over that window;
    # on a kind without them a rule's ``window:`` is refused. ``kept_windows``: (metric, window) pairs
    # stored on every run though no rule names them (an SLO's error budget over its period).
    window_metrics: Callable[[Any], frozenset[str]] | None = None
    over_window: Callable[[Any, Past, timedelta, frozenset[str]], Windowed] | None = None
    kept_windows: Callable[[Any], frozenset[tuple[str, timedelta]]] | None = None
    # Waits on something outside for up to its timeout (an HTTP probe): runs on workers of its own, so
    # it neither waits for the other checks nor holds a worker they need.
    own_workers: bool = False
    # How far back the kind also reads the same window (volume's ``baseline``, for rows_ratio), None
    # when this check needs no earlier window: the evaluator reads it into ``Window.earlier``.
    earlier: Callable[[Any], timedelta | None] | None = None
    # Its values are of one model version against another (version_compare): each evaluation names the
    # version its episodes belong to (``Evaluation.model_version``), without ``split_by``.
    compares_versions: bool = False
    # The metrics that are shares, between 0 and 1 (100%) whatever the data: validate refuses a rule on
    # one that could never fire, or (with resolve_when or margin) never resolve.
    shares: frozenset[str] = frozenset()

    @property
    def metrics(self) -> frozenset[str]:
        return self.dataset_metrics | self.feature_metrics

    def metrics_of(self, spec: CheckSpec) -> frozenset[str]:
        """The metrics this check (with its settings) produces; a rule may only name these."""
        return self.metrics_for(spec) if self.metrics_for else self.metrics

    def window_metrics_of(self, spec: CheckSpec) -> frozenset[str]:
        """The metrics of this check a rule's ``window:`` computes; none: a rule may have no window."""
        return self.window_metrics(spec) if self.window_metrics else frozenset()
