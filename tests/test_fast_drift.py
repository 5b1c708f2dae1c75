"""The fast drift path gives evidently's numbers: every score within 1e-9 of a plain Report's
(``DataDriftTable`` through ``monitor.checks.drift.drift_table``), every verdict, test name and
threshold equal, on data sets that take each of evidently's branches:

- numbers only, more than 1,000 reference rows (Wasserstein), drifted and not;
- with missing and infinite values on both sides;
- a categorical column with categories the reference never had (Jensen-Shannon), and a number
  column of few values (tested as categories);
- under 1,000 reference rows, where evidently switches to K-S, chi-square and the Z-test;
- each method written out (``method: ks`` and the others), with and without a threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.checks.drift import drift_table
from monitor.checks.fast_drift import TESTS, PreparedColumn, column_drift, computes


def frames(rows_reference: int, rows_current: int, seed: int, *, shift: float = 0.0, missing: float = 0.0):
    rng = np.random.default_rng(seed)

    def side(rows: int, moved: float) -> dict[str, pd.Series]:
        out = {
            "amount": pd.Series(rng.lognormal(3.0 + moved, 1.0, rows)),
            "age": pd.Series(rng.integers(18, 90, rows).astype(float)),
            "score": pd.Series(rng.normal(moved, 1.0, rows)),
            "level": pd.Series(
                rng.choice([1.0, 2.0, 3.0, 4.0], rows, p=[0.4, 0.3, 0.2, 0.1] if not moved else [0.1, 0.2, 0.3, 0.4])
            ),
            "flag": pd.Series(rng.choice([0.0, 1.0], rows, p=[0.7, 0.3] if not moved else [0.5, 0.5])),
            "country": pd.Series(rng.choice(["US", "DE", "FR", "GB"] + (["BR", "IN"] if moved else []), rows), dtype=object),
            "device": pd.Series(rng.choice(["ios", "android"], rows, p=[0.5, 0.5] if not moved else [0.8, 0.2]), dtype=object),
        }
        if missing:
            for name, series in out.items():
                holes = rng.random(rows) < missing
                if series.dtype == object:
                    out[name] = series.where(~holes, None)
                else:
                    out[name] = series.where(~holes, np.nan)
                    out[name].iloc[: max(1, rows // 500)] = np.inf  # infinities too, left out as evidently does
        return out

    return side(rows_reference, 0.0), side(rows_current, shift)


KINDS = {"amount": "number", "age": "number", "score": "number", "level": "number", "flag": "number",
         "country": "string", "device": "string"}  # fmt: skip

DATA_SETS = {
    "numbers, large reference, no drift": dict(rows_reference=5000, rows_current=2000, seed=1),
    "numbers, large reference, drifted": dict(rows_reference=5000, rows_current=2000, seed=2, shift=0.5),
    "missing and infinite values": dict(rows_reference=4000, rows_current=1500, seed=3, shift=0.2, missing=0.1),
    "unseen categories": dict(rows_reference=3000, rows_current=800, seed=4, shift=1.0),
    "small reference": dict(rows_reference=600, rows_current=400, seed=5, shift=0.3),
    "small reference, missing values": dict(rows_reference=900, rows_current=300, seed=6, shift=0.0, missing=0.05),
}


def assert_equal_to_evidently(reference: dict, current: dict, kinds: dict, method=None, threshold=None) -> set[str]:
    expected = drift_table(method, threshold, reference, current, kinds)
    tests = set()
    for name, kind in kinds.items():
        got = column_drift(PreparedColumn.of(reference[name], kind), current[name], method, threshold)
        want = expected[name]
        assert got["stattest_name"] == want["stattest_name"], name
        assert got["drift_score"] == pytest.approx(float(want["drift_score"]), rel=1e-9, abs=1e-9), name
        assert got["drift_detected"] == bool(want["drift_detected"]), name
        assert got["stattest_threshold"] == pytest.approx(float(want["stattest_threshold"])), name
        tests.add(want["stattest_name"])
    return tests


def test_evidently_chooses_its_test_and_the_fast_path_computes_the_same_numbers():
    seen = set()
    for case in DATA_SETS.values():
        reference, current = frames(**case)
        seen |= assert_equal_to_evidently(reference, current, KINDS)
    # Every branch of evidently's choice was taken.
    assert seen == {name for name, _ in TESTS.values()}


@pytest.mark.parametrize("method", sorted(TESTS))
@pytest.mark.parametrize("threshold", [None, 0.2])
def test_each_method_written_out_gives_evidentlys_numbers(method, threshold):
    reference, current = frames(rows_reference=1500, rows_current=700, seed=7, shift=0.3, missing=0.02)
    fits = {"wasserstein": "number", "ks": "number", "chisquare": "string", "z": "string", "jensenshannon": None}[method]
    kinds = {n: k for n, k in KINDS.items() if fits is None or k == fits}
    if method == "z":  # a two-valued column: the Z-test compares one share
        kinds = {"device": "string"}
    assert_equal_to_evidently(reference, current, kinds, method, threshold)


def test_the_names_and_thresholds_are_evidentlys():
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    for method, (name, threshold) in TESTS.items():
        kind = ColumnType.Categorical if method in ("chisquare", "z") else ColumnType.Numerical
        stattest = get_registered_stattest(method, kind)
        assert (stattest.display_name, stattest.default_threshold) == (name, threshold)


def test_a_method_the_fast_path_does_not_compute_goes_to_the_report():
    assert computes(None) and computes("psi") is False and computes("ks")


def test_an_empty_side_is_refused_as_evidently_refuses_it():
    reference = PreparedColumn.of(pd.Series([1.0, 2.0, 3.0]), "number")
    with pytest.raises(ValueError, match="current"):
        column_drift(reference, pd.Series([np.nan, np.inf]), None, None)
    with pytest.raises(ValueError, match="reference"):
        column_drift(PreparedColumn.of(pd.Series([np.nan]), "number"), pd.Series([1.0]), None, None)


def test_a_drift_check_is_warmed_up_and_evaluated_without_importing_evidently(tmp_path):
    """evidently's import takes seconds: the daemon's start waits for no check that does not need it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = """
import sys
from monitor.checks.drift import KIND
from monitor.checks.fast_drift import PreparedColumn, column_drift
import pandas as pd
KIND.warm_up()
column_drift(PreparedColumn.of(pd.Series([1.0, 2.0, 3.0] * 400), "number"), pd.Series([1.5, 2.5] * 300), None, None)
print(sorted(m for m in sys.modules if m.startswith("evidently")))
"""
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "reference, current, method, threshold",
    [
        # A Wasserstein score exactly on evidently's default threshold: rounded as scipy rounds it.
        ([0.0, 2.0] * 501, [1.8, 0.2, 0.3, 1.8, 0.0, 0.1, 2.0, 2.0, 2.0, 0.0], None, None),
        # A Jensen-Shannon score on its threshold: the values summed in the order evidently sums them.
        ([np.nan, 0.730552259177828, 0.9286371722772211, np.nan, 0.730552259177828, 0.25440834662339884,
          0.9286371722772211, np.nan, 0.3501546609675086, 0.730552259177828],
         [0.9286371722772211, 0.730552259177828, 0.730552259177828, 0.25440834662339884, 0.25440834662339884,
          0.3501546609675086, 0.25440834662339884], "jensenshannon", 0.23812132986498863),
        # Large values far apart (a score that overflowed when summed in whole numbers).
        (list(np.arange(1001.0)), [*np.arange(10.0), 2e306], None, None),
    ],
    ids=["wasserstein on its threshold", "jensen-shannon on its threshold", "no overflow"],
)  # fmt: skip
def test_a_score_on_its_threshold_falls_on_evidentlys_side_of_it(reference, current, method, threshold):
    """Found by fuzzing against the Report: equal to the last bit where the verdict turns on it."""
    ref, cur = pd.Series(reference, dtype=float), pd.Series(current, dtype=float)
    got = column_drift(PreparedColumn.of(ref, "number"), cur, method, threshold)
    want = drift_table(method, threshold, {"c": ref}, {"c": cur}, {"c": "number"})["c"]
    assert (got["drift_score"], got["drift_detected"]) == (float(want["drift_score"]), bool(want["drift_detected"]))


def test_a_method_is_refused_for_a_column_it_does_not_fit_as_evidently_refuses_it():
    with pytest.raises(ValueError, match="does not fit"):
        column_drift(
            PreparedColumn.of(pd.Series([True, False] * 10, dtype=object), "boolean"),
            pd.Series([True] * 5, dtype=object),
            "wasserstein",
            None,
        )
    with pytest.raises(ValueError, match="does not fit"):
        column_drift(PreparedColumn.of(pd.Series([1.0, 2.0, 3.0]), "number"), pd.Series([1.0]), "chisquare", None)
