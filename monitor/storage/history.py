"""A metric's past values, read back from the ``metrics`` table: what a baseline, a rule's own window
and an SLO's windows are computed from.

Every read is one parameterised query that the index ``ix_metrics_model_metric_time`` (model, metric,
time) bounds to the period asked for, newest first, and at most ``limit`` rows: a check that runs
every second over a 30-day baseline still reads a bounded number of values. A check split by
``model_version`` reads each version's own values (``model_version`` "" is a check over all of them).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.storage.tables import Metric

MAX_POINTS = 100_000
"""Values read at most per query (the newest): about 70 days of a check that runs every minute."""


def _query(model: str, check: str, metric: str, since: datetime, until: datetime, limit: int, model_version: str) -> sa.Select:
    return (
        sa.select(Metric.feature, Metric.value)
        .where(
            Metric.model == model,
            Metric.metric == metric,
            Metric.time >= since,
            Metric.time < until,
            Metric.check == check,
            Metric.model_version == model_version,
        )
        .order_by(Metric.time.desc())
        .limit(limit)
    )


def values(
    conn: Connection,
    model: str,
    check: str,
    metric: str,
    feature: str,
    since: datetime,
    until: datetime,
    *,
    limit: int = MAX_POINTS,
    model_version: str = "",
) -> list[float]:
    """The values of ``metric`` of ``feature`` ("" for a data-set metric) that ``check`` of ``model``
    stored in ``[since, until)``, newest first; of one ``model_version`` ("": a check not split by it)."""
    query = _query(model, check, metric, since, until, limit, model_version).where(Metric.feature == feature)
    return [value for _, value in conn.execute(query)]


def values_by_feature(
    conn: Connection,
    model: str,
    check: str,
    metric: str,
    since: datetime,
    until: datetime,
    *,
    limit: int = MAX_POINTS,
    model_version: str = "",
) -> dict[str, list[float]]:
    """The same for every feature at once (one query for a per-feature metric), newest first each."""
    out: dict[str, list[float]] = {}
    for feature, value in conn.execute(_query(model, check, metric, since, until, limit, model_version)):
        out.setdefault(feature, []).append(value)
    return out


def count_and_sum(
    conn: Connection,
    model: str,
    check: str,
    metric: str,
    feature: str,
    since: datetime,
    until: datetime,
    *,
    model_version: str = "",
) -> tuple[int, float]:
    """How many values of ``metric`` of ``feature`` ``check`` of ``model`` stored in ``[since, until)``, and
    their sum: one aggregate over the same index, so a 30-day SLO period costs no rows read back (a probe's
    availability over a window is the sum of its ``up`` values over their count)."""
    query = sa.select(sa.func.count(Metric.value), sa.func.coalesce(sa.func.sum(Metric.value), 0.0)).where(
        Metric.model == model,
        Metric.metric == metric,
        Metric.time >= since,
        Metric.time < until,
        Metric.check == check,
        Metric.feature == feature,
        Metric.model_version == model_version,
    )
    count, total = conn.execute(query).one()
    return int(count), float(total)
