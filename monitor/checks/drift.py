"""Check kind ``drift``: per-feature distribution drift of the window against the reference, by evidently.

Evidently chooses the statistical test per column (or uses ``method``) and says per column whether it
drifted; the data set drifts by the share of drifted columns. Metrics: ``drift_share``,
``drifted_count`` and ``skipped_features`` for the data set; ``drift_score`` and ``drifted`` (1 or 0)
per feature.

Both sides are typed by the reference (``Reference.column_type``, ``as_type``) before evidently sees
them. A value that is not of the feature's type, or not finite, is left out (counted per feature in
the evidence); a feature left with fewer than ``min_rows`` values, or that evidently cannot compute,
is skipped with its reason, and the others are still evaluated.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import UTC
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from monitor.checks.base import Calibration, CheckKind, CheckSpec, Evaluation, MetricValue, SpecProblem, Window, feature_evidence
from monitor.checks.effect import effect, reference_side
from monitor.sources.reference import TYPE_NAMES, Reference, Typed, as_type

if TYPE_CHECKING:
    import pandas as pd

    from monitor.checks.base import EvidenceData
    from monitor.checks.fast_drift import PreparedColumn

# Evidently's stat-test names for numerical and categorical columns (its legacy registry, less the
# tests for free text, a column type we do not map to); tests/test_drift_methods.py keeps this list
# equal to evidently's. Which of them fits which column type: fitting().
Method = Literal[
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
]
METHODS: tuple[str, ...] = get_args(Method)


class DriftTestSpec(CheckSpec):
    """The keys of a check that judges drift with evidently's tests: drift, prediction_drift."""

    method: Method | None = Field(None, description="evidently's stat test; evidently chooses per column when unset")
    threshold: PositiveFloat | Literal["auto"] | None = Field(
        None,
        description="the method's drift threshold (evidently's default when unset), or auto: each column's own, "
        "calibrated on the reference's windows of the live window's size",
    )
    calibration: Calibration | None = Field(None, description="with threshold: auto, how it calibrates")
    max_rows: int = Field(
        100_000, ge=1000, description="a window of more rows is judged on a uniform sample of this many (its seed in the run)"
    )

    @field_validator("threshold")
    @classmethod
    def _calibrates_its_method(cls, threshold: float | str | None, info: ValidationInfo) -> float | str | None:
        method = info.data.get("method")
        if threshold == "auto" and method is not None:
            from monitor.checks.fast_drift import TESTS

            if method not in TESTS:
                raise ValueError(
                    f"auto calibrates {', '.join(TESTS)} or evidently's own choice, and method {method} would take a "
                    "Report per reference window: choose one of those as method, or a number as threshold"
                )
        return threshold

    @property
    def fixed_threshold(self) -> float | None:
        """The threshold evidently's test is given: the one written, or its default (unset or ``auto``)."""
        return None if isinstance(self.threshold, str) else self.threshold

    @field_validator("calibration")
    @classmethod
    def _only_when_auto(cls, calibration: Calibration | None, info: ValidationInfo) -> Calibration | None:
        on_range = any(c.anchor == "range" for rule in info.data.get("alert") or [] for c in rule.conditions)
        if calibration is not None and info.data.get("threshold") != "auto" and not on_range:
            raise ValueError(
                "applies to threshold: auto and to rules on the reference range only; write threshold: auto, or remove calibration"
            )
        return calibration


class DriftSpec(DriftTestSpec):
    kind: Literal["drift"]
    features: list[str] | None = Field(None, min_length=1, description="a subset of the model's features; all when unset")


def capped(spec: DriftTestSpec, window: Window) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The window's rows, or a uniform sample of ``max_rows`` of them when it has more, and what the run's
    evidence says of it: a test's cost grows with the rows, and a p-value test's verdict too (on a
    million rows it finds any difference at all). The seed is the window's start, so a run is repeatable."""
    frame = window.frame
    if len(frame) <= spec.max_rows:
        return frame, {}
    seed = seed_of(window)
    sample = frame.sample(n=spec.max_rows, random_state=seed).reset_index(drop=True)
    return sample, {"sampled": {"rows": spec.max_rows, "of": len(frame), "seed": seed}}


def seed_of(window: Window) -> int:
    """The seed of a window's samples: its start, so that a run is repeatable."""
    start = window.start if window.start.tzinfo is not None else window.start.replace(tzinfo=UTC)
    return int(start.timestamp()) % 2**32  # numpy's seeds are unsigned 32-bit: any start, before 1970 too


