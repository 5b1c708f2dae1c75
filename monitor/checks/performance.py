"""Check kind ``performance``: model quality against labels that arrive later, through evidently.

Only predictions whose label has arrived count. ``label_delay`` moves the window back: a run at
``now`` looks at the predictions made in ``[now - label_delay - window, now - label_delay)``, the
ones old enough for their labels to be in. Fewer labelled rows than ``min_rows`` is
``insufficient_data`` (labels not in yet), never a drop in quality.

Classification (``task: classification``): ``accuracy``, ``precision``, ``recall``, ``f1`` and, when
the prediction is a probability of the positive class, ``roc_auc``; a probability becomes a class at
``probability_threshold``. Regression: ``mae``, ``rmse`` and ``mape`` (in percent, as evidently gives it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window
from monitor.config.types import Duration
from monitor.sources.base import LABEL, PREDICTION

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = {"mae": "mean_abs_error", "rmse": "rmse", "mape": "mean_abs_perc_error"}


class PerformanceSpec(CheckSpec):
    kind: Literal["performance"]
    task: Literal["classification", "regression"]
    label_delay: Duration = Field(timedelta(0), description="how old a prediction must be before its label is expected")
    positive_label: str | int | bool = 1
    probability_threshold: float = Field(0.5, gt=0, lt=1)

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        end = now - self.label_delay
        return end - self.window, end


def evaluate(spec: PerformanceSpec, window: Window, reference, features: list[str]) -> Evaluation:
    import pandas as pd

    frame = window.frame[[PREDICTION, LABEL]].dropna()
    if len(frame) < spec.min_rows:
        return Evaluation(
            "insufficient_data",
            len(frame),
            error=f"{len(frame)} labelled predictions in the window, {spec.min_rows} needed (labels not in yet?)",
        )
    from evidently.legacy.metrics import ClassificationQualityMetric, RegressionQualityMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    data = pd.DataFrame({"target": frame[LABEL].to_numpy(), "prediction": frame[PREDICTION].to_numpy()})
    if spec.task == "classification":
        numbers = pd.to_numeric(data["prediction"], errors="coerce")
        probabilistic = bool(numbers.notna().all() and numbers.between(0, 1).all() and not numbers.isin([0, 1]).all())
        if probabilistic:
            data["prediction"] = numbers
        metric = ClassificationQualityMetric(probas_threshold=spec.probability_threshold if probabilistic else None)
        mapping = ColumnMapping(target="target", prediction="prediction", pos_label=spec.positive_label)
    else:
        data = data.astype(float)
        metric = RegressionQualityMetric()
        mapping = ColumnMapping(target="target", prediction="prediction")
    report = Report(metrics=[metric])
    try:
        report.run(reference_data=None, current_data=data, column_mapping=mapping)
        result = report.as_dict()["metrics"][0]["result"]["current"]
    except (ValueError, TypeError, KeyError) as exc:
        return Evaluation.failed(f"evidently could not compute {spec.task} quality: {exc}", len(frame))
    if spec.task == "classification":
        values = [MetricValue(name, float(result[name])) for name in CLASSIFICATION if result.get(name) is not None]
    else:
        values = [MetricValue(name, float(result[key])) for name, key in REGRESSION.items()]
    return Evaluation("ok", len(frame), values)


KIND = CheckKind(
    kind="performance",
    spec=PerformanceSpec,
    dataset_metrics=frozenset(CLASSIFICATION) | frozenset(REGRESSION),
    feature_metrics=frozenset(),
    evaluate=evaluate,
    required_roles=(PREDICTION, LABEL),
    metrics_for=lambda spec: frozenset(CLASSIFICATION) if spec.task == "classification" else frozenset(REGRESSION),
)
