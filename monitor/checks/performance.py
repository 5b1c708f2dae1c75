"""Check kind ``performance``: model quality against labels that arrive later, through evidently.

Only predictions whose label has arrived count. ``label_delay`` moves the window back: a run at
``now`` looks at the predictions made in ``[now - label_delay - window, now - label_delay)``, the
ones old enough for their labels to be in. Rows whose label is not in yet are left out and counted
(``evidence``: ``predictions``, ``labelled``, ``unlabelled``). Fewer labelled rows than ``min_rows``
is ``insufficient_data`` ("no predictions in the window", or "N predictions, M labelled, K needed
(labels not in yet?)"), never a drop in quality.

Classification (``task: classification``): ``accuracy``, ``precision``, ``recall``, ``f1`` and
``roc_auc``. Labels and class predictions are matched to the model's **classes**: ``classes`` in the
check, else the values of the reference's label column (the column the source's ``label`` names) when
it has one,
else the values seen (labels and class predictions). A value is one of the classes by its text, with
whole numbers as integers, so ``1``, ``1.0``, ``"1"`` and ``true`` are the class ``1``. A label that
fits no class is left out, counted and named in the evidence (``unknown_labels``); so is a class
prediction that fits none (``unknown_predictions``).

The source's ``prediction`` is the model's decision; its optional ``probability`` is the model's score
for ``positive_label``. Accuracy, precision, recall and F1 are of the decision, ROC AUC of the
probability. Without a probability, a prediction that is a probability (numbers in [0, 1], not all 0
or 1) is both: the decision is ``positive_label`` when it is at least ``probability_threshold``.
A probability needs exactly two classes. With more, precision, recall and F1 are macro averages.

A metric that is undefined in the window is not a value (so it moves no episode) and
``evidence.undefined`` says why: precision without a prediction of the positive class, recall without
a label of it, F1 when either is undefined, ROC AUC over labels of one class only; with more than two
classes, precision (recall) when a class is never predicted (never a label).

Regression: ``mae``, ``rmse`` and ``mape`` (in percent, as evidently gives it); a label or prediction
that is not a number is left out and counted like a label that fits no class.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from monitor.checks.base import (
    CheckKind,
    CheckSpec,
    Evaluation,
    EvidenceData,
    MetricValue,
    SpecProblem,
    Window,
    import_evidently,
)
from monitor.checks.classes import ClassSet, class_key, ordered, plain, reference_classes, show
from monitor.config.types import Wait
from monitor.sources.base import LABEL, PREDICTION, PROBABILITY

if TYPE_CHECKING:
    import pandas as pd

    from monitor.sources.reference import Reference

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = {"mae": "mean_abs_error", "rmse": "rmse", "mape": "mean_abs_perc_error"}
SHOWN_VALUES = 10  # how many distinct unknown values the evidence names

ClassValue = str | int | bool
FROM = {"check": "the check's classes", "reference": "the reference's label column", "values": "the values seen"}


class PerformanceSpec(CheckSpec):
    kind: Literal["performance"]
    task: Literal["classification", "regression"]
    label_delay: Wait = Field(timedelta(0), description="how old a prediction must be before its label is expected")
    positive_label: ClassValue = 1
    probability_threshold: float = Field(0.5, gt=0, lt=1)
    classes: list[ClassValue] | None = Field(
        None,
        min_length=2,
        description="the classes labels and decisions are one of; from the reference's label column, else the values, when unset",
    )

    @field_validator("classes")
    @classmethod
    def _classes_fit(cls, classes: list[ClassValue] | None, info: ValidationInfo) -> list[ClassValue] | None:
        # A field validator rather than the model's, so that a mistake is reported at `classes:`; the keys
        # it is checked against come before it (info.data lacks one that was itself a mistake).
        if classes is None:
            return classes
        if info.data.get("task", "classification") != "classification":
            raise ValueError("classes are for task: classification")
        seen: dict[str | None, ClassValue] = {}
        for value in classes:
            key = class_key(value)
            if key in seen:
                raise ValueError(f"classes {show(seen[key])} and {show(value)} are the same class")
            seen[key] = value
        positive = info.data.get("positive_label")
        if len(classes) == 2 and "positive_label" in info.data and class_key(positive) not in seen:
            raise ValueError(f"positive_label {show(positive)} is not one of the classes {', '.join(map(show, classes))}")
        return classes

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        end = now - self.label_delay
        return end - self.window, end

    def declared_classes(self, reference: Reference | None) -> ClassSet | None:
        """The classes from the check or the reference; None when they are to be inferred from the values."""
        if self.task != "classification":
            return None
        if self.classes is not None:
            return ClassSet(self.classes, "check")
        return reference_classes(reference)


def check_reference(spec: PerformanceSpec, reference: Reference, features: list[str]) -> list[SpecProblem]:
    """Refuses a positive_label that is not one of the classes of the reference's label column."""
    if spec.task != "classification" or spec.classes is not None:
        return []
    classes = reference_classes(reference)
    if classes is not None and len(classes) == 2 and classes.get(spec.positive_label) is None:
        return [
            (
                ("positive_label",),
                f"positive_label {show(spec.positive_label)} is not one of the classes of the reference's "
                f"{reference.label!r} column ({classes}): set positive_label, or classes",
            )
        ]
    return []