# A p-value test finds any difference at all on enough rows: clean windows of a real census data set
# drifted on 10% of its features at 1,000 rows and on 50-70% at 20,000 and more. Under a fixed threshold
# it is given at most this many of the window's values, a uniform sample (docs/drift.md, "Large windows").
P_VALUE_VALUES = 5000


def thinned(spec: DriftTestSpec, values: pd.Series, reference_values: int, seed: int) -> tuple[pd.Series, dict[str, Any]]:
    """A feature's window values as its test is given them: under a fixed threshold, a p-value test's
    at most ``P_VALUE_VALUES`` of them, seeded, and what the evidence says of it (``thinned``)."""
    if spec.threshold == "auto" or not p_value_test(spec, reference_values):
        return values, {}
    usable = values.dropna()
    if len(usable) <= P_VALUE_VALUES:
        return values, {}
    sample = usable.sample(n=P_VALUE_VALUES, random_state=seed).reset_index(drop=True)
    return sample, {"thinned": {"values": P_VALUE_VALUES, "of": len(usable), "seed": seed}}


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


# How a type's values are named in a reason: "400 not a number (...), where the reference has numbers".
_ONE_OF = {"number": "a number", "boolean": "true/false", "string": "text"}
_ALL_OF = {"number": "numbers", "boolean": "true/false", "string": "text"}


# Which methods evidently's stat-test registry allows for a numerical and for a categorical column.
# Written out rather than asked of the registry, so that `monitor validate` need not import evidently
# (seconds); tests/test_drift_methods.py holds this table equal to the registry of the installed one.
_NUMERICAL = ("anderson", "cramer_von_mises", "ed", "es", "hellinger", "jensenshannon", "kl_div", "ks", "mannw",
              "empirical_mmd", "psi", "t_test", "wasserstein")  # fmt: skip
_CATEGORICAL = ("chisquare", "fisher_exact", "g_test", "hellinger", "jensenshannon", "kl_div", "psi", "TVD", "z")


def fitting(column_type: str) -> list[str]:
    """The methods evidently allows for a column of this type (``Reference.column_type``)."""
    allowed = _NUMERICAL if column_type == "number" else _CATEGORICAL
    return [m for m in METHODS if m in allowed]


def check_reference(spec: DriftSpec, reference: Reference, features: list[str]) -> list[SpecProblem]:
    """A ``method`` that evidently would refuse for one of the check's features, found at load time."""
    if spec.method is None:
        return []
    columns = [f for f in spec.features or features if f in reference.frame.columns]  # others: the loader says
    types = {f: reference.column_type(f) for f in columns}
    fits = {t: fitting(t) for t in set(types.values())}
    every = [m for m in METHODS if all(m in fits[t] for t in fits)]
    return [
        (
            ("method",),
            f"method {spec.method!r} does not fit {feature!r} ({TYPE_NAMES[kind]}): use one of {', '.join(every)} "
            "or leave method unset (evidently then chooses per feature)",
        )
        for feature, kind in types.items()
        if spec.method not in fits[kind]
    ]


# The values a feature's window needs before a fixed threshold's verdict means anything, by the kind of
# test (docs/drift.md, "Sample sizes"). Measured on clean windows against evidently's 0.1: at 500 rows
# a distance drifted on 4-88% of columns (normal, lognormal, 8 to 50 categories), at 1,000 on 0-2%,
# so evidently's own switch to distances (above 1,000 reference rows) is the minimum. A p-value test's
# false alarms are its threshold's (5%) at any size; under 100 values chi-square's approximation fails
# for a category of 5%. With threshold: auto the limit is calibrated at the window's size: min_rows only.
DISTANCE_MINIMUM = 1000
P_VALUE_MINIMUM = 100


def needed(spec: DriftTestSpec, reference_values: int) -> tuple[int, str]:
    """How many values a feature's window needs for its test, and why: ``min_rows`` when the check sets
    it (its author accepts the noise) or calibrates (``threshold: auto``), else the test's minimum;
    ``reference_values`` (the reference's usable values of it) decides evidently's choice of test."""
    if spec.threshold == "auto" or "min_rows" in spec.model_fields_set:
        return spec.min_rows, "min_rows"
    if p_value_test(spec, reference_values):
        return max(spec.min_rows, P_VALUE_MINIMUM), "a p-value test"
    return max(spec.min_rows, DISTANCE_MINIMUM), "a fixed distance threshold"


def p_value_test(spec: DriftTestSpec, reference_values: int) -> bool:
    """Whether a feature's test is a p-value one: its ``method``'s kind, else evidently's choice, which
    takes p-value tests for a reference of at most 1,000 values of it (``reference_values``)."""
    from monitor.checks.fast_drift import DISTANCES, SMALL_REFERENCE

    return spec.method not in DISTANCES if spec.method else reference_values <= SMALL_REFERENCE


