"""Check kind ``prediction_drift``: drift of the model's predictions alone, against the reference's.

The prediction column (the source's ``prediction``) is compared with the reference's column of the same
name by evidently's drift test for its type, as ``drift`` compares a feature (its functions, reused):
``method`` and ``threshold`` as there, evidently's default test for the type when unset. Metrics, for
the data set: ``drift_score`` and ``drifted`` (1 or 0).

A classifier's predictions are classes: text or true/false in the reference, or whole numbers of at
most ``MAX_CLASSES`` distinct values (``task`` says it outright). They are compared as categories, and
``class_share`` is each class's share of the window's predictions (the feature is the class, as text:
``fraud``, ``1``, ``True``), its ``reference`` the class's share of the reference's predictions (0 for a
class the reference never predicted; a class the window never predicts has share 0). Otherwise the
predictions are numbers (a score, a regression) and there is no ``class_share``.

A prediction that is missing, not finite or not of the type is left out and counted in the evidence,
as ``drift`` does; fewer usable predictions than ``min_rows`` in a window of enough rows is an error
run that says why.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from monitor.checks.base import CheckKind, Evaluation, EvidenceData, MetricValue, SpecProblem, Window
from monitor.checks.drift import (
    EVIDENTLY_ERRORS,
    METHODS,
    DriftTestSpec,
    calibrated_drift,
    capped,
    drift_by_column,
    fitting,
    needed,
    seed_of,
    small_reference,
    strength,
    thinned,
    too_few,
    unusable,
    warm_up,
)
from monitor.sources.base import PREDICTION
from monitor.sources.reference import TYPE_NAMES, ColumnType, as_type

if TYPE_CHECKING:
    import pandas as pd

    from monitor.checks.fast_drift import PreparedColumn
    from monitor.sources.reference import Reference

MAX_CLASSES = 20
"""Whole-number predictions with at most this many distinct values in the reference are classes."""


class PredictionDriftSpec(DriftTestSpec):
    kind: Literal["prediction_drift"]
    task: Literal["classification", "regression"] | None = Field(
        None, description="classes or numbers; read from the reference's predictions when unset"
    )


def compared_as(spec: PredictionDriftSpec, reference: Reference) -> ColumnType:
    """How the predictions are compared: ``number``, or as classes, ``string`` (or ``boolean`` when the
    reference's predictions are true/false)."""
    column = reference.prediction
    assert column is not None
    kind = reference.column_type(column)
    if spec.task == "regression":
        return "number"
    if kind != "number":
        return kind
    if spec.task == "classification":
        return "string"
    values = reference.typed(column).values.dropna()
    whole = bool(len(values)) and bool((values == values.round()).all())
    return "string" if whole and values.nunique() <= MAX_CLASSES else "number"


def check_reference(spec: PredictionDriftSpec, reference: Reference, features: list[str]) -> list[SpecProblem]:
    """The reference must hold the predictions, of a type the task and the method fit."""
    column = reference.prediction
    if column is None:  # no source.prediction: the loader says so (required_roles)
        return []
    if column not in reference.frame.columns:
        columns = ", ".join(map(str, reference.frame.columns))
        return [
            (
                ("kind",),
                f"a prediction_drift check compares the predictions with the reference's, and the reference "
                f"{reference.path} has no column {column!r} (source.prediction): add it (it has {columns})",
            )
        ]
    kind = reference.column_type(column)
    if spec.task == "regression" and kind != "number":
        return [(("task",), f"task: regression compares numbers, and the reference's {column!r} is {TYPE_NAMES[kind]}")]
    problems: list[SpecProblem] = []
    compared = compared_as(spec, reference)
    if spec.method is not None and spec.method not in fitting(compared):
        what = "numbers" if compared == "number" else "classes"
        fits = ", ".join(m for m in METHODS if m in fitting(compared))
        problems.append(
            (
                ("method",),
                f"method {spec.method!r} does not fit the predictions {column!r} ({what}): use one of {fits} "
                "or leave method unset (evidently then chooses for their type)",
            )
        )
    return problems


def _class_shares(values) -> dict[str, float]:
    counts = values.dropna().map(str).value_counts(normalize=True)
    return {str(label): float(share) for label, share in counts.items()}


def evaluate(spec: PredictionDriftSpec, window: Window, reference, features: list[str]) -> Evaluation:
    sample_size = len(window.frame)
    frame, sampled = capped(spec, window)
    if sample_size < spec.min_rows:
        return Evaluation.insufficient(sample_size, spec.min_rows)
    column = reference.prediction
    kind = compared_as(spec, reference)
    ref = reference.typed_as(column, kind)
    live = as_type(frame[PREDICTION], kind)
    counts = {"missing": live.missing, "not_finite": live.not_finite, "wrong_type": live.wrong_type}
    reason = unusable(kind, ref, live, spec.min_rows)
    if reason is not None:
        return Evaluation.failed(f"the predictions ({column}) cannot be compared: {reason}", sample_size)
    minimum, why = needed(spec, ref.usable)
    if live.usable < minimum:
        short = {"feature": column, "values": live.usable, "needed": minimum, "for": why}
        return Evaluation("insufficient_data", sample_size, evidence={"insufficient": [short], **sampled},
                          error=too_few([short]))  # fmt: skip
    try:

        def prepared(_: str) -> PreparedColumn:  # made only on the fast path, once per reference
            from monitor.checks.fast_drift import PreparedColumn

            return reference.worked_out(("prediction_drift", column, kind), lambda: PreparedColumn.of(ref.values, kind))

        thin: dict[str, Any] = {}
        if spec.threshold == "auto":
            key = ("prediction_drift limit", column, kind)
            result = calibrated_drift(spec, reference, key, prepared(column), ref.values, live.values)
        else:
            values, thin = thinned(spec, live.values, ref.usable, seed_of(window))
            typed = {column: ref.values}, {column: values}
            result = drift_by_column(spec.method, spec.fixed_threshold, *typed, {column: kind}, prepared)[column]
    except EVIDENTLY_ERRORS as exc:
        return Evaluation.failed(f"evidently could not compute the drift of the predictions ({column}): {exc}", sample_size)
    score, threshold, drifted = float(result["drift_score"]), float(result["stattest_threshold"]), bool(result["drift_detected"])
    if not math.isfinite(score):
        return Evaluation.failed(f"evidently's {result['stattest_name']} of the predictions ({column}) is {score}", sample_size)
    values = [MetricValue("drift_score", score), MetricValue("drifted", float(drifted))]
    found: dict[str, Any] = {
        "feature": column,
        "type": "classes" if kind != "number" else "number",
        "score": score,
        "method": result["stattest_name"],
        "threshold": threshold,
        "drifted": drifted,
        "strength": strength(score, threshold, drifted),
        **({"calibrated": result["calibrated"]} if "calibrated" in result else {}),
        "sample_sizes": {"window": thin["thinned"]["values"] if thin else live.usable, "reference": ref.usable},
        **thin,
        **counts,
    }
    evidence: dict[str, Any] = {"features": [found], **sampled}
    if kind != "number":
        now, before = _class_shares(live.values), _class_shares(ref.values)
        classes = sorted(now.keys() | before.keys(), key=lambda c: (-before.get(c, 0.0), c))
        values += [MetricValue("class_share", now.get(c, 0.0), c, reference=before.get(c, 0.0)) for c in classes]
        evidence["classes"] = [{"class": v.feature, "share": v.value, "reference": v.reference} for v in values[2:]]
    return Evaluation("ok", sample_size, values, evidence=evidence)


def _small_reference(spec: PredictionDriftSpec, reference: Reference, features: list[str]) -> list[SpecProblem]:
    return small_reference(spec, reference, [reference.prediction]) if reference.prediction else []


def evidence(spec: PredictionDriftSpec, current: pd.DataFrame, reference: Reference | None, features: list[str]) -> EvidenceData:
    """evidently's drift report of the window's predictions against the reference's, as the run compared
    them (classes as text, or numbers), under the source's name for them."""
    import pandas as pd
    from evidently.presets import DataDriftPreset

    if reference is None or reference.prediction is None or PREDICTION not in current.columns:
        raise ValueError("no predictions to compare with the reference's")
    column, kind = reference.prediction, compared_as(spec, reference)
    ours = pd.DataFrame({column: as_type(current[PREDICTION], kind).values})
    theirs = pd.DataFrame({column: reference.typed_as(column, kind).values})
    return EvidenceData([DataDriftPreset(columns=[column])], ours, len(ours), theirs)


KIND = CheckKind(
    kind="prediction_drift",
    spec=PredictionDriftSpec,
    dataset_metrics=frozenset({"drift_score", "drifted"}),
    feature_metrics=frozenset({"class_share"}),
    evaluate=evaluate,
    needs_reference=True,
    range_metrics=frozenset({"drift_score", "class_share"}),
    shares=frozenset({"class_share"}),
    required_roles=(PREDICTION,),
    reference_metrics=frozenset({"class_share"}),
    check_reference=check_reference,
    reference_warnings=_small_reference,
    warm_up=warm_up,  # evidently only for a method the fast path does not compute, when first used
    evidence=evidence,
)
