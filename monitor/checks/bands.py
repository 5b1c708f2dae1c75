"""The reference's own range of a metric, for rules on it: ``missing_share outside reference``,
``missing_share > reference range`` (past its top), ``rows < reference range`` (past its bottom).

A fixed threshold on a metric (``missing_share > 0.05``) knows neither how much the metric moves on its
own nor how that depends on the window's size. A rule on the reference range asks the reference
instead: the check's own ``evaluate`` is run on the reference's windows of the live window's size (its
spans of the check's ``window`` by time when it has the source's timestamp, else seeded bootstrap
draws, as ``threshold: auto`` cuts it: monitor/checks/calibration.py), and the range is the windows'
mean ± ``k`` standard deviations, or their lowest and highest, whichever is wider (never below 0 for a
metric that is never negative). A share of the window's rows (a per-feature share) counts 0 in a
window where it has no value (a class the reference never predicted), and its range is never narrower
than ``k`` rows' worth on each side (``k / rows``): a reference with no missing value at all does not
make one missing value of a thousand an alert.

Worked out once per reference file version, model (its features and columns), check settings and
window size bucket (:func:`~monitor.checks.calibration.size_bucket`), and said in the run's evidence
(``reference_ranges``).
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from monitor.checks.base import Calibration, CheckKind, CheckSpec, Evaluation, Window
from monitor.sources.base import LABEL, PREDICTION, TS

if TYPE_CHECKING:
    from monitor.sources.reference import Reference

# Fewer reference windows with a value of the metric: no band, the rule is not judged. As many as a
# calibration by time needs, so that a reference cut by time always has enough.
MIN_WINDOWS = 8


def outside_metrics(spec: CheckSpec) -> frozenset[str]:
    """The metrics the check's rules judge against the reference's range (``METRIC outside reference``)."""
    return frozenset(c.metric for rule in spec.alert for c in rule.conditions if c.anchor == "range")


def evaluate(kind: CheckKind, spec: CheckSpec, window: Window, reference: Reference | None, features: list[str]) -> Evaluation:
    """The kind's evaluation of the window, with the bands its ``outside reference`` rules need."""
    evaluation = kind.evaluate(spec, window, reference, features)
    return banded(kind, spec, window, reference, features, evaluation, outside_metrics(spec))


def banded(
    kind: CheckKind, spec: CheckSpec, window: Window, reference: Reference | None, features: list[str], evaluation: Evaluation,
    wanted: frozenset[str],
) -> Evaluation:  # fmt: skip
    """``evaluation`` with each value of a ``wanted`` metric given its band (``MetricValue.band``) and the
    bands in its evidence; unchanged when it is not ``ok`` or there is no reference."""
    if not wanted or evaluation.outcome != "ok" or reference is None:
        return evaluation
    from monitor.checks.calibration import size_bucket

    calibration: Calibration = getattr(spec, "calibration", None) or Calibration()
    rows = size_bucket(evaluation.sample_size)
    # What the reference's windows' values depend on: the check's settings (not its rules, names or
    # labels), the model's features and the columns its source names in the reference, the size.
    settings = spec.model_dump_json(exclude={"alert", "name", "every", "for_", "links", "labels"})
    columns = (tuple(features), reference.prediction, reference.label, reference.timestamp)
    key = ("band", settings, columns, rows)
    found = reference.worked_out(key, lambda: _bands(kind, spec, window, reference, features, rows, calibration))
    bands, how, judged = found
    evidence: list[dict[str, Any]] = []
    values = []
    for value in evaluation.values:
        band = bands.get((value.metric, value.feature)) if value.metric in wanted else None
        if band is None and value.metric in wanted and _row_share(kind, value.metric, value.feature) and judged >= MIN_WINDOWS:
            band = _band([0.0] * judged, calibration.k, rows, row_share=True)  # never in the reference's windows
        if band is not None:
            value = replace(value, band=band.edges)
            evidence.append({"metric": value.metric, "feature": value.feature, "range": list(band.edges),
                             "how": how, "windows": band.windows, "rows": rows, "k": calibration.k})  # fmt: skip
        values.append(value)
    unbanded = sorted(
        {f"{v.metric}{' ' + v.feature if v.feature else ''}" for v in values if v.metric in wanted and v.band is None}
    )
    extra: dict[str, Any] = {"reference_ranges": evidence} if evidence else {}
    if unbanded:
        extra["no_reference_range"] = (
            f"{', '.join(unbanded)}: fewer than {MIN_WINDOWS} of the reference's windows of {rows:,} rows have a value; "
            "its rules on the reference range are not judged"
        )
    return replace(evaluation, values=values, evidence={**evaluation.evidence, **extra})


class _Band(NamedTuple):
    edges: tuple[float, float]
    windows: int  # the reference windows that had a value of it


def _row_share(kind: CheckKind, metric: str, feature: str) -> bool:
    """Whether the metric is a share of the window's rows: a share per feature or class (a data-set
    share, ``drift_share``, is of features)."""
    return metric in kind.shares and feature != ""


def _band(scores: list[float], k: float, rows: int, *, row_share: bool) -> _Band:
    mean, sd = statistics.fmean(scores), statistics.stdev(scores)
    low, high = min(mean - k * sd, min(scores)), max(mean + k * sd, max(scores))
    if row_share:
        least = k / rows  # k rows' worth: never a band of one value
        low, high = min(low, mean - least), min(1.0, max(high, mean + least))
    if min(scores) >= 0:  # a distance, a share, a count: never below 0
        low = max(low, 0.0)
    return _Band((float(low), float(high)), len(scores))


def _bands(
    kind: CheckKind, spec: CheckSpec, window: Window, reference: Reference, features: list[str], rows: int,
    calibration: Calibration,
) -> tuple[dict[tuple[str, str], _Band], str, int]:  # fmt: skip
    """Each (metric, feature)'s band over the reference's windows of ``rows`` rows, how they were cut, and
    how many of them the check judged."""
    import numpy as np

    from monitor.checks.calibration import reference_windows

    frame = reference.frame
    known = np.ones(len(frame), dtype=bool)
    rng = np.random.default_rng(calibration.seed)
    draws, how = reference_windows(reference.timeline(), spec.window, calibration.windows, known, rows, rng)
    # The reference's rows as a live window holds them: its prediction, label and time under their roles.
    roles = {reference.prediction: PREDICTION, reference.label: LABEL, reference.timestamp: TS}
    renamed = frame.rename(columns={column: role for column, role in roles.items() if column in frame.columns})
    seen: dict[tuple[str, str], list[float]] = {}
    judged = 0  # the windows the check judged (ok)
    for positions in draws:
        part = Window(window.start, window.end, renamed.iloc[positions].reset_index(drop=True))
        found = kind.evaluate(spec, part, reference, features)
        if found.outcome != "ok":
            continue
        judged += 1
        for value in found.values:
            if value.value is not None and np.isfinite(value.value):
                seen.setdefault((value.metric, value.feature), []).append(float(value.value))
    bands = {}
    for (metric, feature), scores in seen.items():
        row_share = _row_share(kind, metric, feature)
        if row_share:  # a class a window did not have is a share of 0 there
            scores = scores + [0.0] * (judged - len(scores))
        if len(scores) >= MIN_WINDOWS:
            bands[(metric, feature)] = _band(scores, calibration.k, rows, row_share=row_share)
    return bands, how, judged
