"""Evidently's drift numbers without evidently's Report: its default stat tests, on arrays.

A legacy ``Report([DataDriftTable()])`` spends its time on machinery (column mapping, correlations,
histograms for plots, JSON) and on sorting and counting the whole reference again at every
evaluation; the statistics themselves are a fraction of it. This module computes the same
statistics the same way, and the reference side once per reference (:class:`PreparedColumn`, kept by
:class:`~monitor.sources.reference.Reference`):

- the choice of test is evidently's (``_get_default_stattest`` in its stat-test registry): by the
  column's type, the reference's size (1,000 rows) and the number of distinct values of both sides;
- each test is evidently's formula, with the same scipy calls on the same values: ``jensenshannon``
  (Sturges bins over both sides for a number of more than 20 values, else the values' shares),
  ``ks``, ``chisquare`` and ``z``; ``wasserstein`` (normed by the reference's standard deviation) is
  scipy's own formula written out, so that the reference is sorted once rather than every run;
- as in evidently, infinite values and missing ones are left out of each side first.

tests/test_fast_drift.py holds every score within 1e-9 of a plain Report's, and every verdict equal,
on data sets that take each branch; the sums are made in evidently's order, so that a score on its
threshold falls on the same side of it (found by fuzzing 80,000 cases against the Report). Where the
Report fails only for its plots (a constant column beyond 5.6e14 makes its 10-bin histogram
impossible), this module still gives the test's number. A ``method`` this module does not compute
goes to the Report (:func:`computes`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Evidently's names and default thresholds for the tests computed here (its StatTest objects);
# tests/test_fast_drift.py holds them equal to the installed evidently's.
TESTS: dict[str, tuple[str, float]] = {
    "wasserstein": ("Wasserstein distance (normed)", 0.1),
    "jensenshannon": ("Jensen-Shannon distance", 0.1),
    "ks": ("K-S p_value", 0.05),
    "chisquare": ("chi-square p_value", 0.05),
    "z": ("Z-test p_value", 0.05),
}
# Evidently's tests whose score is a distance (drifts above its threshold); every other is a p-value.
DISTANCES = frozenset({"ed", "hellinger", "jensenshannon", "kl_div", "psi", "wasserstein"})
SMALL_REFERENCE = 1000  # evidently switches tests above this many reference rows
FEW_VALUES = 5  # a number column with at most this many distinct values is tested as categories
BINNED_ABOVE = 20  # jensenshannon bins a number column with more distinct reference values than this


def warm_up() -> None:
    """Load what the tests computed here need (scipy's, under a second; not evidently's seconds)."""
    import scipy.spatial.distance  # noqa: F401
    import scipy.stats  # noqa: F401


def computes(method: str | None) -> bool:
    """Whether this module computes ``method`` (None: evidently's choice per column, always)."""
    return method is None or method in TESTS


@dataclass
class PreparedColumn:
    """One reference column as every evaluation needs it, made once: its usable values (sorted, for a
    number), their standard deviation, how many distinct values it has, and (when they are few, or
    for categories) which, with each one's count."""

    kind: str  # "number", or a categorical type
    values: np.ndarray  # usable values: finite floats, sorted; categories as given
    distinct_count: int = 0
    std: float = 0.0
    distinct: frozenset = frozenset()  # for a number, only when it has at most FEW_DISTINCT of them
    counts: Counter = field(default_factory=Counter)  # likewise
    order: tuple = ()  # likewise: the distinct values in the order they first appear (see _keys)

    @classmethod
    def of(cls, values: pd.Series, kind: str) -> PreparedColumn:
        if kind == "number":
            array = _finite(values)
            std = float(np.std(array)) if array.size else 0.0  # as evidently sums it: in the values' order
            order = pd.unique(array)
            array.sort(kind="stable")
            unique, counts = np.unique(array, return_counts=True)  # sorted already: cheap
            if unique.size > FEW_DISTINCT:
                return cls(kind, array, int(unique.size), std)
            pairs = dict(zip(unique.tolist(), counts.tolist(), strict=True))
            return cls(kind, array, int(unique.size), std, frozenset(pairs), Counter(pairs), tuple(order.tolist()))
        side = _Side.of_categories(values)
        return cls(kind, side.values, len(side.distinct), 0.0, side.distinct, side.counts, side.order)


FEW_DISTINCT = BINNED_ABOVE
"""A number column's distinct values are kept when it has at most this many: past it, no test needs
them (its tests of categories are chosen at up to FEW_VALUES values, its bins at more than this)."""


@dataclass
class _Side:
    """The current window's column: its usable values and, when a test needs them, its distinct values
    and their counts."""

    values: np.ndarray
    distinct: frozenset = frozenset()
    counts: Counter = field(default_factory=Counter)
    order: tuple = ()

    @classmethod
    def of_categories(cls, values: pd.Series) -> _Side:
        kept = values.dropna()
        counts = kept.value_counts(sort=False)
        pairs = dict(zip(counts.index.tolist(), counts.tolist(), strict=True))
        return cls(kept.to_numpy(dtype=object), frozenset(pairs), Counter(pairs), tuple(kept.unique().tolist()))

    @classmethod
    def of_numbers(cls, values: pd.Series, with_distinct: bool) -> _Side:
        array = _finite(values)
        if not with_distinct:
            return cls(array)
        unique, counts = np.unique(array, return_counts=True)
        pairs = dict(zip(unique.tolist(), counts.tolist(), strict=True))
        return cls(array, frozenset(pairs), Counter(pairs), tuple(pd.unique(array).tolist()))


def column_drift(reference: PreparedColumn, current: pd.Series, method: str | None, threshold: float | None) -> dict[str, Any]:
    """The drift of one column as evidently's DataDriftTable gives it: ``drift_score``,
    ``stattest_threshold``, ``drift_detected`` and ``stattest_name``. Raises ValueError where
    evidently would (an empty side)."""
    if reference.values.size == 0:
        raise ValueError("An empty column was provided for drift calculation in the reference dataset.")
    few = reference.kind != "number" or reference.distinct_count <= FEW_DISTINCT
    side = _Side.of_numbers(current, few) if reference.kind == "number" else _Side.of_categories(current)
    if side.values.size == 0:
        raise ValueError("An empty column was provided for drift calculation in the current dataset.")
    # Both sides' distinct values; a number column with more than FEW_DISTINCT has more than FEW_VALUES.
    distinct = len(reference.distinct | side.distinct) if few else reference.distinct_count
    test = method or _default_test(reference, distinct)
    if method is not None and (reference.kind == "number") not in _FITS[method]:  # as evidently refuses it
        raise ValueError(f"{method} does not fit a column of {'numbers' if reference.kind == 'number' else 'categories'}")
    name, default = TESTS[test]
    limit = default if threshold is None else threshold
    score = float(_SCORES[test](reference, side))
    drifted = _DRIFTED[test](score, limit)
    return {"drift_score": score, "stattest_threshold": limit, "drift_detected": bool(drifted), "stattest_name": name}


def distance_test(reference: PreparedColumn) -> str:
    """The distance evidently chooses for a column of a large reference: Wasserstein for numbers of many
    values, Jensen-Shannon otherwise (its p-value tests, for small references, are not wanted here)."""
    return "wasserstein" if reference.kind == "number" and reference.distinct_count > FEW_VALUES else "jensenshannon"


def _default_test(reference: PreparedColumn, distinct: int) -> str:
    """Evidently's ``_get_default_stattest``: ``distinct`` counts the values of both sides."""
    if reference.values.size <= SMALL_REFERENCE:
        if reference.kind == "number" and distinct > FEW_VALUES:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if reference.kind == "number" and distinct > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


def _finite(values: pd.Series | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


# -- the tests, as evidently computes them -------------------------------------------------------
def _wasserstein(reference: PreparedColumn, current: _Side) -> float:
    """scipy's ``wasserstein_distance`` (its ``_cdf_distance`` for p=1) over evidently's norm, the
    reference's standard deviation (at least 0.001), with the reference sorted once.

    scipy sorts both sides together and looks every value up in each side (two binary searches per
    value); here the window's sorted values are merged into the reference's by one search, and each
    side's CDF is counted along the merge. The terms are scipy's, bit for bit: the values in the same
    order, so the same gaps, and at each gap the same counts (inside a run of equal values the gap is
    0 and so is the term, whatever the count there; at its end both count every equal value)."""
    norm = max(reference.std, 0.001)
    u_sorted, v_sorted = reference.values, np.sort(current.values)
    n_u, n_v = u_sorted.size, v_sorted.size
    at_v = u_sorted.searchsorted(v_sorted, "right") + np.arange(n_v)  # where each window value lands
    is_v = np.zeros(n_u + n_v, dtype=np.int8)
    is_v[at_v] = 1
    merged = np.empty(n_u + n_v)
    merged[at_v] = v_sorted
    merged[is_v == 0] = u_sorted
    v_count = np.cumsum(is_v[:-1], dtype=np.intp)
    u_count = np.arange(1, n_u + n_v, dtype=np.intp) - v_count
    # scipy's very arithmetic, so that a score on its threshold falls the same side of it.
    terms = np.abs(u_count / n_u - v_count / n_v)
    return float(_vecdot(terms, np.diff(merged))) / norm


def _vecdot(x1: np.ndarray, x2: np.ndarray) -> Any:
    """scipy's ``np_vecdot``, which its ``wasserstein_distance`` sums with."""
    return np.vecdot(x1, x2) if np.__version__ > "2.0" else np.sum(x1 * x2)


def _jensenshannon(reference: PreparedColumn, current: _Side) -> float:
    from scipy.spatial import distance

    values = current.values
    if reference.kind == "number" and reference.distinct_count > BINNED_ABOVE:
        lo, hi = min(reference.values[0], values.min()), max(reference.values[-1], values.max())
        bins = _sturges_edges(lo, hi, reference.values.size + values.size)
        reference_percents = _histogram_sorted(reference.values, bins) / reference.values.size
        current_percents = np.histogram(values, bins)[0] / values.size
    else:
        keys = _keys(reference, current)
        reference_percents = np.array([reference.counts.get(k, 0) / reference.values.size for k in keys])
        current_percents = np.array([current.counts.get(k, 0) / values.size for k in keys])
    return float(distance.jensenshannon(reference_percents, current_percents, None))


def _ks(reference: PreparedColumn, current: _Side) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference.values, current.values)[1])


