"""Check kind ``volume``: how many rows arrived in the window, counted exactly.

Metrics: ``rows`` and ``rows_per_minute``. Over the ingest source the count is the exact number of
rows accepted by the API (not the sample). A quiet window is a value, not missing data, so a volume
check never reports ``insufficient_data``: ``rows < 100`` is how one alerts on silence.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window


class VolumeSpec(CheckSpec):
    kind: Literal["volume"]
    min_rows: int = Field(0, ge=0, description="not used by volume checks: every count is a value")


def evaluate(spec: VolumeSpec, window: Window, reference, features: list[str]) -> Evaluation:
    rows = window.rows
    minutes = (window.end - window.start).total_seconds() / 60
    return Evaluation("ok", rows, [MetricValue("rows", float(rows)), MetricValue("rows_per_minute", rows / minutes)])


KIND = CheckKind(
    kind="volume",
    spec=VolumeSpec,
    dataset_metrics=frozenset({"rows", "rows_per_minute"}),
    feature_metrics=frozenset(),
    evaluate=evaluate,
)