def ingest_classes(checks: Iterable[CheckSpec], reference: Reference | None) -> ClassSet | None:
    """What a label posted for this model must be one of: the classes of its classification checks
    (declared, or the reference's). None (any label) when it has none, a regression check, or a
    check that infers its classes from the values."""
    specs = [c for c in checks if isinstance(c, PerformanceSpec)]
    if not specs or any(s.task != "classification" for s in specs):
        return None
    sets = [s.declared_classes(reference) for s in specs]
    known = [s for s in sets if s is not None]
    if len(known) < len(sets):
        return None
    return ClassSet([v for s in known for v in s.values], known[0].source)


# -- evaluation ---------------------------------------------------------------------------------------------

_UNKNOWN = object()


def _scored_rows(
    frame: pd.DataFrame, evidence: dict[str, Any], unlabelled: pd.Series, unknown_label: pd.Series, unknown_prediction: pd.Series
) -> pd.Series:
    """The rows that are scored: labelled, with a label and a prediction that fit. What is left out is
    counted (and named) in ``evidence``."""
    for key, unknown, column in (
        ("unknown_labels", unknown_label, LABEL),
        ("unknown_predictions", unknown_prediction, PREDICTION),
    ):
        if unknown.any():
            evidence[key] = {"count": int(unknown.sum()), "values": _distinct(frame.loc[unknown, column])}
    labelled = ~unlabelled & ~unknown_label
    evidence["labelled"] = int(labelled.sum())
    return labelled & ~unknown_prediction


def _distinct(values: Iterable[Any]) -> list[Any]:
    """Up to SHOWN_VALUES of the distinct values, for the evidence."""
    found = {class_key(v): plain(v) for v in values}
    return sorted(found.values(), key=ordered)[:SHOWN_VALUES]


def _scores(column: pd.Series) -> pd.Series | None:
    """The column as numbers when every value is a probability and they are not all 0 or 1, else None."""
    import pandas as pd

    if len(column) == 0 or pd.api.types.is_bool_dtype(column):
        return None
    if column.dtype == object and column.map(lambda v: isinstance(v, bool) or not isinstance(v, numbers.Real)).any():
        return None
    numbers_ = pd.to_numeric(column, errors="coerce")
    if numbers_.isna().any() or not numbers_.between(0, 1).all() or numbers_.isin([0, 1]).all():
        return None
    return numbers_.astype(float)


def _inferred(spec: PerformanceSpec, seen: list[Any], *, scores: bool) -> ClassSet:
    """The classes of the values seen. A score decides between two classes: with labels of one class
    only, the other is the positive label, or 0/1's other."""
    found = {class_key(v): plain(v) for v in seen}
    found.pop(None, None)
    if scores and len(found) < 2:
        positive = plain(spec.positive_label)
        found.setdefault(class_key(positive), positive)
        if len(found) < 2 and class_key(positive) in ("0", "1"):
            other = (not positive) if isinstance(positive, bool) else 1 - positive
            found[class_key(other)] = other
    return ClassSet(sorted(found.values(), key=ordered), "values")


def _insufficient(spec: PerformanceSpec, predictions: int, labelled: int, evidence: dict) -> Evaluation:
    if predictions == 0:
        error = "no predictions in the window"
    else:
        error = f"{predictions} predictions, {labelled} labelled, {spec.min_rows} needed (labels not in yet?)"
    return Evaluation("insufficient_data", labelled, evidence=evidence, error=error)


