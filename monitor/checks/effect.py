"""How big a feature's change is, in the feature's own terms: what an on-call engineer reads beside a
drift score ("country: 'BR' from 2% to 19%"; "amount: median 61.2 from 40.3, +0.8 IQR").

A distance or a p-value says that the distributions differ, not how: for a category, the one whose share
moved most (a category the reference never had counts from 0%); for a number, the shift of the median
in units of the reference's interquartile range (its standard deviation where the IQR is 0, as for a
feature that is mostly one value). The reference's side is worked out once per reference, from what the
drift path prepared (``PreparedColumn``: sorted values, category counts).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from monitor.text import one_line

if TYPE_CHECKING:
    import pandas as pd

    from monitor.checks.fast_drift import PreparedColumn


def reference_side(prepared: PreparedColumn) -> dict[str, Any]:
    """What the effect of a window is measured against: a number column's median and spread, a
    category column's shares."""
    import numpy as np

    values = prepared.values
    if prepared.kind == "number":
        if not values.size:
            return {}
        q1, median, q3 = (float(q) for q in np.quantile(values, [0.25, 0.5, 0.75]))
        return {"median": median, "spread": q3 - q1 if q3 > q1 else prepared.std, "spread_name": "IQR" if q3 > q1 else "sd"}
    total = sum(prepared.counts.values())
    return {"shares": {k: v / total for k, v in prepared.counts.items()}} if total else {}


def effect(reference: dict[str, Any], live: pd.Series, kind: str) -> dict[str, Any] | None:
    """The change of ``live`` (the window's column in its type) from ``reference`` (:func:`reference_side`),
    with the words that say it; None when there is nothing to measure."""
    import numpy as np

    if not reference:
        return None
    if kind == "number":
        values = np.asarray(live, dtype=float)
        values = values[np.isfinite(values)]
        if not values.size:
            return None
        median = float(np.median(values))
        spread = reference["spread"]
        shift = (median - reference["median"]) / spread if spread > 0 else None
        if not all(math.isfinite(x) for x in (median, reference["median"], shift if shift is not None else 0.0)):
            return None  # values so large their median overflows: no words for it
        words = f"median {_number(median)} from {_number(reference['median'])}"
        if shift is not None:
            words += f", {shift:+.2g} {reference['spread_name']}"
        found: dict[str, Any] = {"text": words, "median_shift": shift}
        ratio = _spread(values, reference["spread_name"]) / spread if spread > 0 else None
        if ratio is not None and math.isfinite(ratio) and not 1 / SPREAD_CHANGE < ratio < SPREAD_CHANGE:
            found["text"] += f"; {reference['spread_name']} x{ratio:.2g}"  # the spread moved, if not the middle
            found["spread_ratio"] = ratio
        return found
    counts = live.dropna().value_counts()
    total = int(counts.sum())
    if not total:
        return None
    before: dict = reference["shares"]
    after = {k: v / total for k, v in zip(counts.index.tolist(), counts.tolist(), strict=True)}
    moved = max(before.keys() | after.keys(), key=lambda k: (abs(after.get(k, 0.0) - before.get(k, 0.0)), str(k)))
    was, now = before.get(moved, 0.0), after.get(moved, 0.0)
    shown = one_line(str(moved) if len(str(moved)) <= _SHOWN_CHARS else str(moved)[: _SHOWN_CHARS - 1] + "…")
    found = {"text": f"'{shown}' from {_percent(was)} to {_percent(now)}", "category": shown, "share_before": was,
             "share_after": now}  # fmt: skip
    unseen = int(sum(n for k, n in zip(counts.index.tolist(), counts.tolist(), strict=True) if k not in before)) / total
    if unseen >= NEW_CATEGORIES and unseen > now:  # many new categories, each small: their sum says it
        found["text"] += f"; categories the reference never had: {_percent(unseen)} of the window"
        found["new_categories_share"] = unseen
    return found


SPREAD_CHANGE = 1.5  # a window's IQR (or sd) this many times the reference's, or a 1.5th of it, is said
NEW_CATEGORIES = 0.05  # the window's share of categories the reference never had that is said


def _spread(values: Any, name: str) -> float:
    import numpy as np

    if name == "IQR":
        q1, q3 = np.quantile(values, [0.25, 0.75])
        return float(q3 - q1)
    return float(np.std(values))


_SHOWN_CHARS = 60  # a category is the data's text: a message shows this much of it


def _percent(share: float) -> str:
    """A share to the precision that tells it from its neighbours: 0%, 0.4%, 25%, 99.8%, 100%."""
    if share in (0.0, 1.0) or 0.1 <= share <= 0.9:
        return f"{share:.0%}"
    if share < 0.001:
        return "<0.1%"
    if share > 0.999:
        return ">99.9%"
    return f"{share:.1%}"


def _number(value: float) -> str:
    return f"{value:.4g}"
