"""Check kind ``freshness``: how old the newest row is, whenever it was written.

Metric: ``age_s``, the seconds from the newest row's own timestamp to the run (``now``). It reads no
window of rows, only the source's newest timestamp before now (:meth:`Source.newest`): a ``files``
source's newest row over every file (not a file's modification time), a ``sql`` source's
``max(timestamp)``, an ``ingest`` source's newest accepted row (within a minute, see
monitor/sources/ingest.py). So it is evaluated when no row is in any window, the silent failure of
a job that stopped writing: ``age_s > 7200`` fires two hours after its last row. ``min_rows`` does
not apply. A source with no row at all is an ``error`` run that says so: a job that never wrote is
not fresh, and age_s has a value from its first row on.

``window`` is not read (the run's recorded window is the ``every`` before it when unset).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window
from monitor.config.durations import format_duration
from monitor.config.types import Duration


class FreshnessSpec(CheckSpec):
    kind: Literal["freshness"]
    # Its every when unset (``every`` is validated first: a factory given the data sees it).
    window: Duration = Field(
        default_factory=lambda data: data.get("every"),
        description="not read: the age is of the newest row, whenever it was written; recorded as the run's window",
    )
    min_rows: int = Field(0, ge=0, description="not used by freshness checks: one row, the newest, is the measure")


def evaluate(spec: FreshnessSpec, window: Window, reference, features: list[str]) -> Evaluation:
    if window.newest is None:
        return Evaluation.failed(
            f"the source has no row before {window.end:%Y-%m-%d %H:%M:%S} UTC: nothing was written, so nothing is "
            "fresh (age_s is measured from the first row on)"
        )
    age = window.end - window.newest
    newest = f"newest row: {window.newest:%Y-%m-%d %H:%M:%S} UTC, {format_duration(timedelta(seconds=round(age.total_seconds())))} before this run"
    return Evaluation(
        "ok", 0, [MetricValue("age_s", age.total_seconds())], evidence={"newest": window.newest.isoformat()}, notes=[newest]
    )


KIND = CheckKind(
    kind="freshness",
    spec=FreshnessSpec,
    dataset_metrics=frozenset({"age_s"}),
    feature_metrics=frozenset(),
    evaluate=evaluate,
    reads_newest=True,
)
