"""Samples and per-minute counts past `ingest.retention` are deleted; younger ones stay."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from factories import T0

from monitor.clock import FixedClock
from monitor.ingest.retention import MINUTES_PER_BATCH, delete_expired
from monitor.ingest.sampler import Sampler


def rows_at(minutes_ago: int, count: int) -> list[dict]:
    ts = (T0 - timedelta(minutes=minutes_ago)).timestamp()
    return [
        {"id": f"m{minutes_ago}-{i}", "ts": ts, "features": {"x": i}, "prediction": 0.5, "latency_ms": 10.0} for i in range(count)
    ]


def test_retention_removes_only_expired_minutes_in_batches(engine):
    sampler = Sampler(engine, FixedClock(T0), capacity=5, seed=0)
    old_minutes = range(10 * 60, 10 * 60 + MINUTES_PER_BATCH + 7)  # more than one batch of expired minutes
    for minutes_ago in [*old_minutes, 30, 2]:
        sampler.add("scorer", rows_at(minutes_ago, 8), 0, T0.timestamp())
    assert sampler.flush() == len(old_minutes) + 2

    removed = delete_expired(engine, before=T0 - timedelta(hours=1))

    assert removed == len(old_minutes)
    with engine.connect() as conn:
        minutes = conn.scalars(sa.text("SELECT minute FROM ingest_stats ORDER BY minute")).all()
        samples = conn.scalar(sa.text("SELECT count(*) FROM samples"))
    assert len(minutes) == 2  # the two recent minutes stay
    assert samples == 2 * 5  # with their samples, each within its bound
    assert delete_expired(engine, before=T0 - timedelta(hours=1)) == 0
