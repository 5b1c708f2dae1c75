"""Check kind ``volume``: how many rows arrived in the window, counted exactly.

Metrics: ``rows`` and ``rows_per_minute``. Over the ingest source the count is the exact number of
rows accepted by the API (not the sample). A quiet window is a value, not missing data, so a volume
check never reports ``insufficient_data`` for few rows: ``rows < 100`` is how one alerts on silence.
Over the ``ingest`` source, whose rows exist only since the daemon first watched the model, the check
is ``insufficient_data`` for ``start_grace`` after that (one window unless set): a fresh deploy does
not alert on traffic it could not have seen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window
from monitor.config.types import Wait


class VolumeSpec(CheckSpec):
    kind: Literal["volume"]
    min_rows: int = Field(0, ge=0, description="not used by volume checks: every count is a value")
    start_grace: Wait | None = Field(
        None,
        description="over an ingest source, how long after the daemon first watches the model this is insufficient_data; its window when unset, 0s for none",
    )


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
    start_grace=lambda spec: spec.window if spec.start_grace is None else spec.start_grace,
)
