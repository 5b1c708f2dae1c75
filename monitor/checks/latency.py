"""Check kind ``latency``: percentiles of the model's response time over the window.

Metrics, in milliseconds: ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` and ``mean_ms``. Needs the
source to declare its ``latency`` column.
"""

from __future__ import annotations

from typing import Literal

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue
from monitor.sources.base import LATENCY


class LatencySpec(CheckSpec):
    kind: Literal["latency"]


def evaluate(spec: LatencySpec, frame, reference, features: list[str]) -> Evaluation:
    import numpy as np
    import pandas as pd

    latencies = pd.to_numeric(frame[LATENCY], errors="coerce").dropna().to_numpy(dtype=float)
    if len(latencies) < spec.min_rows:
        return Evaluation.insufficient(len(latencies), spec.min_rows)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    values = [MetricValue("p50_ms", float(p50)), MetricValue("p95_ms", float(p95)), MetricValue("p99_ms", float(p99)),
              MetricValue("max_ms", float(latencies.max())), MetricValue("mean_ms", float(latencies.mean()))]
    return Evaluation("ok", len(latencies), values)


KIND = CheckKind(
    kind="latency",
    spec=LatencySpec,
    dataset_metrics=frozenset({"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}),
    feature_metrics=frozenset(),
    evaluate=evaluate,
    required_roles=(LATENCY,),
)