def _chisquare(reference: PreparedColumn, current: _Side) -> float:
    from scipy.stats import chisquare

    keys = _keys(reference, current)
    k_norm = current.values.size / reference.values.size
    f_exp = [reference.counts.get(key, 0) * k_norm for key in keys]
    f_obs = [current.counts.get(key, 0) for key in keys]
    return float(chisquare(f_obs, f_exp)[1])


def _z(reference: PreparedColumn, current: _Side) -> float:
    from scipy.stats import norm

    if len(reference.distinct) == 1 and len(current.distinct) == 1 and reference.distinct == current.distinct:
        return 1.0
    first = sorted(reference.distinct | current.distinct)[0]
    n1, n2 = reference.values.size, current.values.size
    p1 = float(n1 - reference.counts.get(first, 0)) / n1  # the share of "not the first value"
    p2 = float(n2 - current.counts.get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z_stat = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z_stat))))


# For which columns each method is allowed (as evidently's StatTest allowed_feature_types): numbers (True),
# categories (False).
_FITS = {"wasserstein": (True,), "ks": (True,), "chisquare": (False,), "z": (False,), "jensenshannon": (True, False)}

_SCORES = {"wasserstein": _wasserstein, "jensenshannon": _jensenshannon, "ks": _ks, "chisquare": _chisquare, "z": _z}
_DRIFTED = {
    "wasserstein": lambda score, limit: score >= limit,
    "jensenshannon": lambda score, limit: score >= limit,
    "ks": lambda score, limit: score <= limit,
    "chisquare": lambda score, limit: score < limit,
    "z": lambda score, limit: score < limit,
}


def _keys(reference: PreparedColumn, current: _Side) -> list:
    """The values of both sides in the order evidently takes them: a set's, made as its
    ``get_unique_not_nan_values_list_from_series`` makes it (each side's values in the order they first
    appear), so that the sums over them are evidently's to the last bit."""
    return list(set(reference.order) | set(current.order))


def _sturges_edges(lo: float, hi: float, size: int) -> np.ndarray:
    """``np.histogram_bin_edges(both_sides, bins="sturges")`` from the two sides' range and size."""
    width = (hi - lo) / (np.log2(size) + 1.0)  # numpy's _hist_bin_sturges: the data's range, not the edges'
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    bins = int(np.ceil((hi - lo) / width)) if width else 1
    return np.linspace(lo, hi, bins + 1, endpoint=True)


def _histogram_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` of values already sorted: the last bin holds its right edge."""
    cuts = np.concatenate((sorted_values.searchsorted(edges[:-1], "left"), [sorted_values.searchsorted(edges[-1], "right")]))
    return np.diff(cuts)
