"""Check kind ``drift``: per-feature distribution drift of the window against the reference, by evidently.

Evidently chooses the statistical test per column (or uses ``method``) and says per column whether it
drifted; the data set drifts by the share of drifted columns. Metrics: ``drift_share`` and
``drifted_count`` for the data set; ``drift_score`` and ``drifted`` (1 or 0) per feature.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field

from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window

# Evidently's stat-test names (its legacy registry); a test keeps this list equal to evidently's.
METHODS = (
    "anderson",
    "chisquare",
    "cramer_von_mises",
    "ed",
    "es",
    "fisher_exact",
    "g_test",
    "hellinger",
    "jensenshannon",
    "kl_div",
    "ks",
    "mannw",
    "empirical_mmd",
    "psi",
    "t_test",
    "TVD",
    "wasserstein",
    "z",
)


class DriftSpec(CheckSpec):
    kind: Literal["drift"]
    method: Literal[METHODS] | None = Field(None, description="evidently's stat test; evidently chooses per column when unset")
    threshold: float | None = Field(None, gt=0, description="the method's drift threshold; evidently's default when unset")
    features: list[str] | None = Field(None, min_length=1, description="a subset of the model's features; all when unset")


def strength(score: float, threshold: float, drifted: bool) -> float:
    """How far a feature is past its threshold, 1 at the threshold, whatever the direction of the test.

    p-value tests drift when the score falls under the threshold, distances when it rises over it;
    evidently's own verdict tells which one a feature used, so the two can be ranked together.
    Never infinite (a p-value of 0, or one so small the ratio overflows): the strength goes into the
    run's JSON evidence, and JSON (so PostgreSQL's json column) has no Infinity.
    """
    if score <= 0 or threshold <= 0:
        return sys.float_info.max if drifted else 0.0
    p_value_like = drifted == (score < threshold)
    return min(threshold / score if p_value_like else score / threshold, sys.float_info.max)


def evaluate(spec: DriftSpec, window: Window, reference, features: list[str]) -> Evaluation:
    columns = spec.features or features
    frame = window.frame
    sample_size = len(frame)
    if sample_size < spec.min_rows:
        return Evaluation.insufficient(sample_size, spec.min_rows)

    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    numerical = reference.numerical(columns)
    mapping = ColumnMapping(
        numerical_features=numerical,
        categorical_features=[c for c in columns if c not in numerical],
        target=None,
        prediction=None,
        datetime=None,
        id=None,
    )
    current = frame[columns]
    text = [c for c in columns if c not in numerical and current[c].dtype != reference.frame[c].dtype]
    if text:  # a category sent as 80331 is the reference's "80331", not a new category
        current = current.assign(**{c: current[c].where(current[c].isna(), current[c].astype(str)) for c in text})
    report = Report(metrics=[DataDriftTable(columns=columns, stattest=spec.method, stattest_threshold=spec.threshold)])
    try:
        report.run(reference_data=reference.frame[columns], current_data=current, column_mapping=mapping)
        result = report.as_dict()["metrics"][0]["result"]
    except (ValueError, TypeError, KeyError) as exc:
        return Evaluation.failed(f"evidently could not compute drift: {exc}", sample_size)

    values = [
        MetricValue("drift_share", float(result["share_of_drifted_columns"])),
        MetricValue("drifted_count", float(result["number_of_drifted_columns"])),
    ]
    per_feature = []
    for name, column in result["drift_by_columns"].items():
        score, threshold, drifted = (
            float(column["drift_score"]),
            float(column["stattest_threshold"]),
            bool(column["drift_detected"]),
        )
        values += [MetricValue("drift_score", score, name), MetricValue("drifted", float(drifted), name)]
        per_feature.append(
            {
                "feature": name,
                "score": score,
                "method": column["stattest_name"],
                "threshold": threshold,
                "drifted": drifted,
                "strength": strength(score, threshold, drifted),
            }
        )
    per_feature.sort(key=lambda f: (not f["drifted"], -f["strength"]))
    return Evaluation("ok", sample_size, values, evidence={"features": per_feature})


KIND = CheckKind(
    kind="drift",
    spec=DriftSpec,
    dataset_metrics=frozenset({"drift_share", "drifted_count"}),
    feature_metrics=frozenset({"drift_score", "drifted"}),
    evaluate=evaluate,
    needs_reference=True,
)
