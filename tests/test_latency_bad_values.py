"""A latency that is missing, infinite or negative measures no request: it is left out and counted,
and the rules on max_ms and mean_ms still see the window's real values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from factories import T0

from monitor.checks.base import Window
from monitor.checks.latency import LatencySpec, evaluate
from monitor.sources.base import LATENCY


def test_inf_nan_and_negative_latencies_are_left_out_and_counted():
    rng = np.random.default_rng(3)
    good = rng.exponential(50.0, 300)
    given = np.concatenate([good, [np.inf, np.inf, -5.0, np.nan]])
    spec = LatencySpec(name="latency", kind="latency", every="1m", window="10m")
    result = evaluate(spec, Window(T0, T0, pd.DataFrame({LATENCY: given})), None, [])
    values = {v.metric: v.value for v in result.values}
    assert result.outcome == "ok" and result.sample_size == 300
    assert set(values) == {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}
    assert values["max_ms"] == good.max() and values["mean_ms"] == good.mean()
    assert values["p99_ms"] == np.percentile(good, 99)
    assert result.evidence == {"left_out": {"missing": 1, "not_finite": 2, "negative": 1}}