def _report(metric, data: pd.DataFrame, mapping) -> dict:
    from evidently.legacy.report import Report

    report = Report(metrics=[metric])
    report.run(reference_data=None, current_data=data, column_mapping=mapping)
    return report.as_dict()["metrics"][0]["result"]["current"]


_EVIDENTLY_ERRORS = (ValueError, TypeError, KeyError, ZeroDivisionError)
_TARGET, _DECISION = "@target", "@decision"  # column names no class key is expected to be


def _key(value: Any) -> str:
    """The key of a value known to be a class."""
    return class_key(value) or ""


def _class_report(truth: list[str], decided: list[str], positive: Any) -> dict:
    """evidently's classification quality of the decisions (class keys)."""
    import pandas as pd
    from evidently.legacy.metrics import ClassificationQualityMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping

    present = sorted(set(truth) | set(decided))
    # With two classes present evidently computes a binary task for pos_label; over more classes than
    # two those three are macro averages, which it gives only when three or more are present.
    macro = positive is None and len(present) == 2
    pos_label = present[0] if macro else None if positive is None else _key(positive)
    mapping = ColumnMapping(target=_TARGET, prediction=_DECISION, pos_label=pos_label, task="classification")
    result = _report(ClassificationQualityMetric(), pd.DataFrame({_TARGET: truth, _DECISION: decided}), mapping)
    if macro:
        from sklearn.metrics import precision_recall_fscore_support  # type: ignore[import-untyped]

        averages = precision_recall_fscore_support(truth, decided, average="macro", zero_division=0)
        result.update(zip(("precision", "recall", "f1"), averages[:3], strict=True))
    return result


def _scored_report(truth: list[str], score: pd.Series, positive: Any, negative: Any, threshold: float | None) -> dict:
    """evidently's classification quality of the positive class's score; with ``threshold``, of the
    decisions it makes too."""
    import pandas as pd
    from evidently.legacy.metrics import ClassificationQualityMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping

    pos, neg = _key(positive), _key(negative)
    p = score.to_numpy(dtype=float)
    data = pd.DataFrame({_TARGET: truth, pos: p, neg: 1.0 - p})
    mapping = ColumnMapping(target=_TARGET, prediction=[pos, neg], pos_label=pos, task="classification")
    return _report(ClassificationQualityMetric(probas_threshold=threshold), data, mapping)


@dataclass(frozen=True)
class _Classified:
    """A window's classification rows made ready to score: each row's label and decision as one of the
    classes (or _UNKNOWN), the rows scored (``used``) and the positive class's score where there is one."""

    evidence: dict[str, Any]
    predictions: int
    classes: ClassSet
    positive: Any  # None: more than two classes
    negative: Any
    labels: pd.Series
    decisions: pd.Series
    used: pd.Series
    probability: pd.Series | None  # the positive class's score (given, or the prediction's own)
    decision_scores: pd.Series | None  # the prediction, when it is a probability

    @property
    def size(self) -> int:
        return int(self.used.sum())


