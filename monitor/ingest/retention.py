"""Deleting ingested samples and per-minute counts past their age, a few minutes at a time.

Small transactions keep the write lock short on SQLite and the row locks few on PostgreSQL, so
ingest and dashboards are not held up while a large backlog is removed.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.storage.tables import IngestStat, Sample, table

MINUTES_PER_BATCH = 60


def delete_expired(engine: Engine, before: datetime) -> int:
    """Delete the minutes older than ``before``; returns how many minutes (of any model) went."""
    stats, samples = table(IngestStat), table(Sample)
    removed = 0
    while True:
        with engine.begin() as conn:
            keys = conn.execute(
                sa.select(stats.c.model, stats.c.minute)
                .where(stats.c.minute < before)
                .order_by(stats.c.minute)
                .limit(MINUTES_PER_BATCH)
            ).all()
            for model, minute in keys:
                conn.execute(sa.delete(samples).where(samples.c.model == model, samples.c.minute == minute))
                conn.execute(sa.delete(stats).where(stats.c.model == model, stats.c.minute == minute))
        removed += len(keys)
        if len(keys) < MINUTES_PER_BATCH:
            return removed
