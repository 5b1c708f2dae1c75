"""Check kind ``data_quality``: what the window's values and columns look like against the reference.

Per feature (all the source's features, or ``features``):

- ``missing_share``: the share of the window's rows whose value is missing (null: None, NaN, NaT; an
  empty text is a value), by evidently's ColumnMissingValuesMetric; its ``reference`` is the same
  share over the reference data set, so a rule may say ``missing_share > reference + 0.05``.
- ``out_of_range_share`` (number features): the share of the window's numbers outside the reference's
  min..max (``inf`` and ``-inf`` are outside), by evidently's ColumnValueRangeMetric.
- ``new_category_share`` (text and true/false features): the share of the window's values that the
  reference never has, by evidently's ColumnValueListMetric (which counts a missing value as not in
  the list: here it is left out, a missing value being ``missing_share``'s).

The reference's own out-of-range and new-category shares are 0 by definition (its min..max, its
categories), so those two carry no ``reference``: compare them with a number. A share over no value
(every value missing) is no value, and the evidence says so.

For the data set, each a count with the names in the evidence:

- ``missing_columns``: features the data lacks (a file of the window without the column, the table
  without it); their values are missing, not an error as for other kinds;
- ``new_columns``: columns the data has that the source declares neither as a feature nor as a role,
  the reference does not have, and ``ignore_columns`` does not name (evidently compares the columns
  it is given, so this and the next are ours);
- ``type_changes``: features whose values are of another type than the reference's, read as the
  reference's are (``number``, ``boolean``, ``text``): numbers where it has text, text where it has
  numbers. True and false written as 1 and 0 (as SQLite stores them), or the other way round, are
  the same type.

Features are typed as ``drift`` types them (``Reference.column_type``, ``as_type``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from monitor.checks.base import (
    Calibration,
    CheckKind,
    CheckSpec,
    Evaluation,
    MetricValue,
    Window,
    feature_evidence,
    import_evidently,
)
from monitor.checks.drift import EVIDENTLY_ERRORS
from monitor.config.types import Identifier
from monitor.sources.base import SCHEMA, Schema
from monitor.sources.reference import TYPE_NAMES, ColumnType, as_type, read_type

if TYPE_CHECKING:
    import pandas as pd

    from monitor.checks.base import EvidenceData
    from monitor.sources.reference import Reference

SHOWN_CATEGORIES = 10
"""New categories named in a feature's evidence at most, the most frequent first."""
FEATURE_METRICS = frozenset({"missing_share", "out_of_range_share", "new_category_share"})
DATASET_METRICS = frozenset({"missing_columns", "new_columns", "type_changes"})


class DataQualitySpec(CheckSpec):
    kind: Literal["data_quality"]
    features: list[str] | None = Field(None, min_length=1, description="a subset of the model's features; all when unset")
    ignore_columns: list[Identifier] = Field(
        [], description="columns of the data that are never new_columns (a column the log table has always had)"
    )
    calibration: Calibration | None = Field(None, description="how an `outside reference` rule's range is worked out")

    @field_validator("calibration")
    @classmethod
    def _only_with_a_range(cls, calibration: Calibration | None, info: ValidationInfo) -> Calibration | None:
        rules = info.data.get("alert") or []
        if calibration is not None and not any(c.anchor == "range" for rule in rules for c in rule.conditions):
            raise ValueError(
                "applies to rules on the reference range ('METRIC outside reference') only: write one, or remove calibration"
            )
        return calibration


def _numbers(column: pd.Series) -> pd.Series:
    """A number feature's values as floats: missing and wrong-typed values NaN, inf and -inf kept (they
    are outside any range)."""
    import numpy as np

    typed = as_type(column, "number")
    values = typed.values.copy()
    if typed.not_finite:
        raw = column.reset_index(drop=True)
        for i in np.flatnonzero(values.isna().to_numpy() & raw.notna().to_numpy()):
            value = raw.iloc[i]
            if not isinstance(value, (bool, np.bool_, str)) and isinstance(value, (int, float, np.number)):
                values.iloc[i] = float(value)
    return values


