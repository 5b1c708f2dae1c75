"""A metric's past values, read back from the ``metrics`` table: what a baseline, a rule's own window
and an SLO's windows are computed from.

Every read is one parameterised query that the index ``ix_metrics_model_metric_time`` (model, metric,
time) bounds to the period asked for, newest first, and at most ``limit`` rows: a check that runs
every second over a 30-day baseline still reads a bounded number of values. A check split by
``model_version`` reads each version's own values (``model_version`` "" is a check over all of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.storage.tables import Metric

MAX_POINTS = 100_000
"""Values read at most per query (the newest): about 70 days of a check that runs every minute."""


@dataclass(frozen=True)
class CheckPeriod:
    """What ``check`` of ``model`` stored in ``[since, until)``, of one ``model_version`` ("": a check not
    split by it)."""

    model: str
    check: str
    since: datetime
    until: datetime
    model_version: str = ""

    def rows_of(self, metric: str) -> list[ColumnElement[bool]]:
        """The conditions of its rows of ``metric``: on the index's columns, and the check's and version's."""
        return [
            Metric.model == self.model,
            Metric.metric == metric,
            Metric.time >= self.since,
            Metric.time < self.until,
            Metric.check == self.check,
            Metric.model_version == self.model_version,
        ]


def _newest(period: CheckPeriod, metric: str, limit: int) -> sa.Select:
    return sa.select(Metric.feature, Metric.value).where(*period.rows_of(metric)).order_by(Metric.time.desc()).limit(limit)


def values(conn: Connection, period: CheckPeriod, metric: str, feature: str, *, limit: int = MAX_POINTS) -> list[float]:
    """The values of ``metric`` of ``feature`` ("" for a data-set metric) stored in ``period``, newest first."""
    query = _newest(period, metric, limit).where(Metric.feature == feature)
    return [value for _, value in conn.execute(query)]


def values_by_feature(conn: Connection, period: CheckPeriod, metric: str, *, limit: int = MAX_POINTS) -> dict[str, list[float]]:
    """The same for every feature at once (one query for a per-feature metric), newest first each."""
    out: dict[str, list[float]] = {}
    for feature, value in conn.execute(_newest(period, metric, limit)):
        out.setdefault(feature, []).append(value)
    return out


def count_and_sum(conn: Connection, period: CheckPeriod, metric: str, feature: str) -> tuple[int, float]:
    """How many values of ``metric`` of ``feature`` are stored in ``period``, and their sum: one aggregate
    over the same index, so a 30-day SLO period costs no rows read back (a probe's availability over a
    window is the sum of its ``up`` values over their count)."""
    query = sa.select(sa.func.count(Metric.value), sa.func.coalesce(sa.func.sum(Metric.value), 0.0)).where(
        *period.rows_of(metric), Metric.feature == feature
    )
    count, total = conn.execute(query).one()
    return int(count), float(total)