def small_reference(spec: DriftTestSpec, reference: Reference, columns: list[str]) -> list[SpecProblem]:
    """A warning for a check left to evidently's choice of test over a reference of at most 1,000 values
    of a column: its p-value tests treat the reference's shares as exact, and drift on most clean
    windows larger than it (docs/drift.md); ``threshold: auto`` calibrates for it."""
    if spec.threshold == "auto" or spec.method is not None:
        return []
    from monitor.checks.fast_drift import SMALL_REFERENCE

    counts = {c: int(reference.frame[c].notna().sum()) for c in columns if c in reference.frame.columns}
    small = [c for c, n in counts.items() if 0 < n <= SMALL_REFERENCE]  # none at all: each run says so
    if not small:
        return []
    named = ", ".join(f"{c!r} ({counts[c]:,})" for c in small[:3]) + (f" and {len(small) - 3} more" if len(small) > 3 else "")
    where = ("threshold",) if spec.threshold is not None else ("kind",)
    return [
        (
            where,
            f"the reference has at most 1,000 values of {named}, so evidently takes p-value tests (K-S, chi-square) "
            "that treat it as exact: windows larger than it drift on most clean runs (docs/drift.md). Write "
            "threshold: auto (calibrated, for windows larger than the reference too), or give a reference of more "
            "than 1,000 rows",
        )
    ]


def _small_reference(spec: DriftSpec, reference: Reference, features: list[str]) -> list[SpecProblem]:
    return small_reference(spec, reference, spec.features or features)


def unusable(kind: str, reference: Typed, live: Typed, min_rows: int) -> str | None:
    """Why a feature cannot be compared in this window, or None when it can."""
    if reference.usable == 0:
        return f"the reference has no usable value for it ({_what_is_left_out(kind, reference)})"
    if live.usable >= min_rows:
        return None
    usable = f"{live.usable} usable value(s) in {len(live.values)} row(s), {min_rows} needed (min_rows)"
    return f"{usable}: {_what_is_left_out(kind, live)}"


def _what_is_left_out(kind: str, typed: Typed) -> str:
    parts = []
    if typed.missing:
        parts.append(f"{typed.missing} missing")
    if typed.not_finite:
        parts.append(f"{typed.not_finite} not finite")
    if typed.wrong_type:
        parts.append(
            f"{typed.wrong_type} not {_ONE_OF[kind]} (e.g. {', '.join(typed.examples)}), where the reference has {_ALL_OF[kind]}"
        )
    return ", ".join(parts) or "no rows"


def drift_table(method: str | None, threshold: float | None, reference: dict, current: dict, kinds: dict[str, str]) -> dict:
    """evidently's DataDriftTable over these typed columns (``kinds``: each one's type), with ``method``
    and ``threshold`` (evidently's defaults when None): its result per column."""
    import pandas as pd
    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    columns = list(kinds)
    mapping = ColumnMapping(
        numerical_features=[c for c in columns if kinds[c] == "number"],
        categorical_features=[c for c in columns if kinds[c] != "number"],
        target=None,
        prediction=None,
        datetime=None,
        id=None,
    )
    report = Report(metrics=[DataDriftTable(columns=columns, stattest=method, stattest_threshold=threshold)])
    report.run(
        reference_data=pd.DataFrame({c: reference[c] for c in columns}),
        current_data=pd.DataFrame({c: current[c] for c in columns}),
        column_mapping=mapping,
    )
    return report.as_dict()["metrics"][0]["result"]["drift_by_columns"]


def drift_by_column(
    method: str | None,
    threshold: float | None,
    reference: dict,
    current: dict,
    kinds: dict[str, str],
    prepared: Callable[[str], PreparedColumn] | None = None,
) -> dict:
    """Evidently's drift result per column (as :func:`drift_table` gives it): from the fast path for
    evidently's own choice of test and the tests it chooses from (monitor/checks/fast_drift.py, the
    reference side from ``prepared`` when given, made once per reference), from a Report otherwise."""
    from monitor.checks.fast_drift import PreparedColumn, column_drift, computes  # numpy's import: not validate's

    if not computes(method):
        return drift_table(method, threshold, reference, current, kinds)
    return {
        name: column_drift(
            prepared(name) if prepared else PreparedColumn.of(reference[name], kind), current[name], method, threshold
        )
        for name, kind in kinds.items()
    }


EVIDENTLY_ERRORS = (ValueError, TypeError, KeyError, ZeroDivisionError)