def _type_change(kind: ColumnType, column: pd.Series) -> ColumnType | None:
    """The type the window's values have when it is not the reference's ``kind``, else None."""
    present = column[column.notna()]
    if present.empty:
        return None  # no value has a type (a column the data lacks is a missing column)
    live = read_type(present.reset_index(drop=True))
    if live == kind:
        return None
    if {live, kind} == {"number", "boolean"} and as_type(present, kind).wrong_type == 0:
        return None  # true/false as 1/0, or 1/0 as true/false
    return live


def _report(
    frames: tuple[dict, dict], numbers: list[str], categories: list[str], columns: list[str]
) -> dict[tuple[str, str], dict]:
    """evidently's missing-value, range and value-list metrics over these columns: each result by
    ``(metric, column)``. ``frames`` holds the reference's and the window's columns: the raw ones under
    the feature's name, the typed ones under ``@number:NAME`` and ``@category:NAME``."""
    import pandas as pd
    from evidently.legacy.metrics import ColumnMissingValuesMetric, ColumnValueListMetric, ColumnValueRangeMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    metrics: list[Any] = [ColumnMissingValuesMetric(c, missing_values=[None], replace=True) for c in columns]
    metrics += [ColumnValueRangeMetric(f"@number:{c}") for c in numbers]
    metrics += [ColumnValueListMetric(f"@category:{c}") for c in categories]
    mapping = ColumnMapping(
        numerical_features=[f"@number:{c}" for c in numbers],
        categorical_features=[f"@category:{c}" for c in categories],
        target=None,
        prediction=None,
        datetime=None,
        id=None,
    )
    reference, current = (pd.DataFrame(frame) for frame in frames)
    report = Report(metrics=metrics)
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    results = report.as_dict()["metrics"]
    names = ["missing"] * len(columns) + ["range"] * len(numbers) + ["list"] * len(categories)
    keys = [*columns, *numbers, *categories]
    return {(name, key): result["result"] for name, key, result in zip(names, keys, results, strict=True)}


