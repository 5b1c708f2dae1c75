"""A mergeable latency summary with a bounded relative error (the DDSketch idea, written small).

Values fall into logarithmic buckets ``(gamma^(i-1), gamma^i]`` with ``gamma = (1 + a) / (1 - a)``;
a quantile is answered with the bucket's midpoint ``2 gamma^i / (gamma + 1)``, which is within a
relative error ``a`` of the exact quantile of the values seen (DDSketch, Masson et al., VLDB 2019).
With ``a = 0.5%`` a day of latencies from 1 µs to 1000 s takes at most ~2,800 buckets, usually a few
hundred, and two sketches merge by adding counts: minutes add up to windows. Written here rather
than imported because the stored form (a JSON object of bucket -> count per model and minute) is part
of our schema, and the whole of it is forty lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

RELATIVE_ACCURACY = 0.005
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
ZERO = "z"  # the bucket of values <= 0


class LatencySketch:
    def __init__(self, buckets: dict[str, int] | None = None) -> None:
        self.buckets: dict[str, int] = dict(buckets or {})

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def add_many(self, values: Iterable[float] | np.ndarray) -> None:
        array = np.asarray(values, dtype=float)
        array = array[~np.isnan(array)]
        if not len(array):
            return
        positive = array[array > 0]
        zeros = len(array) - len(positive)
        if zeros:
            self.buckets[ZERO] = self.buckets.get(ZERO, 0) + zeros
        if len(positive):
            keys, counts = np.unique(np.ceil(np.log(positive) / _LOG_GAMMA).astype(np.int64), return_counts=True)
            for key, count in zip(keys.tolist(), counts.tolist(), strict=False):
                name = str(key)
                self.buckets[name] = self.buckets.get(name, 0) + count

    def merge(self, other: LatencySketch) -> LatencySketch:
        for key, count in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + count
        return self

    def quantile(self, q: float) -> float:
        """The value at quantile ``q`` (0..1), within the relative accuracy; NaN when empty."""
        total = self.count
        if total == 0:
            return math.nan
        rank = q * (total - 1)
        seen = 0
        for key in sorted(self.buckets, key=lambda k: -math.inf if k == ZERO else int(k)):
            seen += self.buckets[key]
            if seen > rank:
                return _answer(key)
        return math.nan

    def count_above(self, limit: float) -> int:
        """How many values are above ``limit``, within the relative accuracy: a bucket counts whole, by
        whether the value it answers with (its midpoint) is above."""
        return sum(count for key, count in self.buckets.items() if _answer(key) > limit)

    def max(self) -> float:
        keys = [int(k) for k in self.buckets if k != ZERO]
        return _answer(str(max(keys))) if keys else (0.0 if self.buckets else math.nan)


def _answer(key: str) -> float:
    """The value a bucket answers with: its midpoint ``2 gamma^i / (gamma + 1)``, 0 for the zero bucket."""
    return 0.0 if key == ZERO else 2 * GAMMA ** int(key) / (GAMMA + 1)
