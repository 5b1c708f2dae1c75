"""Check kind ``latency``: percentiles of the model's response time over the window, and a latency SLO.

Metrics, in milliseconds: ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` and ``mean_ms``. Needs the
source to declare its ``latency`` column. Over a sampled source (``ingest``) the percentiles come from
the per-minute latency sketches of every row, within 0.5% (see monitor/ingest/sketch.py), and
``mean_ms`` is left out; otherwise they are exact over the window's rows. A latency that is missing,
not finite or negative is left out and counted in the evidence (``left_out``).

With ``slo: {objective: 99%, threshold: 300ms}`` a request slower than the threshold is a bad event
(monitor/checks/slo.py): each run stores ``requests`` and ``slow_requests`` (counted from the sketch
over a sampled source, so within its 0.5% of the threshold), ``burn_rate`` is the slow share over a
rule's window against the budget and ``error_budget_remaining`` is kept over the period. Each request
must count once, so the check's ``window`` is its ``every``; and a run with fewer rows than
``min_rows`` still counts them for the SLO (it is ``ok``, without percentiles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from monitor.checks.base import CheckKind, Evaluation, MetricValue, Past, Window, Windowed
from monitor.checks.slo import BUDGET, BURN_RATE, Slo, WithSlo, burn, kept_windows, runs_needed
from monitor.config.durations import format_duration
from monitor.config.types import Duration
from monitor.sources.base import LATENCY
from monitor.sources.reference import as_type

PERCENTILE_METRICS = frozenset({"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"})
COUNTS = frozenset({"requests", "slow_requests"})


def _a_duration(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # latencies are milliseconds
        raise ValueError(f"a threshold is a duration: write {value:g}ms (or {value / 1000:g}s)")
    return value


class LatencySlo(Slo):
    """An objective on the share of requests answered within ``threshold``."""

    threshold: Annotated[Duration, BeforeValidator(_a_duration)] = Field(description="slower is a bad event, e.g. 300ms")

    @property
    def threshold_ms(self) -> float:
        return self.threshold.total_seconds() * 1000


class LatencySpec(WithSlo):
    kind: Literal["latency"]
    slo: LatencySlo | None = None

    @field_validator("slo")
    @classmethod
    def _each_request_once(cls, slo: LatencySlo | None, info: ValidationInfo) -> LatencySlo | None:
        every, window = info.data.get("every"), info.data.get("window")
        if slo is not None and every is not None and window is not None and window != every:
            raise ValueError(
                f"an SLO counts each request once, and a window of {format_duration(window)} every "
                f"{format_duration(every)} would count a request {'more than once' if window > every else 'never'}: "
                f"write window: {format_duration(every)}, or judge the percentiles in a check of their own"
            )
        return slo


def evaluate(spec: LatencySpec, window: Window, reference, features: list[str]) -> Evaluation:
    if window.summary is not None:
        sketch = window.summary.latency
        counts = _counts(spec, sketch.count, lambda limit: sketch.count_above(limit))
        if sketch.count < spec.min_rows:
            return _too_few(sketch.count, spec.min_rows, counts, {})
        values = [MetricValue(name, sketch.quantile(q)) for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))]
        return Evaluation("ok", sketch.count, values + [MetricValue("max_ms", sketch.max())] + counts)

    import numpy as np

    # A latency that is not a number, not finite or below zero measures no request: it is left out and
    # counted, so one bad value neither hides max_ms and mean_ms nor drags the percentiles.
    typed = as_type(window.frame[LATENCY], "number")
    given = typed.values.to_numpy()
    negative = given < 0
    latencies = given[~np.isnan(given) & ~negative]
    left_out = {"missing": typed.missing, "not_finite": typed.not_finite, "wrong_type": typed.wrong_type,
                "negative": int(negative.sum())}  # fmt: skip
    evidence = {"left_out": {k: v for k, v in left_out.items() if v}} if any(left_out.values()) else {}
    counts = _counts(spec, len(latencies), lambda limit: int((latencies > limit).sum()))
    if len(latencies) < spec.min_rows:
        return _too_few(len(latencies), spec.min_rows, counts, evidence)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    values = [
        MetricValue("p50_ms", float(p50)),
        MetricValue("p95_ms", float(p95)),
        MetricValue("p99_ms", float(p99)),
        MetricValue("max_ms", float(latencies.max())),
        MetricValue("mean_ms", float(latencies.mean())),
    ]
    return Evaluation("ok", len(latencies), values + counts, evidence=evidence)


def _counts(spec: LatencySpec, requests: int, slower_than: Callable[[float], int]) -> list[MetricValue]:
    """With an SLO, the run's requests and how many were slower than its threshold."""
    if spec.slo is None:
        return []
    return [MetricValue("requests", float(requests)), MetricValue("slow_requests", float(slower_than(spec.slo.threshold_ms)))]


def _too_few(rows: int, needed: int, counts: list[MetricValue], evidence: dict) -> Evaluation:
    """Too few rows for percentiles: insufficient_data, or with an SLO an ``ok`` run of its counts alone
    (every request counts towards the objective, in a quiet minute too)."""
    too_few = Evaluation.insufficient(rows, needed)
    if not counts:
        return replace(too_few, evidence=evidence)
    return Evaluation("ok", rows, counts, evidence={**evidence, "no_percentiles": too_few.error})


def metrics(spec: LatencySpec) -> frozenset[str]:
    return PERCENTILE_METRICS | (COUNTS | {BURN_RATE, BUDGET} if spec.slo else frozenset())


def window_metrics(spec: LatencySpec) -> frozenset[str]:
    return frozenset({BURN_RATE}) if spec.slo else frozenset()


def over_window(spec: LatencySpec, past: Past, window: timedelta, wanted: frozenset[str]) -> Windowed:
    """The SLO's burn rate over the requests the runs in ``window`` counted (and its budget when asked for)."""
    runs, requests = past.count_and_sum("requests")
    _, slow = past.count_and_sum("slow_requests")
    needed = runs_needed(spec, window)
    if runs < needed or spec.slo is None:
        return Windowed([], runs, needed)
    return Windowed(burn(spec.slo, slow, requests, wanted), runs, needed)


KIND = CheckKind(
    kind="latency",
    spec=LatencySpec,
    dataset_metrics=PERCENTILE_METRICS | COUNTS | {BURN_RATE, BUDGET},
    feature_metrics=frozenset(),
    evaluate=evaluate,
    required_roles=(LATENCY,),
    metrics_for=metrics,
    window_metrics=window_metrics,
    over_window=over_window,
    kept_windows=kept_windows,
)