def _classify(
    spec: PerformanceSpec, frame: pd.DataFrame, reference: Reference | None, classes: ClassSet | None = None
) -> _Classified | Evaluation:
    """The window's rows as classes (of ``classes``; by default the check's, the reference's or the values
    seen), or the run's outcome when there is nothing to score."""
    import pandas as pd

    frame = frame[frame[PREDICTION].map(class_key).notna()]
    predictions = len(frame)
    label_keys = frame[LABEL].map(class_key)
    unlabelled = label_keys.isna()
    evidence: dict[str, Any] = {"predictions": predictions, "labelled": 0, "unlabelled": int(unlabelled.sum())}
    if predictions == 0:
        return _insufficient(spec, 0, 0, evidence)

    decision_scores = _scores(frame[PREDICTION])
    probability: pd.Series | None = None
    if PROBABILITY in frame.columns:
        given = pd.to_numeric(frame[PROBABILITY], errors="coerce")
        given = given.where(given.between(0, 1))
        if given.notna().any():
            probability = given
    if probability is None:
        probability = decision_scores

    classes = classes or spec.declared_classes(reference)
    if classes is None:
        seen = list(frame.loc[~unlabelled, LABEL]) + ([] if decision_scores is not None else list(frame[PREDICTION]))
        classes = _inferred(spec, seen, scores=decision_scores is not None)
    evidence["classes"], evidence["classes_from"] = list(classes.values), classes.source

    positive = classes.get(spec.positive_label, _UNKNOWN) if len(classes) == 2 else None
    if positive is _UNKNOWN:
        return Evaluation.failed(
            f"positive_label {show(spec.positive_label)} is not one of the classes {classes} ({FROM[classes.source]}): "
            "set positive_label, or classes",
            0,
        )
    if decision_scores is not None and positive is None:
        return Evaluation.failed(
            f"the prediction is a probability, which needs two classes; there are {len(classes)} ({classes}): "
            "send the decision as the prediction and the score as probability, or set classes",
            0,
        )
    negative = next((c for c in classes.values if c != positive), None) if positive is not None else None
    if positive is not None:
        evidence["positive_label"] = positive

    labels = frame[LABEL].map(lambda v: classes.get(v, _UNKNOWN))
    unknown_label = ~unlabelled & labels.map(lambda v: v is _UNKNOWN)
    if decision_scores is not None:
        decisions = decision_scores.map(lambda p: positive if p >= spec.probability_threshold else negative)
        unknown_decision = pd.Series(False, index=frame.index)
    else:
        decisions = frame[PREDICTION].map(lambda v: classes.get(v, _UNKNOWN))
        unknown_decision = decisions.map(lambda v: v is _UNKNOWN)
    used = _scored_rows(frame, evidence, unlabelled, unknown_label, unknown_decision)
    return _Classified(evidence, predictions, classes, positive, negative, labels, decisions, used, probability, decision_scores)


def _classification(spec: PerformanceSpec, frame: pd.DataFrame, reference: Reference | None) -> Evaluation:
    import numpy as np

    prepared = _classify(spec, frame, reference)
    if isinstance(prepared, Evaluation):
        return prepared
    size, evidence, classes = prepared.size, prepared.evidence, prepared.classes
    positive, negative, labels, used = prepared.positive, prepared.negative, prepared.labels, prepared.used
    probability, decision_scores = prepared.probability, prepared.decision_scores
    if size < spec.min_rows:
        return _insufficient(spec, prepared.predictions, size, evidence)

    truth = [_key(v) for v in labels[used]]
    decided = [_key(v) for v in prepared.decisions[used]]
    undefined: dict[str, str] = {}
    if positive is not None:
        key = class_key(positive)
        if key not in decided:
            undefined["precision"] = f"no prediction of the positive class {show(positive)} among the {size} labelled rows"
        if key not in truth:
            undefined["recall"] = f"no label of the positive class {show(positive)} among the {size} labelled rows"
    else:
        present = sorted(set(truth) | set(decided))
        never_predicted = [k for k in present if k not in set(decided)]
        never_labelled = [k for k in present if k not in set(truth)]
        if never_predicted:
            undefined["precision"] = f"macro average over classes, and class(es) {', '.join(never_predicted)} never predicted"
        if never_labelled:
            undefined["recall"] = f"macro average over classes, and class(es) {', '.join(never_labelled)} never a label"
    if "precision" in undefined or "recall" in undefined:
        undefined["f1"] = f"{' and '.join(m for m in ('precision', 'recall') if m in undefined)} undefined"

    scored = None
    if probability is not None:
        scored = used & probability.notna()
        scored_truth = {_key(v) for v in labels[scored]}
        if positive is None:
            undefined["roc_auc"] = f"a probability is of the positive class, which needs two classes; there are {len(classes)}"
            scored = None
        elif len(scored_truth) < 2:
            only = ", ".join(sorted(scored_truth)) or "none"
            undefined["roc_auc"] = (
                f"labels of one class only ({only}) among the {int(scored.sum())} scored rows: ROC AUC needs both"
            )
            scored = None

    try:
        thresholded = decision_scores is not None and probability is decision_scores  # one score for both
        if scored is not None and probability is not None and thresholded:
            # The decision is the score at the threshold: one report gives every metric.
            result = _scored_report(truth, probability[used], positive, negative, spec.probability_threshold)
        else:
            result = _class_report(truth, decided, positive)
            result["roc_auc"] = None
            if scored is not None and probability is not None:
                scored_truth_keys = [_key(v) for v in labels[scored]]
                result["roc_auc"] = _scored_report(scored_truth_keys, probability[scored], positive, negative, None)["roc_auc"]
    except _EVIDENTLY_ERRORS as exc:
        return Evaluation.failed(f"evidently could not compute classification quality: {exc}", size)

    values = []
    for name in CLASSIFICATION:
        value = result.get(name)
        if name in undefined or value is None:
            continue
        if not np.isfinite(float(value)):
            undefined[name] = f"evidently gave {value}"
            continue
        values.append(MetricValue(name, float(value)))
    if undefined:
        evidence["undefined"] = undefined
    return Evaluation("ok", size, values, evidence=evidence)


