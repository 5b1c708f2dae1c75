"""Drift thresholds calibrated on the reference itself (``threshold: auto``), as NannyML does it.

A fixed threshold (evidently's 0.1 on a normed Wasserstein distance, say) knows neither how much a
feature moves on its own from one period to the next nor how many rows the window has: a feature that
varies by season drifts every month, and a small window of clean rows drifts by chance. Calibrated,
a feature drifts when its score in the live window is outside what the reference's own windows of the
same size score against the whole reference: above their mean plus ``k`` standard deviations (3 by
default, NannyML's choice).

The reference's windows are, when the reference has the source's timestamp column, its rows cut by
time into spans of the check's ``window`` (so a reference that moves from month to month shows it),
as long as at least ``MIN_TIME_WINDOWS`` such spans hold rows; otherwise (no timestamp, or a reference too small for the window,
even smaller than it) ``windows`` samples drawn with replacement (bootstrap), seeded, so the same
reference always gives the same limits.

Unless ``method`` says otherwise, the test is evidently's distance for the column (Wasserstein, or
Jensen-Shannon), whatever the reference's size: the p-value tests evidently takes for a reference of
1,000 rows or fewer treat the reference as exact, so against a window many times its size every
window, clean or not, has a p-value of about 0 and no limit can tell them apart (measured:
``bench/drift_thresholds.py``, a 500-row reference and 100,000-row windows missed a doubled category
every time). A reference less than ``MIN_TIME_WINDOWS`` times the window is
itself noisy beside it, so each bootstrap round then also draws the reference anew (a two-sample
bootstrap): scored against the one reference, windows drawn from it look closer to it than live rows
ever are, and a clean window larger than a small reference drifted on five features of six. A p-value test's scores are calibrated as ``-log10(p)`` (its
scale of surprise, where larger is more drift), and the limit is given back as a p-value.

Each limit is worked out once per reference file version, feature and window size (rounded to a
quarter of a power of two, ``size_bucket``: a window of 10,000 rows and one of 10,400 share it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from monitor.checks.fast_drift import PreparedColumn

MIN_TIME_WINDOWS = 8
# A reference column of fewer values tells nothing of its spread: one value makes a limit of 0 (every
# window drifts), two a limit no shift reaches. The feature is skipped with that reason.
MIN_REFERENCE_VALUES = 30
_SMALLEST_P = 1e-300  # a p-value of 0 (or under a double's range) is this surprising, not infinitely


@dataclass(frozen=True)
class Limit:
    """A feature's calibrated limit at one window size, on its test's own scale."""

    test: str  # the fast path's test key the reference windows chose (wasserstein, ks, ...)
    limit: float  # a distance drifts above it, a p-value below it
    low: float  # the reference windows' lowest and highest score (a distance, or a p-value)
    high: float
    windows: int
    rows: int  # the window size it is for
    how: Literal["time", "bootstrap"]

    @property
    def p_value(self) -> bool:
        from monitor.checks.fast_drift import DISTANCES

        return self.test not in DISTANCES

    def drifted(self, score: float) -> bool:
        return score < self.limit if self.p_value else score > self.limit

    def evidence(self, k: float) -> dict[str, object]:
        return {"how": self.how, "windows": self.windows, "rows": self.rows, "k": k, "range": [self.low, self.high]}


def size_bucket(rows: int) -> int:
    """``rows`` rounded to the nearest quarter power of two (within 9%): windows of about one size share a limit."""
    if rows <= 8:
        return max(rows, 1)
    return round(2 ** (round(math.log2(rows) * 4) / 4))


def calibrate(
    prepared: PreparedColumn,
    values: pd.Series,
    rows: int,
    *,
    test: str | None,
    k: float,
    windows: int,
    timeline: tuple[np.ndarray, np.ndarray] | None,
    window: timedelta,
    seed: int,
) -> Limit:
    """The limit of one feature for live windows of ``window`` holding ``rows`` values, on ``test`` (None:
    evidently's distance for the column, :func:`distance_test`): ``values`` is the reference's column in
    its type (as ``prepared`` was made of it), ``timeline`` its rows' positions and times in time order
    (None: the reference has no time, so bootstrap)."""
    import numpy as np

    from monitor.checks.fast_drift import DISTANCES, TESTS, PreparedColumn, column_drift, distance_test

    known = values.notna().to_numpy()
    usable = np.flatnonzero(known)  # windows are of values, as the live window's size is counted
    size = len(usable)
    if size < MIN_REFERENCE_VALUES:
        raise ValueError(f"the reference has {size} value(s) of it, too few to calibrate on ({MIN_REFERENCE_VALUES} needed)")
    rng = np.random.default_rng(seed)
    draws, how = reference_windows(timeline, window, windows, known, rows, rng)
    # A reference not many times the window is itself a sample whose noise a live window also meets:
    # each bootstrap round then draws a reference of its size too.
    small = how == "bootstrap" and size // max(rows, 1) < MIN_TIME_WINDOWS
    test = test or distance_test(prepared)
    scores = []
    for positions in draws:
        against = prepared
        if small:
            against = PreparedColumn.of(values.iloc[usable[rng.integers(0, size, size)]].reset_index(drop=True), prepared.kind)
        try:
            scores.append(float(column_drift(against, values.iloc[positions].reset_index(drop=True), test, None)["drift_score"]))
        except ValueError:  # a window of only missing values: no score, as a live one would have none
            continue
    if not scores:
        raise ValueError("no window of the reference has a value to score")
    p_value = test not in DISTANCES
    on_scale = np.array([_surprise(s) for s in scores] if p_value else scores)
    mean, sd = float(on_scale.mean()), float(on_scale.std(ddof=1)) if len(on_scale) > 1 else 0.0
    low, high = float(np.min(scores)), float(np.max(scores))
    # Never stricter than what the reference's own windows reach, nor than evidently's threshold over
    # FLOOR: a feature that never moves in the reference (sd 0) must not alarm on one value in a thousand.
    default = TESTS[test][1]
    limit = min(10.0 ** -(mean + k * sd), low, default) if p_value else max(mean + k * sd, high, default / FLOOR)
    return Limit(test, limit, low, high, len(scores), rows, how)


FLOOR = 2  # a distance's limit is at least evidently's threshold / FLOOR (0.05 for its 0.1)


def reference_windows(
    timeline: tuple[np.ndarray, np.ndarray] | None,
    window: timedelta,
    windows: int,
    known: np.ndarray,
    rows: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], Literal["time", "bootstrap"]]:
    """The reference's windows like a live one of ``rows`` rows, as positions of its rows where ``known``:
    its spans of ``window`` by time (:func:`_by_time`), each drawn to ``rows`` (down, or up with
    replacement: a window's noise is its size's), or, without enough spans or when they are much
    smaller than the live window, ``windows`` bootstrap draws of ``rows``; and which it was."""
    import numpy as np

    spans = _by_time(timeline, window, windows, known) if timeline is not None else []
    if spans and float(np.median([len(span) for span in spans])) < rows / 2:
        spans = []  # periods much smaller than the live window do not show its noise: the bootstrap does
    if spans:
        return [rng.choice(span, rows, replace=len(span) < rows) for span in spans], "time"
    usable = np.flatnonzero(known)
    return [usable[rng.integers(0, len(usable), rows)] for _ in range(windows)], "bootstrap"


def _by_time(timeline: tuple[np.ndarray, np.ndarray], window: timedelta, windows: int, known: np.ndarray) -> list[np.ndarray]:
    """The reference cut by time into spans of ``window`` from its first row on: each span's positions of
    rows with a value (``known``). None when fewer than ``MIN_TIME_WINDOWS`` spans hold values; the first
    and the last are left out when partial (under half the median's values). At most ``windows``, evenly
    spread. Only the spans that hold rows are made, so a stray row years away costs nothing."""
    import numpy as np

    order, stamps = timeline
    order, stamps = order[known[order]], stamps[known[order]]
    if not len(order):
        return []
    step = np.int64(int(window.total_seconds() * 1e9))
    index = (stamps - stamps[0]).astype("timedelta64[ns]").astype(np.int64) // step
    _, starts = np.unique(index, return_index=True)  # index is sorted: each span's first position
    spans = np.split(order, starts[1:])
    if len(spans) >= 2:
        typical = float(np.median([len(span) for span in spans]))
        spans = [span for n, span in enumerate(spans) if 0 < n < len(spans) - 1 or len(span) >= typical / 2]
    if len(spans) < MIN_TIME_WINDOWS:
        return []
    picked = np.linspace(0, len(spans) - 1, num=min(len(spans), windows)).round().astype(int)
    return [spans[i] for i in sorted(set(picked.tolist()))]


def _surprise(p_value: float) -> float:
    return -math.log10(max(p_value, _SMALLEST_P))
