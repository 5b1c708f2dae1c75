"""The reference's own range of a metric, for rules that say ``METRIC outside reference``.

A fixed threshold on a metric (``missing_share > 0.05``) knows neither how much the metric moves on its
own nor how that depends on the window's size. ``outside reference`` asks the reference instead: the
check's own ``evaluate`` is run on the reference's windows of the live window's size (its spans of the
check's ``window`` by time when it has the source's timestamp, else seeded bootstrap draws, as
``threshold: auto`` cuts it: monitor/checks/calibration.py), and the live value is outside when it is
past the windows' mean ± ``k`` standard deviations, or past the lowest and highest they reached,
whichever is wider. For a share, the band is never narrower than ``k`` rows' worth (``k / rows`` on
each side): a reference with no missing value at all does not make one missing value of a thousand an
alert.

Worked out once per reference file version, check settings and window size bucket
(:func:`~monitor.checks.calibration.size_bucket`), and said in the run's evidence
(``reference_ranges``), so the message can say "its reference range at 1,024 rows is 0.01-0.03".
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from monitor.alerting.conditions import OUTSIDE
from monitor.checks.base import Calibration, CheckKind, CheckSpec, Evaluation, Window
from monitor.sources.base import LABEL, PREDICTION, TS

if TYPE_CHECKING:
    from monitor.sources.reference import Reference

MIN_WINDOWS = 10  # fewer reference windows with a value of the metric: no band, the rule is not judged


def outside_metrics(spec: CheckSpec) -> frozenset[str]:
    """The metrics the check's rules judge against the reference's range (``METRIC outside reference``)."""
    return frozenset(c.metric for rule in spec.alert for c in rule.conditions if c.op == OUTSIDE)


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
    key = ("band", spec.model_dump_json(), rows)
    bands, how = reference.worked_out(key, lambda: _bands(kind, spec, window, reference, features, rows, calibration))
    evidence: list[dict[str, Any]] = []
    values = []
    for value in evaluation.values:
        band = bands.get((value.metric, value.feature)) if value.metric in wanted else None
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
            "its outside-reference rules are not judged"
        )
    return replace(evaluation, values=values, evidence={**evaluation.evidence, **extra})


class _Band(NamedTuple):
    edges: tuple[float, float]
    windows: int  # the reference windows that had a value of it


def _bands(
    kind: CheckKind, spec: CheckSpec, window: Window, reference: Reference, features: list[str], rows: int,
    calibration: Calibration,
) -> tuple[dict[tuple[str, str], _Band], str]:  # fmt: skip
    """Each (metric, feature)'s band over the reference's windows of ``rows`` rows, and how they were cut."""
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
    for positions in draws:
        part = Window(window.start, window.end, renamed.iloc[positions].reset_index(drop=True))
        found = kind.evaluate(spec, part, reference, features)
        if found.outcome != "ok":
            continue
        for value in found.values:
            if value.value is not None and np.isfinite(value.value):
                seen.setdefault((value.metric, value.feature), []).append(float(value.value))
    bands = {}
    for (metric, feature), scores in seen.items():
        if len(scores) < MIN_WINDOWS:
            continue
        mean, sd = statistics.fmean(scores), statistics.stdev(scores)
        low, high = min(mean - calibration.k * sd, min(scores)), max(mean + calibration.k * sd, max(scores))
        if metric in kind.shares:
            least = calibration.k / rows  # k rows' worth: never a band of one value
            low, high = max(0.0, min(low, mean - least)), min(1.0, max(high, mean + least))
        bands[(metric, feature)] = _Band((float(low), float(high)), len(scores))
    return bands, how
