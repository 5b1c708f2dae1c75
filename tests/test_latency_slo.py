"""A latency SLO, end to end: a check file with ``slo: {objective: 99%, threshold: 300ms}`` on a latency
check, live rows of a files source written minute by minute, and the daemon's real evaluations on a
FixedClock (a run every minute, over that minute), on SQLite and PostgreSQL.

- Every run stores its requests and how many were slower than the threshold; ten slow minutes in a
  hundred fire the SLO's ticket and page once each, with the burn rate over each window following, and
  the recovery resolves both. The error budget over the period is kept on every run.
- Healthy traffic is quiet, and a quiet minute (fewer rows than min_rows) still counts for the SLO.
- Over a sampled source the requests are counted from the latency sketch of every row, not the
  sample, and the slow ones within the sketch's accuracy.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from deployments import Deployment, deployments
from factories import T0

from monitor.checks import latency
from monitor.checks.base import Window
from monitor.checks.latency import LatencySpec
from monitor.ingest.sketch import RELATIVE_ACCURACY, LatencySketch
from monitor.sources.base import Summary
from monitor.storage.tables import Alert, CheckRun, Metric

ROWS_PER_MINUTE = 50
MINUTES = 100
SLOW = range(30, 40)  # the minutes whose every request takes about half a second


def live(slow: range = SLOW, rows: int = ROWS_PER_MINUTE) -> pd.DataFrame:
    """``rows`` requests in each of MINUTES minutes from T0: 50-250 ms, or 400-600 ms in a ``slow`` minute."""
    rng = np.random.default_rng(7)
    frames = []
    for minute in range(MINUTES):
        low = 400 if minute in slow else 50
        frames.append(
            pd.DataFrame(
                {
                    "request_id": [f"m{minute}-{i}" for i in range(rows)],
                    "created_at": [T0 + timedelta(minutes=minute, seconds=float(s)) for s in rng.uniform(0, 59, rows)],
                    "amount": rng.lognormal(3.0, 1.0, rows),
                    "country": rng.choice(["US", "DE"], rows),
                    "account_age_days": rng.integers(1, 3000, rows),
                    "score": rng.random(rows),
                    "latency_ms": rng.uniform(low, low + 200, rows),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def latency_check(*rules: dict) -> list[dict]:
    return [
        {
            "name": "latency",
            "kind": "latency",
            "every": "1m",
            "window": "1m",
            "min_rows": 30,
            "alert": list(rules),
            "slo": {"objective": "99%", "threshold": "300ms", "period": "1d"},
        }
    ]


@pytest.fixture
def deploy(tmp_path, database_url):
    yield from deployments(lambda rules: Deployment(tmp_path, database_url, latency_check, rules, live=live()))


def run_minutes(deployment: Deployment, minutes: int) -> list:
    daemon = deployment.daemon
    model = daemon.project.checks.models["fraud-scorer"]
    check = model.checks[0]
    results = []
    for _ in range(minutes):
        deployment.clock.advance(timedelta(minutes=1))
        results.append(daemon.evaluate(model, check))
        daemon.outbox.deliver_due()
    return results


def series(deployment: Deployment, metric: str, window: timedelta | None = None) -> list[float]:
    with deployment.daemon.engine.connect() as conn:
        rows = conn.execute(
            sa.select(Metric.value, Metric.window_start, Metric.window_end).where(Metric.metric == metric).order_by(Metric.id)
        ).all()
    return [v for v, start, end in rows if window is None or end - start == window]


def test_slow_minutes_burn_the_budget_fire_ticket_and_page_once_and_the_recovery_resolves_them(deploy):
    deployment = deploy()
    results = run_minutes(deployment, MINUTES)

    # Each run counts the requests of its minute, and the slow ones.
    assert series(deployment, "requests") == [float(ROWS_PER_MINUTE)] * MINUTES
    slow = series(deployment, "slow_requests")
    assert slow == [float(ROWS_PER_MINUTE) if m in SLOW else 0.0 for m in range(MINUTES)]
    # The burn rate over the page's 5m: all slow is 100% / the 1% budget.
    burn_5m = series(deployment, "burn_rate", timedelta(minutes=5))
    assert max(burn_5m) == pytest.approx(100)
    assert burn_5m[-1] == 0.0
    # The budget over the 1d period: 500 slow of 5,000 requests, when 1% (50) may be.
    budget = series(deployment, "error_budget_remaining", timedelta(days=1))
    assert budget[0] == 1.0 and budget[-1] == pytest.approx(1 - 500 / 50)

    rows = deployment.rows(Alert)
    assert [(a.rule_key, a.severity, a.state) for a in rows] == [
        ("slo-ticket", "warning", "resolved"),
        ("slo-page", "critical", "resolved"),
    ]
    fired = {a.rule_key: a.fired for a in rows}
    minute = [T0 + timedelta(minutes=m + 1) for m in range(MINUTES)]  # run m ends the minute m
    # The ticket: above 6x over 30m (2 of 30 runs' requests slow is 6.7%) and 6h (2 of 32 minutes).
    assert fired["slo-ticket"] == minute[31]
    # The page: above 14.4x over 1h (6 of 36 minutes, 16.7%) and 5m.
    assert fired["slo-page"] == minute[35]
    resolved = {a.rule_key: a.resolved for a in rows}
    assert resolved["slo-page"] == minute[44]  # the first 5m window without a slow minute (one of 5 is 20x)
    assert resolved["slo-ticket"] == minute[68]  # the first 30m window with one slow minute of 30 (3.3x, below 6x)
    assert {r.outcome for r in results[31:40]} == {"breach"}


def test_healthy_traffic_is_quiet_and_a_quiet_minute_still_counts(deploy):
    deployment = deploy()
    path = deployment.root / "data" / "live-0001.parquet"
    frame = live(slow=range(0))
    quiet = frame["request_id"].str.startswith("m5-") & (frame.index % ROWS_PER_MINUTE >= 10)
    frame[~quiet].to_parquet(path)  # minute 5 has 10 requests, fewer than min_rows

    results = run_minutes(deployment, 20)
    assert deployment.rows(Alert) == []
    assert {r.outcome for r in results} == {"ok"}
    assert series(deployment, "requests")[5] == 10.0
    [quiet_run] = [run for run in deployment.rows(CheckRun) if run.window_end == T0 + timedelta(minutes=6)]
    assert quiet_run.evidence["no_percentiles"] == "10 rows in the window, 30 needed"
    assert len(series(deployment, "p99_ms")) == 19


def test_the_sketch_counts_slow_requests_within_its_accuracy():
    rng = np.random.default_rng(3)
    latencies = rng.gamma(2.0, 100.0, 100_000)
    sketch = LatencySketch()
    sketch.add_many(latencies)
    threshold = 300.0
    lowest = int((latencies > threshold * (1 + RELATIVE_ACCURACY)).sum())
    highest = int((latencies > threshold * (1 - RELATIVE_ACCURACY)).sum())
    assert lowest <= sketch.count_above(threshold) <= highest
    assert sketch.count_above(0.0) == len(latencies)


def test_over_a_sampled_source_the_counts_are_of_every_row_not_the_sample():
    every_row = LatencySketch()
    every_row.add_many([100.0] * 900 + [500.0] * 100)
    spec = LatencySpec.model_validate(latency_check()[0])
    sample = pd.DataFrame({"latency_ms": [100.0] * 20})  # what the sampler kept: none of the slow ones
    window = Window(T0, T0 + timedelta(minutes=1), sample, summary=Summary(rows=1000, latency=every_row))
    values = {v.metric: v.value for v in latency.evaluate(spec, window, None, []).values}
    assert (values["requests"], values["slow_requests"]) == (1000.0, 100.0)