def _regressed(spec: PerformanceSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], int] | Evaluation:
    """The scored rows of a regression window (columns ``label`` and ``prediction``, numbers), the
    evidence of what was left out and how many predictions there were; or the run's outcome when there
    were none."""
    import numpy as np
    import pandas as pd

    def numbers_of(column: pd.Series) -> pd.Series:
        ok = column.map(lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool))
        return pd.to_numeric(column.where(ok), errors="coerce").astype(float)

    frame = frame[frame[PREDICTION].map(class_key).notna()]
    predictions = len(frame)
    unlabelled = frame[LABEL].map(class_key).isna()
    evidence: dict[str, Any] = {"predictions": predictions, "labelled": 0, "unlabelled": int(unlabelled.sum())}
    if predictions == 0:
        return _insufficient(spec, 0, 0, evidence)
    labels, predicted = numbers_of(frame[LABEL]), numbers_of(frame[PREDICTION])
    unknown_label = ~unlabelled & ~np.isfinite(labels)
    used = _scored_rows(frame, evidence, unlabelled, unknown_label, ~np.isfinite(predicted))
    data = pd.DataFrame({"label": labels[used].to_numpy(), "prediction": predicted[used].to_numpy()})
    return data, evidence, predictions


def _regression(spec: PerformanceSpec, frame: pd.DataFrame) -> Evaluation:
    from evidently.legacy.metrics import RegressionQualityMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping

    prepared = _regressed(spec, frame)
    if isinstance(prepared, Evaluation):
        return prepared
    data, evidence, predictions = prepared
    size = len(data)
    if size < spec.min_rows:
        return _insufficient(spec, predictions, size, evidence)
    try:
        result = _report(RegressionQualityMetric(), data, ColumnMapping(target="label", prediction="prediction"))
    except _EVIDENTLY_ERRORS as exc:
        return Evaluation.failed(f"evidently could not compute regression quality: {exc}", size)
    values, undefined = [], {}
    for name, key in REGRESSION.items():
        value = result.get(key)
        if value is None or not math.isfinite(float(value)):
            undefined[name] = f"evidently gave {value}"
            continue
        values.append(MetricValue(name, float(value)))
    if undefined:
        evidence["undefined"] = undefined
    return Evaluation("ok", size, values, evidence=evidence)


def evaluate(spec: PerformanceSpec, window: Window, reference: Reference | None, features: list[str]) -> Evaluation:
    frame = window.frame
    if PREDICTION not in frame.columns or LABEL not in frame.columns:
        return _insufficient(spec, 0, 0, {"predictions": 0, "labelled": 0, "unlabelled": 0})
    if spec.task == "classification":
        return _classification(spec, frame, reference)
    return _regression(spec, frame)


# -- evidence report ----------------------------------------------------------------------------------------


def _reference_rows(reference: Reference | None) -> pd.DataFrame | None:
    """The reference's labels and predictions under the window's column names, when it has both."""
    if reference is None or reference.label is None or reference.prediction not in reference.frame.columns:
        return None
    return reference.frame[[reference.label, reference.prediction]].set_axis([LABEL, PREDICTION], axis=1)


def _scored_probability(prepared: _Classified) -> bool:
    """Whether every scored row has the positive class's score, over labels of both classes (evidently's
    curves need both, as ROC AUC does)."""
    probability, used = prepared.probability, prepared.used
    if prepared.positive is None or probability is None or not bool(probability[used].notna().all()):
        return False
    return len({_key(v) for v in prepared.labels[used]}) == 2


