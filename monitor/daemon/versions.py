"""A check split by model version: the window cut into each version's rows, each evaluated on its own.

``split_by: model_version`` is the evaluator's business alone (the kind never knows): :func:`per_version`
evaluates the kind once per version seen in the window, and :class:`Evaluated` says which versions the
window was read for, so that the evaluator can end the open episodes of those it did not judge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from monitor.checks import CHECKS, bands
from monitor.checks.base import CheckKind, CheckSpec, Evaluation, Window
from monitor.ingest.sketch import LatencySketch
from monitor.sources.base import LATENCY, VERSION, Summary, version_names

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Evaluated:
    """What a check found in one window: one evaluation, or one per model version of a check split by it;
    ``judged`` the versions the window was read for (None: it was not read, the run says why)."""

    evaluations: list[Evaluation]
    judged: frozenset[str] | None


def splits_by_version(check: CheckSpec) -> bool:
    """Whether the check's episodes are each model version's own: ``split_by``, or a kind that compares
    versions (version_compare: its candidate's)."""
    return check.split_by is not None or CHECKS[check.kind].compares_versions


def per_version(kind: CheckKind, check: CheckSpec, window: Window, reference, features: list[str]) -> Evaluated:
    """The check evaluated on each model version seen in the window, each its own evaluation. Rows without
    a version are in none of them (counted in each one's evidence); no version at all is insufficient_data."""
    frame = window.frame
    if VERSION not in frame.columns:
        return Evaluated([Evaluation.failed("the rows have no model_version column to split by: set source.model_version")], None)
    names = version_names(frame[VERSION])
    seen = sorted({name for name in names if name is not None})
    unversioned = int(names.isna().sum())
    if not seen:
        error = (
            "no rows in the window: no model_version to evaluate"
            if not len(frame)
            else f"{len(frame)} row(s) in the window, none with a model_version: no version to evaluate"
        )
        return Evaluated([Evaluation("insufficient_data", window.rows, error=error)], frozenset())
    # Each frame's version names once (a per-row conversion), not once per version.
    earlier_names = _names(window.earlier.frame) if window.earlier is not None else None
    out = []
    for version in seen:
        part = _of_version(window, version, names, earlier_names)
        evaluation = replace(bands.evaluate(kind, check, part, reference, features), model_version=version)
        if unversioned:
            evaluation.evidence["rows_without_model_version"] = unversioned
        out.append(evaluation)
    return Evaluated(out, frozenset(seen))


def _names(frame: pd.DataFrame) -> pd.Series:
    """Each row's model version (None: it has none, or the frame no such column)."""
    import pandas as pd

    return version_names(frame[VERSION]) if VERSION in frame.columns else pd.Series([None] * len(frame), dtype=object)


def _of_version(window: Window, version: str, names: pd.Series, earlier_names: pd.Series | None) -> Window:
    """The rows of one model version of ``window`` (and of its earlier window), ``names`` its rows' versions.
    Over a sampled source the version's exact count is estimated as the window's exact count times the
    version's share of the uniform sample, and its latency is the sketch of its sampled rows."""
    import pandas as pd

    frame = window.frame
    mask = (names == version).to_numpy(dtype=bool)
    part = frame[mask].reset_index(drop=True)
    part.attrs = dict(frame.attrs)
    summary = None
    if window.summary is not None:
        sketch = LatencySketch()
        if LATENCY in part.columns:
            latencies = pd.to_numeric(part[LATENCY], errors="coerce")
            sketch.add_many(latencies[latencies >= 0].to_numpy(dtype=float))
        share = mask.sum() / len(frame) if len(frame) else 0.0
        summary = Summary(rows=round(window.summary.rows * share), latency=sketch)
    earlier = None
    if window.earlier is not None:
        then = earlier_names if earlier_names is not None else _names(window.earlier.frame)
        earlier = _of_version(window.earlier, version, then, None)
    return replace(window, frame=part, summary=summary, earlier=earlier)
