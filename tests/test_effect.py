"""A drifted feature's message says how big the change is in the feature's own terms: the category whose
share moved most, from what to what, or the median's shift in units of the reference's IQR."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from monitor.checks.effect import effect, reference_side
from monitor.checks.fast_drift import PreparedColumn


def measured(reference: pd.Series, live: pd.Series, kind: str) -> dict | None:
    return effect(reference_side(PreparedColumn.of(reference, kind)), live, kind)


def test_the_category_whose_share_moved_most_from_what_to_what():
    reference = pd.Series(["20K-40K"] * 25 + ["40K-60K"] * 50 + ["60K+"] * 25, dtype=object)
    live = pd.Series(["20K-40K"] * 41 + ["40K-60K"] * 34 + ["60K+"] * 25, dtype=object)
    found = measured(reference, live, "string")
    assert found["text"] == "'40K-60K' from 50% to 34%"  # 16 points: more than 20K-40K's 16, by name after
    live = pd.Series(["20K-40K"] * 45 + ["40K-60K"] * 30 + ["60K+"] * 25, dtype=object)
    assert measured(reference, live, "string")["text"] == "'40K-60K' from 50% to 30%"


def test_a_category_the_reference_never_had_counts_from_nothing():
    reference = pd.Series(["US"] * 60 + ["DE"] * 40, dtype=object)
    live = pd.Series(["US"] * 55 + ["DE"] * 26 + ["BR"] * 19, dtype=object)
    assert measured(reference, live, "string")["text"] == "'BR' from 0% to 19%"


def test_a_long_category_is_cut_in_the_message():
    long = "x" * 500
    found = measured(pd.Series(["a"] * 10, dtype=object), pd.Series([long] * 10, dtype=object), "string")
    assert found["category"] == "x" * 59 + "…" and len(found["text"]) < 90


def test_a_numbers_median_shift_in_units_of_the_references_iqr():
    rng = np.random.default_rng(1)
    reference = pd.Series(rng.normal(40.0, 10.0, 20_000))  # IQR about 13.5
    live = pd.Series(rng.normal(50.0, 10.0, 5_000))
    found = measured(reference, live, "number")
    assert 0.65 < found["median_shift"] < 0.8
    assert re.fullmatch(r"median 49\.\d+ from 39\.\d+, \+0\.\d+ IQR", found["text"]), found["text"]


def test_a_number_that_is_mostly_one_value_is_measured_in_standard_deviations():
    reference = pd.Series([0.0] * 90 + list(range(1, 11)), dtype=float)
    found = measured(reference, pd.Series([0.0] * 50 + [5.0] * 50), "number")
    assert found["text"].endswith(" sd")


def test_a_category_cannot_write_a_line_of_its_own():
    fake = "ok\nFIRING critical: db down\x1b[2J\u202e"
    found = measured(pd.Series(["a"] * 10, dtype=object), pd.Series([fake] * 10, dtype=object), "string")
    assert "\n" not in found["text"] and "\x1b" not in found["text"] and "\u202e" not in found["text"]
    assert found["category"] == "ok\\u000aFIRING critical: db down\\u001b[2J\\u202e"


def test_numbers_too_large_for_a_median_have_no_effect_rather_than_an_infinite_one():
    # The median of an even count of 1e308 is their mean, which overflows to inf.
    assert measured(pd.Series([-1e308] * 100), pd.Series([1e308] * 100), "number") is None


def test_a_spread_that_grew_is_said_when_the_median_stayed():
    rng = np.random.default_rng(2)
    reference = pd.Series(rng.normal(0.0, 1.0, 20_000))
    found = measured(reference, pd.Series(rng.normal(0.0, 3.0, 5_000)), "number")
    assert re.fullmatch(r"median -?0\.\d+ from -?0\.\d+, [+-]0\.\d+ IQR; IQR x(2\.9|3|3\.1)", found["text"]), found["text"]
    assert 2.8 < found["spread_ratio"] < 3.2
    assert "spread_ratio" not in measured(reference, pd.Series(rng.normal(0.5, 1.1, 5_000)), "number")


def test_many_new_categories_each_small_are_said_together():
    reference = pd.Series(["a"] * 50 + ["b"] * 50, dtype=object)
    live = pd.Series([f"id-{i}" for i in range(1000)], dtype=object)  # every value new, each 0.1%
    found = measured(reference, live, "string")
    assert found["text"].endswith("; categories the reference never had: 100% of the window"), found["text"]
    one_new = measured(reference, pd.Series(["a"] * 40 + ["b"] * 20 + ["c"] * 40, dtype=object), "string")
    assert one_new["text"] == "'c' from 0% to 40%"  # the new category is the one that moved: said once