def _classes_frame(prepared: _Classified, *, probability: bool) -> pd.DataFrame:
    """The scored rows as the report shows them: label and decision as class keys, and the score."""
    import pandas as pd

    used = prepared.used
    frame = pd.DataFrame(
        {"label": [_key(v) for v in prepared.labels[used]], "prediction": [_key(v) for v in prepared.decisions[used]]}
    )
    if probability and prepared.probability is not None:
        frame["probability"] = prepared.probability[used].to_numpy(dtype=float)
    return frame


def evidence(spec: PerformanceSpec, current: pd.DataFrame, reference: Reference | None, features: list[str]) -> EvidenceData:
    """evidently's classification (regression) quality report of the rows the run scored: labelled, with
    a label and a prediction that fit, as the run matched them to the classes. Beside them, the
    reference's own labelled predictions, when it has a label and a prediction column; the score (ROC AUC,
    the probability plots) is shown when every scored row of both has one."""
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Regression
    from evidently.presets import ClassificationPreset, RegressionPreset

    if PREDICTION not in current.columns or LABEL not in current.columns:
        raise ValueError("the window has no predictions with labels")
    theirs_rows = _reference_rows(reference)
    ours: pd.DataFrame
    theirs: pd.DataFrame | None = None
    if spec.task == "regression":
        regressed = _regressed(spec, current)
        if isinstance(regressed, Evaluation):
            raise ValueError(regressed.error or "no predictions in the window")
        ours = regressed[0]
        if theirs_rows is not None and not isinstance(found := _regressed(spec, theirs_rows), Evaluation):
            theirs = found[0]
        definition = DataDefinition(
            regression=[Regression(target="label", prediction="prediction")], numerical_columns=["label", "prediction"]
        )
        metrics: list[Any] = [RegressionPreset()]
    else:
        classified = _classify(spec, current, reference)
        if isinstance(classified, Evaluation):
            raise ValueError(classified.error or "no predictions in the window")
        against = _classify(spec, theirs_rows, reference, classified.classes) if theirs_rows is not None else None
        against = against if isinstance(against, _Classified) and against.size else None
        probability = _scored_probability(classified) and (against is None or _scored_probability(against))
        ours = _classes_frame(classified, probability=probability)
        theirs = _classes_frame(against, probability=probability) if against is not None else None
        # evidently compares two sides only when the same classes are among their labels and decisions
        # (else the window is shown alone), and its binary report needs both classes there (it finds the
        # negative class among them, and a rate of each): a window of one class is shown as classes.
        present = set(ours["label"]) | set(ours["prediction"])
        if theirs is not None and set(theirs["label"]) | set(theirs["prediction"]) != present:
            theirs = None
        names = {_key(c): _key(c) for c in classified.classes.values}  # each class by its text
        both = len(present) == 2
        task: BinaryClassification | MulticlassClassification
        if classified.positive is not None and both:
            task = BinaryClassification(
                target="label",
                prediction_labels="prediction",
                prediction_probas="probability" if probability else None,
                pos_label=_key(classified.positive),
                labels=names,
            )
        else:
            ours, theirs = (
                side.drop(columns="probability", errors="ignore") if side is not None else None for side in (ours, theirs)
            )
            probability = False
            task = MulticlassClassification(target="label", prediction_labels="prediction", labels=names)
        definition = DataDefinition(
            classification=[task],
            categorical_columns=["label", "prediction"],
            numerical_columns=["probability"] if probability else [],
        )
        metrics = [ClassificationPreset()]
    if ours.empty:
        raise ValueError("no labelled predictions in the window")
    theirs = theirs if theirs is not None and not theirs.empty else None
    return EvidenceData(
        metrics,
        Dataset.from_pandas(ours, data_definition=definition),
        len(ours),
        Dataset.from_pandas(theirs, data_definition=definition) if theirs is not None else None,
    )


KIND = CheckKind(
    kind="performance",
    spec=PerformanceSpec,
    dataset_metrics=frozenset(CLASSIFICATION) | frozenset(REGRESSION),
    feature_metrics=frozenset(),
    evaluate=evaluate,
    uses_reference=True,  # the classes of its label column, when the model has one
    required_roles=(PREDICTION, LABEL),
    shares=frozenset(CLASSIFICATION),
    metrics_for=lambda spec: frozenset(CLASSIFICATION) if spec.task == "classification" else frozenset(REGRESSION),
    check_reference=check_reference,
    warm_up=import_evidently,
    evidence=evidence,
)