def warm_up() -> None:
    """The drift kinds' imports, made before the first run (``CheckKind.warm_up``): the fast path's."""
    from monitor.checks import fast_drift

    fast_drift.warm_up()


def evaluate(spec: DriftSpec, window: Window, reference, features: list[str]) -> Evaluation:
    columns = spec.features or features
    sample_size = len(window.frame)
    frame, sampled = capped(spec, window)
    if sample_size < spec.min_rows:
        return Evaluation.insufficient(sample_size, spec.min_rows)

    kinds: dict[str, str] = {}
    current: dict[str, pd.Series] = {}
    counts: dict[str, dict[str, int]] = {}
    sizes: dict[str, dict[str, int]] = {}  # the values each test compared, on each side
    skipped: list[dict[str, Any]] = []
    insufficient: list[dict[str, Any]] = []  # too few values for the feature's test: not drifted, not broken
    thin: dict[str, dict[str, Any]] = {}  # a p-value test's sample of a large window
    seed = seed_of(window)
    for name in columns:
        kind = reference.column_type(name)
        live = as_type(frame[name], kind)
        counts[name] = {"missing": live.missing, "not_finite": live.not_finite, "wrong_type": live.wrong_type}
        reason = unusable(kind, reference.typed(name), live, spec.min_rows)
        minimum, why = needed(spec, reference.typed(name).usable)
        if reason is None and live.usable < minimum:
            insufficient.append({"feature": name, "type": TYPE_NAMES[kind], "values": live.usable, "needed": minimum, "for": why})
        elif reason is None:
            kinds[name], (current[name], thin[name]) = kind, thinned(spec, live.values, reference.typed(name).usable, seed)
            compared = thin[name]["thinned"]["values"] if thin[name] else live.usable
            sizes[name] = {"window": compared, "reference": reference.typed(name).usable}
        else:
            skipped.append({"feature": name, "type": TYPE_NAMES[kind], "reason": reason, **counts[name]})
    typed_reference = {name: reference.typed(name).values for name in kinds}

    def prepared(name: str) -> PreparedColumn:
        from monitor.checks.fast_drift import PreparedColumn

        return reference.worked_out(("drift", name), lambda: PreparedColumn.of(typed_reference[name], kinds[name]))

    results: dict[str, dict] = {}
    threshold = spec.fixed_threshold
    if kinds and spec.threshold == "auto":
        results = _calibrated(spec, reference, typed_reference, current, kinds, prepared, skipped, counts)
    elif kinds:
        try:
            results = drift_by_column(spec.method, threshold, typed_reference, current, kinds, prepared)
        except EVIDENTLY_ERRORS:
            # One column evidently cannot compute must not leave the others unchecked: each on its own.
            for name in kinds:
                try:
                    one = {name: kinds[name]}
                    results.update(drift_by_column(spec.method, threshold, typed_reference, current, one, prepared))
                except EVIDENTLY_ERRORS as exc:
                    reason = f"evidently could not compute drift: {exc}"
                    skipped.append({"feature": name, "type": TYPE_NAMES[kinds[name]], "reason": reason, **counts[name]})

    values, per_feature = [], []
    for name, column in results.items():
        score, threshold, drifted = (
            float(column["drift_score"]),
            float(column["stattest_threshold"]),
            bool(column["drift_detected"]),
        )
        if not math.isfinite(score):
            reason = f"evidently's {column['stattest_name']} is {score}"
            skipped.append({"feature": name, "type": TYPE_NAMES[kinds[name]], "reason": reason, **counts[name]})
            continue
        values += [MetricValue("drift_score", score, name), MetricValue("drifted", float(drifted), name)]
        per_feature.append(
            {
                "feature": name,
                "type": TYPE_NAMES[kinds[name]],
                "score": score,
                "method": column["stattest_name"],
                "threshold": threshold,
                "drifted": drifted,
                "strength": strength(score, threshold, drifted),
                **({"calibrated": column["calibrated"]} if "calibrated" in column else {}),
                "sample_sizes": sizes[name],
                **thin[name],
                **counts[name],
            }
        )
    skipped.sort(key=lambda f: columns.index(f["feature"]))
    short = {"insufficient": insufficient} if insufficient else {}
    if not per_feature and insufficient:
        return Evaluation(
            "insufficient_data", sample_size, evidence={"skipped": skipped, **short, **sampled}, error=too_few(insufficient)
        )
    if not per_feature:
        reasons = "; ".join(f"{f['feature']}: {f['reason']}" for f in skipped)
        return Evaluation("error", sample_size, evidence={"skipped": skipped}, error=f"no feature could be checked: {reasons}")
    for feature in per_feature:  # how big the change is, for the drifted ones a message names
        if feature["drifted"]:
            name = feature["feature"]
            side = reference.worked_out(("effect", name), lambda name=name: reference_side(prepared(name)))
            found = effect(side, current[name], kinds[name])
            if found is not None:
                feature["effect"] = found
    per_feature.sort(key=lambda f: (not f["drifted"], -f["strength"]))
    drifted_count = sum(f["drifted"] for f in per_feature)
    values = [
        MetricValue("drift_share", drifted_count / len(per_feature)),
        MetricValue("drifted_count", float(drifted_count)),
        MetricValue("skipped_features", float(len(skipped))),
        MetricValue("insufficient_features", float(len(insufficient))),
        *values,
    ]
    evidence = {"features": per_feature, "skipped": skipped, **short, **sampled}
    return Evaluation("ok", sample_size, values, evidence=evidence)