def evaluate(spec: DataQualitySpec, window: Window, reference: Reference | None, features: list[str]) -> Evaluation:
    assert reference is not None  # needs_reference: the loader refuses a model without one
    frame = window.frame
    rows = len(frame)
    if rows < spec.min_rows:
        return Evaluation.insufficient(rows, spec.min_rows)
    columns = spec.features or features
    schema: Schema | None = frame.attrs.get(SCHEMA)

    kinds = {name: reference.column_type(name) for name in columns}
    # The columns as read (both object, so that evidently does not warn of their types) for missing values;
    # the reference's are made once, not on every run.
    ref_frame: dict[str, Any] = {name: reference.objects(name) for name in columns}
    live_frame: dict[str, Any] = {name: frame[name].reset_index(drop=True).astype(object) for name in columns}
    numbers, categories, per_feature = [], [], {}
    for name in columns:
        kind, raw = kinds[name], frame[name]
        missing = int(raw.isna().sum())
        entry: dict[str, Any] = {"feature": name, "type": TYPE_NAMES[kind], "rows": rows, "missing": missing}
        if kind == "number":
            live_numbers, ref_numbers = _numbers(raw), reference.typed(name).values
            entry["numbers"] = int(live_numbers.notna().sum())
            if entry["numbers"] and ref_numbers.notna().any():
                numbers.append(name)
                live_frame[f"@number:{name}"], ref_frame[f"@number:{name}"] = live_numbers, ref_numbers
        else:
            live_typed = as_type(raw, kind)
            entry["values"] = live_typed.usable
            if live_typed.usable and reference.typed(name).usable:
                categories.append(name)
                live_frame[f"@category:{name}"], ref_frame[f"@category:{name}"] = live_typed.values, reference.typed(name).values
        per_feature[name] = entry
    try:
        results = _report((ref_frame, live_frame), numbers, categories, columns)
    except EVIDENTLY_ERRORS as exc:
        return Evaluation.failed(f"evidently could not compute data quality: {type(exc).__name__}: {exc}", rows)

    values: list[MetricValue] = []
    undefined: list[dict[str, str]] = []
    for name in columns:
        entry = per_feature[name]
        missed = results[("missing", name)]
        share, ref_share = (
            float(missed["current"]["share_of_missing_values"]),
            float(missed["reference"]["share_of_missing_values"]),
        )
        entry.update(missing_share=share, reference_missing_share=ref_share)
        values.append(MetricValue("missing_share", share, name, reference=ref_share))
        if kinds[name] == "number":
            if name in numbers:
                found = results[("range", name)]
                outside = int(found["current"]["number_not_in_range"])
                entry.update(range=[found["left"], found["right"]], out_of_range=outside)
                entry["out_of_range_share"] = float(found["current"]["share_not_in_range"])  # over its numbers
                values.append(MetricValue("out_of_range_share", entry["out_of_range_share"], name))
            else:
                why = "no number in the window" if not entry["numbers"] else "the reference has no number for it"
                undefined.append({"metric": "out_of_range_share", "feature": name, "reason": why})
        elif name in categories:
            found = results[("list", name)]
            # evidently counts a missing value as not in the list: here it is missing_share's, not a category
            new = dict(zip(*found["current"]["values_not_in_list_dist"].values(), strict=True))
            new.pop(None, None)
            count = sum(int(n) for n in new.values())
            entry.update(new_categories=count, new_category_share=count / entry["values"])
            shown = sorted(new.items(), key=lambda item: (-int(item[1]), str(item[0])))[:SHOWN_CATEGORIES]
            entry["new_values"] = {str(value): int(n) for value, n in shown}
            values.append(MetricValue("new_category_share", entry["new_category_share"], name))
        else:
            why = "no value in the window" if not entry["values"] else "the reference has no value for it"
            undefined.append({"metric": "new_category_share", "feature": name, "reason": why})

    evidence: dict[str, Any] = {"quality": list(per_feature.values())}
    if undefined:
        evidence["undefined"] = undefined
    changes = []
    for name in columns:
        if schema is not None and name in schema.absent:
            continue
        live_type = _type_change(kinds[name], frame[name])
        if live_type is not None:
            changes.append({"feature": name, "reference_type": TYPE_NAMES[kinds[name]], "type": TYPE_NAMES[live_type]})
    evidence["type_changes"] = changes
    values.append(MetricValue("type_changes", float(len(changes))))
    if schema is not None:  # what the source found of its columns (see Source.read(schema=True))
        absent = [name for name in columns if name in schema.absent]
        known = {str(c) for c in reference.frame.columns} | set(spec.ignore_columns)
        new_columns = sorted(c for c in schema.undeclared if c not in known)
        evidence.update(missing_columns=absent, new_columns=new_columns)
        values += [MetricValue("missing_columns", float(len(absent))), MetricValue("new_columns", float(len(new_columns)))]
    return Evaluation("ok", rows, values, evidence=evidence)


def evidence(spec: DataQualitySpec, current: pd.DataFrame, reference: Reference | None, features: list[str]) -> EvidenceData:
    """evidently's summary of each of the check's features, of the window beside the reference."""
    from evidently.presets import DataSummaryPreset

    columns = list(spec.features or features)
    return feature_evidence([DataSummaryPreset(columns=columns)], current, reference, columns)


KIND = CheckKind(
    kind="data_quality",
    spec=DataQualitySpec,
    dataset_metrics=DATASET_METRICS,
    feature_metrics=FEATURE_METRICS,
    evaluate=evaluate,
    needs_reference=True,
    range_metrics=FEATURE_METRICS,
    shares=FEATURE_METRICS,
    reads_schema=True,
    reference_metrics=frozenset({"missing_share"}),
    warm_up=import_evidently,
    evidence=evidence,
)
