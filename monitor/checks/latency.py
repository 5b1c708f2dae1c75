"""Check kind ``latency``: percentiles of the model's response time over the window.

Metrics, in milliseconds: ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` and ``mean_ms``. Needs the
source to declare its ``latency`` column. Over a sampled source (``ingest``) the percentiles come from
the per-minute latency sketches of every row, within 0.5% (see monitor/ingest/sketch.py), and
``mean_ms`` is left out; otherwise they are exact over the window's rows. A latency that is missing,
not finite or negative is left out and counted in the evidence (``left_out``).
"""

from __future__ import annotations

from typing import Literal

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window
from monitor.sources.base import LATENCY
from monitor.sources.reference import as_type


class LatencySpec(CheckSpec):
    kind: Literal["latency"]


def evaluate(spec: LatencySpec, window: Window, reference, features: list[str]) -> Evaluation:
    if window.summary is not None:
        sketch = window.summary.latency
        if sketch.count < spec.min_rows:
            return Evaluation.insufficient(sketch.count, spec.min_rows)
        values = [MetricValue(name, sketch.quantile(q)) for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))]
        return Evaluation("ok", sketch.count, values + [MetricValue("max_ms", sketch.max())])

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
    if len(latencies) < spec.min_rows:
        insufficient = Evaluation.insufficient(len(latencies), spec.min_rows)
        insufficient.evidence = evidence
        return insufficient
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    values = [
        MetricValue("p50_ms", float(p50)),
        MetricValue("p95_ms", float(p95)),
        MetricValue("p99_ms", float(p99)),
        MetricValue("max_ms", float(latencies.max())),
        MetricValue("mean_ms", float(latencies.mean())),
    ]
    return Evaluation("ok", len(latencies), values, evidence=evidence)


KIND = CheckKind(
    kind="latency",
    spec=LatencySpec,
    dataset_metrics=frozenset({"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}),
    feature_metrics=frozenset(),
    evaluate=evaluate,
    required_roles=(LATENCY,),
)