def too_few(insufficient: list[dict[str, Any]]) -> str:
    """What an insufficient_data run says: each feature's values against what its test needs."""
    shown = "; ".join(f"{f['feature']} {f['values']:,} of {f['needed']:,} ({f['for']})" for f in insufficient)
    return (
        f"too few values for the test: {shown}. Widen the window, set threshold: auto "
        "(calibrated at the window's size), or set min_rows to accept the noise (docs/drift.md)"
    )


def _calibrated(
    spec: DriftSpec,
    reference: Reference,
    typed_reference: dict[str, pd.Series],
    current: dict[str, pd.Series],
    kinds: dict[str, str],
    prepared: Callable[[str], PreparedColumn],
    skipped: list[dict[str, Any]],
    counts: dict[str, dict[str, int]],
) -> dict[str, dict]:
    """Each feature's drift against its own calibrated limit (``threshold: auto``); a feature whose drift
    cannot be computed is skipped with its reason."""
    out: dict[str, dict] = {}
    for name in kinds:
        try:
            out[name] = calibrated_drift(
                spec, reference, ("drift limit", name), prepared(name), typed_reference[name], current[name]
            )
        except ValueError as exc:
            reason = f"drift could not be computed: {exc}"
            skipped.append({"feature": name, "type": TYPE_NAMES[kinds[name]], "reason": reason, **counts[name]})
    return out


def calibrated_drift(
    spec: DriftTestSpec, reference: Reference, key: tuple, prepared: PreparedColumn, values: pd.Series, live: pd.Series
) -> dict[str, Any]:
    """One column's drift against its limit calibrated on the reference's windows of this window's size
    (monitor/checks/calibration.py), worked out once per reference under ``key`` and the window's size
    bucket: evidently's result shape, with the calibration beside it. ValueError when it cannot be
    computed (an empty side)."""
    from monitor.checks.calibration import calibrate, size_bucket
    from monitor.checks.fast_drift import TESTS, column_drift

    calibration = spec.calibration or Calibration()
    rows = size_bucket(int(live.notna().sum()))
    limit = reference.worked_out((*key, spec.method, rows, spec.window, reference.timestamp, calibration.k, calibration.windows,
                                  calibration.seed),
        partial(calibrate, prepared, values, rows, test=spec.method, k=calibration.k, windows=calibration.windows,
                timeline=reference.timeline(), window=spec.window, seed=calibration.seed),
    )  # fmt: skip
    score = float(column_drift(prepared, live, limit.test, None)["drift_score"])
    return {
        "drift_score": score,
        "stattest_threshold": limit.limit,
        "drift_detected": limit.drifted(score),
        "stattest_name": TESTS[limit.test][0],
        "calibrated": limit.evidence(calibration.k),
    }


def evidence(spec: DriftSpec, current: pd.DataFrame, reference: Reference | None, features: list[str]) -> EvidenceData:
    """evidently's data drift report of the check's features, the window against the reference."""
    from evidently.presets import DataDriftPreset

    columns = list(spec.features or features)
    return feature_evidence([DataDriftPreset(columns=columns)], current, reference, columns)


KIND = CheckKind(
    kind="drift",
    spec=DriftSpec,
    dataset_metrics=frozenset({"drift_share", "drifted_count", "skipped_features", "insufficient_features"}),
    feature_metrics=frozenset({"drift_score", "drifted"}),
    evaluate=evaluate,
    needs_reference=True,
    range_metrics=frozenset({"drift_share", "drifted_count", "drift_score"}),
    shares=frozenset({"drift_share"}),
    check_reference=check_reference,
    reference_warnings=_small_reference,
    warm_up=warm_up,  # evidently only for a method the fast path does not compute, when first used
    evidence=evidence,
)
