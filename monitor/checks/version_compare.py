"""Check kind ``version_compare``: a candidate model version against the baseline version, over one window.

The canary and blue-green case: two versions serve side by side, and the check compares the rows of
``candidate`` with those of ``baseline`` in the same window (the source's ``model_version`` column
says which row is whose). ``candidate: latest`` (the default) is the version other than the baseline
whose first row in the window is the newest: the one deployed last. Each version needs ``min_rows``
rows in the window, else the run is ``insufficient_data`` and says whose are missing.

Metrics, for the data set:

- ``prediction_drift_score`` and ``prediction_drifted`` (1 or 0): the candidate's predictions against the
  baseline's, by evidently's drift test for their type, exactly as ``prediction_drift`` compares the
  predictions with the reference's (its evaluation is reused, with the baseline's rows as the reference):
  classes for text, true/false or few whole numbers, numbers otherwise; ``method``, ``threshold`` and
  ``task`` as there.
- ``latency_ratio``: the candidate's p95 latency over the baseline's, where the source has a latency
  column (computed by ``latency``'s evaluation of each version's rows).
- ``accuracy_delta`` (``task: classification``) or ``mae_delta`` (``task: regression``): the candidate's
  quality minus the baseline's over the rows whose label is in (``performance``'s evaluation of each),
  where the source has a label column. Negative ``accuracy_delta`` and positive ``mae_delta`` are worse.

A metric that cannot be computed in a window (no latency, labels not in yet, a baseline p95 of 0) is
not a value, and ``evidence.not_computed`` says why. Its episodes are the candidate's (the alerts'
``model_version``): when another version becomes the candidate, the old one's episodes end.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from monitor.checks import latency, performance, prediction_drift
from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, Window, import_evidently
from monitor.checks.drift import Method
from monitor.sources.base import LABEL, LATENCY, PREDICTION, TS, VERSION, VERSION_CHARS, version_names
from monitor.sources.reference import Reference

if TYPE_CHECKING:
    import pandas as pd

LATEST = "latest"
PREDICTION_COLUMN = "prediction"  # how the predictions are named in the evidence and the message
QUALITY = {"classification": ("accuracy", "accuracy_delta"), "regression": ("mae", "mae_delta")}
BASE_METRICS = frozenset({"prediction_drift_score", "prediction_drifted", "latency_ratio"})


def _version_text(value: object) -> object:
    """A version as YAML may give it: text, or a whole number (``baseline: 3``). A decimal number is
    refused, since YAML has already changed it (``1.10`` is the number 1.1)."""
    if isinstance(value, bool):
        raise ValueError("expected a model version, got true/false: quote it")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError(f"{value:g} is a number to YAML, which may not be the version written (1.10 is 1.1): quote it")
    return value


Version = Annotated[str, BeforeValidator(_version_text), Field(min_length=1, max_length=VERSION_CHARS)]


class VersionCompareSpec(CheckSpec):
    kind: Literal["version_compare"]
    baseline: Version = Field(description="the model version the candidate is compared with (the one serving most traffic)")
    candidate: Version = Field(
        LATEST, description="the version compared; latest: the other version whose first row in the window is newest"
    )
    method: Method | None = Field(
        None, description="evidently's stat test for the predictions; its default for their type when unset"
    )
    threshold: float | None = Field(None, gt=0, description="the method's drift threshold; evidently's default when unset")
    task: Literal["classification", "regression"] | None = Field(
        None, description="classes or numbers, read from the baseline's predictions when unset; set, it adds a quality delta"
    )

    @field_validator("baseline")
    @classmethod
    def _a_version(cls, baseline: str) -> str:
        if baseline == LATEST:
            raise ValueError("the baseline is the version the candidate is compared with: name it (latest is for candidate)")
        return baseline

    @field_validator("candidate")
    @classmethod
    def _another_version(cls, candidate: str, info: ValidationInfo) -> str:
        if candidate == info.data.get("baseline"):
            raise ValueError(
                f"candidate and baseline are the same version {candidate!r}: a version_compare check compares two "
                "(write the new version as candidate, or candidate: latest)"
            )
        return candidate


def metrics_for(spec: VersionCompareSpec) -> frozenset[str]:
    return BASE_METRICS | ({QUALITY[spec.task][1]} if spec.task else frozenset())


def _latest(frame: pd.DataFrame, names: pd.Series, baseline: str) -> str | None:
    """The version other than ``baseline`` whose first row in the window is the newest (ties: the last by name)."""
    others = names.notna() & (names != baseline)
    if not others.any():
        return None
    first = frame.loc[others, TS].groupby(names[others]).min()
    return str(max(first.index, key=lambda version: (first[version], version)))


def _inner(spec: VersionCompareSpec, kind: str, **keys: Any) -> dict[str, Any]:
    """The keys of another kind's spec for the same schedule, window and min_rows (when written: unset,
    a drift test keeps its own minimum, docs/drift.md): its evaluation is reused."""
    written = {"min_rows": spec.min_rows} if "min_rows" in spec.model_fields_set else {}
    return {"name": spec.name, "kind": kind, "every": spec.every, "window": spec.window, **written, **keys}


def evaluate(spec: VersionCompareSpec, window: Window, reference: Reference | None, features: list[str]) -> Evaluation:
    import pandas as pd

    frame = window.frame
    names = version_names(frame[VERSION]) if VERSION in frame.columns else pd.Series([None] * len(frame), dtype=object)
    seen = {str(k): int(v) for k, v in names.value_counts().items()}
    candidate = spec.candidate if spec.candidate != LATEST else _latest(frame, names, spec.baseline)
    evidence: dict[str, Any] = {"versions": seen}
    if candidate is None:
        others = f"versions seen: {', '.join(sorted(seen))}" if seen else "no rows with a model_version"
        error = f"no version other than the baseline {spec.baseline} in the window to compare ({others})"
        return Evaluation("insufficient_data", len(frame), evidence=evidence, error=error)
    baseline_rows = frame[(names == spec.baseline).to_numpy(dtype=bool)].reset_index(drop=True)
    candidate_rows = frame[(names == candidate).to_numpy(dtype=bool)].reset_index(drop=True)
    evidence["compared"] = {
        "baseline": spec.baseline,
        "candidate": candidate,
        "baseline_rows": len(baseline_rows),
        "candidate_rows": len(candidate_rows),
    }
    size = len(baseline_rows) + len(candidate_rows)
    # The episodes are the candidate's once it has rows here; with none, it is not judged in this window.
    version = candidate if len(candidate_rows) else ""
    short = [
        f"{role} {name}: {len(rows)} row(s) in the window, {spec.min_rows} needed"
        for role, name, rows in (("baseline", spec.baseline, baseline_rows), ("candidate", candidate, candidate_rows))
        if len(rows) < spec.min_rows
    ]
    if short:
        return Evaluation("insufficient_data", size, evidence=evidence, error="; ".join(short), model_version=version)

    def of(rows: pd.DataFrame) -> Window:
        return Window(window.start, window.end, rows)

    versus = f"candidate {candidate} against baseline {spec.baseline}"
    # The predictions: prediction_drift's evaluation, with the baseline's predictions as the reference.
    drift_spec = prediction_drift.PredictionDriftSpec(
        **_inner(spec, "prediction_drift", method=spec.method, threshold=spec.threshold, task=spec.task)
    )
    baseline_reference = Reference(
        Path(f"model_version {spec.baseline}"),
        pd.DataFrame({PREDICTION_COLUMN: baseline_rows[PREDICTION]}),
        prediction=PREDICTION_COLUMN,
    )
    drift = prediction_drift.evaluate(drift_spec, of(candidate_rows), baseline_reference, features)
    if drift.outcome == "error":
        return Evaluation(drift.outcome, size, evidence=evidence, error=f"{versus}: {drift.error}", model_version=version)
    not_computed: dict[str, str] = {}
    values: list[MetricValue] = []
    if drift.outcome == "insufficient_data":  # too few predictions for the drift test: latency and quality still are
        not_computed["prediction_drift_score"] = not_computed["prediction_drifted"] = drift.error or "too few predictions"
    else:
        found = {v.metric: v.value for v in drift.values if not v.feature}
        values = [
            MetricValue("prediction_drift_score", found["drift_score"]),
            MetricValue("prediction_drifted", found["drifted"]),
        ]
        evidence["features"] = drift.evidence.get("features", [])
        if "classes" in drift.evidence:  # each class's share of the candidate's predictions, and of the baseline's
            evidence["classes"] = drift.evidence["classes"]

    # Latency: latency's evaluation of each version's rows, p95 against p95.
    if LATENCY not in frame.columns:
        not_computed["latency_ratio"] = "the source has no latency column (source.latency)"
    else:
        latency_spec = latency.LatencySpec(**_inner(spec, "latency"))
        p95: dict[str, float] = {}
        for role, rows in (("baseline", baseline_rows), ("candidate", candidate_rows)):
            result = latency.evaluate(latency_spec, of(rows), None, features)
            found_p95 = next((v.value for v in result.values if v.metric == "p95_ms"), None)
            if found_p95 is None:
                not_computed["latency_ratio"] = f"no p95 latency of the {role}: {result.error}"
            else:
                p95[role] = found_p95
        if "latency_ratio" not in not_computed:
            evidence["p95_ms"] = p95
            if p95["baseline"]:
                values.append(MetricValue("latency_ratio", p95["candidate"] / p95["baseline"]))
            else:
                not_computed["latency_ratio"] = "the baseline's p95 latency is 0 ms: a ratio over it is no number"

    # Quality once labelled: performance's evaluation of each version's labelled rows, candidate minus baseline.
    if spec.task is not None:
        quality, delta = QUALITY[spec.task]
        if LABEL not in frame.columns:
            not_computed[delta] = "the source has no label column (source.label)"
        else:
            performance_spec = performance.PerformanceSpec(**_inner(spec, "performance", task=spec.task))
            scores: dict[str, float] = {}
            for role, rows in (("baseline", baseline_rows), ("candidate", candidate_rows)):
                result = performance.evaluate(performance_spec, of(rows), reference, features)
                score = next((v.value for v in result.values if v.metric == quality), None)
                if score is None:
                    why = result.error or result.evidence.get("undefined", {}).get(quality, "not computed")
                    not_computed[delta] = f"no {quality} of the {role}: {why}"
                else:
                    scores[role] = score
            if delta not in not_computed:
                evidence[quality] = scores
                values.append(MetricValue(delta, scores["candidate"] - scores["baseline"]))
    if not_computed:
        evidence["not_computed"] = not_computed
    if not values:  # the drift test had too few predictions, and nothing else is computed
        reasons = "; ".join(dict.fromkeys(not_computed.values()))
        return Evaluation("insufficient_data", size, evidence=evidence, error=f"{versus}: {reasons}", model_version=version)
    compared = (
        f"candidate {candidate} ({len(candidate_rows):,} rows) against baseline {spec.baseline} ({len(baseline_rows):,} rows)"
    )
    return Evaluation("ok", size, values, evidence=evidence, model_version=version, notes=[compared])


KIND = CheckKind(
    kind="version_compare",
    spec=VersionCompareSpec,
    dataset_metrics=BASE_METRICS | {delta for _, delta in QUALITY.values()},
    feature_metrics=frozenset(),
    evaluate=evaluate,
    uses_reference=True,  # the classes of its label column, for accuracy_delta (as performance)
    required_roles=(PREDICTION, VERSION),
    metrics_for=metrics_for,
    warm_up=import_evidently,
    compares_versions=True,
)
