"""Check kind ``volume``: how many rows arrived in the window, counted exactly.

Metrics: ``rows``, ``rows_per_minute`` and ``rows_ratio``. Over the ingest source the count is the exact
number of rows accepted by the API (not the sample). A quiet window is a value, not missing data, so a
volume check never reports ``insufficient_data`` for few rows: ``rows < 100`` is how one alerts on
silence. Over the ``ingest`` source, whose rows exist only since the daemon first watched the model,
the check is ``insufficient_data`` for ``start_grace`` after that (one window unless set): a fresh
deploy does not alert on traffic it could not have seen.

``rows_ratio`` is the rows of the window over the rows of the same window ``baseline`` earlier (7d
unless set): ``rows_ratio < 0.5`` is a drop to less than half of last week's traffic at this hour. The
evaluator reads that earlier window from the source, as it reads this one (``CheckKind.earlier``), but
only for a check that has a ``baseline:`` or a rule on ``rows_ratio``. There is no ratio, and the
evidence says why under ``no_rows_ratio``, when the earlier window has no rows (a ratio over nothing is
not a number), or when it is time the daemon did not watch (an ingest source before its first run, or
past ``ingest.retention``): a count there would read as silence. The run's error text says it too,
and a check whose every rule is on ``rows_ratio`` is then ``insufficient_data`` for that reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Outcome, Window
from monitor.config.durations import format_duration
from monitor.config.types import Duration, Wait

DEFAULT_BASELINE = timedelta(days=7)
"""How far back the window ``rows_ratio`` compares with lies when a check gives no ``baseline:``."""
RATIO = "rows_ratio"


class VolumeSpec(CheckSpec):
    kind: Literal["volume"]
    min_rows: int = Field(0, ge=0, description="not used by volume checks: every count is a value")
    start_grace: Wait | None = Field(
        None,
        description="over an ingest source, how long after the daemon first watches the model this is insufficient_data; its window when unset, 0s for none",
    )
    baseline: Duration | None = Field(
        None,
        description="how far back the window rows_ratio compares with lies (the same window, 1d or 7d earlier); 7d when unset",
    )

    @field_validator("baseline")
    @classmethod
    def _not_overlapping(cls, baseline: timedelta | None, info: ValidationInfo) -> timedelta | None:
        window = info.data.get("window")
        if baseline is not None and window is not None and baseline < window:
            raise ValueError(
                f"a baseline of {format_duration(baseline)} is shorter than the window of {format_duration(window)}: "
                "the earlier window would overlap this one; write a baseline of at least the window (e.g. 1d or 7d)"
            )
        return baseline

    @property
    def wants_ratio(self) -> bool:
        """Whether the check computes rows_ratio: it has a baseline, or a rule on the ratio."""
        return self.baseline is not None or any(RATIO in (c.metric for c in rule.conditions) for rule in self.value_rules)

    @property
    def baseline_shift(self) -> timedelta:
        return self.baseline if self.baseline is not None else DEFAULT_BASELINE


def _when(window: Window) -> str:
    return f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC"


def evaluate(spec: VolumeSpec, window: Window, reference, features: list[str]) -> Evaluation:
    rows = window.rows
    minutes = (window.end - window.start).total_seconds() / 60
    values = [MetricValue("rows", float(rows)), MetricValue("rows_per_minute", rows / minutes)]
    evidence: dict[str, Any] = {}
    if not spec.wants_ratio:
        return Evaluation("ok", rows, values)
    shift = format_duration(spec.baseline_shift)
    earlier = window.earlier
    reason = None
    if earlier is None:
        reason = window.no_earlier or f"the window {shift} earlier was not read"
    else:
        evidence["earlier"] = {"baseline": shift, "start": earlier.start, "end": earlier.end, "rows": earlier.rows}
        if earlier.rows:
            values.append(MetricValue(RATIO, rows / earlier.rows))
        else:
            reason = f"no rows in the window {shift} earlier ({_when(earlier)}): no {RATIO}, a ratio over nothing is no number"
    if reason is None:
        return Evaluation("ok", rows, values, evidence=_iso(evidence))
    evidence["no_rows_ratio"] = reason
    only_ratio = bool(spec.value_rules) and all(rule.when.metric == RATIO for rule in spec.value_rules)
    outcome: Outcome = "insufficient_data" if only_ratio else "ok"
    return Evaluation(outcome, rows, values, evidence=_iso(evidence), error=reason)


def _iso(evidence: dict[str, Any]) -> dict[str, Any]:
    """The evidence as JSON can hold it: the earlier window's bounds as ISO-8601 text."""
    earlier = evidence.get("earlier")
    if earlier:
        evidence["earlier"] = {**earlier, "start": earlier["start"].isoformat(), "end": earlier["end"].isoformat()}
    return evidence


KIND = CheckKind(
    kind="volume",
    spec=VolumeSpec,
    dataset_metrics=frozenset({"rows", "rows_per_minute", RATIO}),
    feature_metrics=frozenset(),
    evaluate=evaluate,
    start_grace=lambda spec: spec.window if spec.start_grace is None else spec.start_grace,
    earlier=lambda spec: spec.baseline_shift if spec.wants_ratio else None,
)
