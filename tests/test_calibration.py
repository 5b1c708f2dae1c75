"""``threshold: auto``: a feature drifts when its score is outside what the reference's own windows of the
live window's size score, so a reference that moves from month to month does not alarm every month, a
window larger than the reference still has a limit, and a shift too small for evidently's fixed 0.1 but
far outside the reference's own noise is found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from monitor.checks.base import Window
from monitor.checks.calibration import MIN_TIME_WINDOWS, size_bucket
from monitor.checks.drift import KIND, DriftSpec
from monitor.notifiers.message import format_number
from monitor.sources.reference import Reference

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NUMBERS = [f"n{i}" for i in range(5)]
FEATURES = [*NUMBERS, "plan"]
PLANS = np.array(["free", "basic", "pro", "team"], dtype=object)


def month(rng: np.random.Generator, rows: int, start: datetime, shift: float = 0.0) -> pd.DataFrame:
    """A month of rows whose level moves on its own: each number's mean by a month's offset (a third of
    its spread), and the plans' shares with it."""
    offsets = rng.normal(0.0, 0.35, len(NUMBERS))
    shares = rng.dirichlet([40, 30, 20, 10])
    frame = pd.DataFrame({name: rng.normal(offset, 1.0, rows) for name, offset in zip(NUMBERS, offsets, strict=True)})
    frame["n0"] += shift
    frame["plan"] = PLANS[rng.choice(len(PLANS), rows, p=shares)]
    frame["ts"] = [start + timedelta(minutes=i) for i in range(rows)]
    return frame


def reference_of(frame: pd.DataFrame, timestamp: str | None = "ts") -> Reference:
    return Reference(Path("reference.parquet"), frame.reset_index(drop=True), timestamp=timestamp)


def spec(**keys) -> DriftSpec:
    return DriftSpec(name="feature-drift", kind="drift", every="1h", window="30d", min_rows=30, **keys)


def drift_share(check: DriftSpec, frame: pd.DataFrame, reference: Reference) -> tuple[float, dict]:
    evaluation = KIND.evaluate(check, Window(T0, T0, frame), reference, FEATURES)
    assert evaluation.outcome == "ok", evaluation.error
    values = {(v.metric, v.feature): v.value for v in evaluation.values}
    return values[("drift_share", "")], evaluation.evidence


def test_a_reference_that_moves_month_to_month_does_not_alarm_every_month_where_fixed_thresholds_do():
    rng = np.random.default_rng(7)
    reference = reference_of(pd.concat([month(rng, 2000, T0 + timedelta(days=30 * m)) for m in range(12)]))
    live = [month(rng, 2000, T0 + timedelta(days=30 * (12 + m))) for m in range(25)]
    fixed = [drift_share(spec(), window, reference)[0] for window in live]
    auto = [drift_share(spec(threshold="auto"), window, reference)[0] for window in live]
    # The rule most teams write: drift_share > 0.3. Evidently's defaults alarm nearly every clean month;
    # calibrated, at most one in 25 (12 reference months tell a feature's spread only roughly).
    assert sum(share > 0.3 for share in fixed) >= 20
    assert sum(share <= 0.3 for share in auto) >= 24
    _, evidence = drift_share(spec(threshold="auto"), live[0], reference)
    calibrated = evidence["features"][0]["calibrated"]
    assert calibrated["how"] == "time" and calibrated["windows"] == 12 and calibrated["k"] == 3.0
    low, high = calibrated["range"]
    assert 0 <= low <= high


def test_a_small_shift_beyond_the_references_own_noise_is_found_where_the_fixed_threshold_is_not_crossed():
    rng = np.random.default_rng(11)
    steady = pd.DataFrame({name: rng.normal(0.0, 1.0, 100_000) for name in NUMBERS})
    steady["plan"] = PLANS[rng.integers(0, len(PLANS), 100_000)]
    reference = reference_of(steady, timestamp=None)
    window = pd.DataFrame({name: rng.normal(0.0, 1.0, 5000) for name in NUMBERS})
    window["n0"] += 0.08  # a twelfth of its standard deviation
    window["plan"] = PLANS[rng.integers(0, len(PLANS), 5000)]
    _, fixed = drift_share(spec(), window, reference)
    _, auto = drift_share(spec(threshold="auto"), window, reference)
    by_feature = {f["feature"]: f for f in fixed["features"]}
    assert by_feature["n0"]["score"] < 0.1 and not by_feature["n0"]["drifted"]
    calibrated = {f["feature"]: f for f in auto["features"]}
    assert calibrated["n0"]["drifted"] and calibrated["n0"]["calibrated"]["how"] == "bootstrap"
    assert calibrated["n0"]["score"] == by_feature["n0"]["score"]  # the same number, evidently's, judged otherwise
    assert [f for f, found in calibrated.items() if found["drifted"]] == ["n0"]


def test_half_a_standard_deviation_in_a_segment_of_the_rows_is_found_where_the_fixed_threshold_is_not_crossed():
    """A pure shift of d standard deviations has a normed Wasserstein distance of d, so evidently's 0.1
    finds half a standard deviation when every row moves; when a segment (15% of the rows: a new
    client, one region's pipeline) moves by half, the distance is 0.075, and only the calibrated limit
    at 5,000 rows sees it."""
    rng = np.random.default_rng(19)
    steady = pd.DataFrame({name: rng.normal(0.0, 1.0, 100_000) for name in NUMBERS})
    steady["plan"] = PLANS[rng.integers(0, len(PLANS), 100_000)]
    reference = reference_of(steady, timestamp=None)
    found = {"fixed": 0, "auto": 0}
    for trial in range(5):
        window = pd.DataFrame({name: rng.normal(0.0, 1.0, 5000) for name in NUMBERS})
        window["plan"] = PLANS[rng.integers(0, len(PLANS), 5000)]
        window.loc[: 5000 * 0.15 - 1, "n0"] += 0.5  # the segment: 750 rows
        for mode, check in (("fixed", spec()), ("auto", spec(threshold="auto"))):
            _, evidence = drift_share(check, window, reference)
            drifted = [f["feature"] for f in evidence["features"] if f["drifted"]]
            assert set(drifted) <= {"n0"}, (trial, mode, drifted)
            found[mode] += drifted == ["n0"]
    assert found == {"fixed": 0, "auto": 5}


def test_a_window_larger_than_the_reference_still_has_a_working_limit():
    rng = np.random.default_rng(3)
    small = pd.DataFrame({name: rng.normal(0.0, 1.0, 400) for name in NUMBERS})
    small["plan"] = PLANS[rng.integers(0, len(PLANS), 400)]
    small["ts"] = [T0 + timedelta(minutes=i) for i in range(400)]
    reference = reference_of(small)
    clean = pd.DataFrame({name: rng.normal(0.0, 1.0, 5000) for name in NUMBERS})
    clean["plan"] = PLANS[rng.integers(0, len(PLANS), 5000)]
    share, evidence = drift_share(spec(threshold="auto"), clean, reference)
    assert share == 0.0
    for feature in evidence["features"]:
        assert feature["calibrated"]["how"] == "bootstrap"  # not 8 windows of 5,000 rows in 400
        assert feature["threshold"] > 0  # never a zero limit, as NannyML's when the window outgrows it
    shifted = clean.assign(n1=clean["n1"] + 1.0)
    share, evidence = drift_share(spec(threshold="auto"), shifted, reference)
    assert [f["feature"] for f in evidence["features"] if f["drifted"]] == ["n1"]


@pytest.mark.parametrize(
    "reference_rows, test, needed", [(2000, "a fixed distance threshold", 1000), (600, "a p-value test", 100)]
)
def test_windows_of_fifty_rows_drawn_from_the_reference_give_no_drift_under_either_default(reference_rows, test, needed):
    """Evidently takes distances above 1,000 reference rows and p-value tests up to it; 50 clean rows are
    too few for either's fixed threshold (insufficient_data: a rule sees no value), and auto calibrates
    its limit at 50 rows."""
    rng = np.random.default_rng(13)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, reference_rows) for name in NUMBERS})
    frame["plan"] = PLANS[rng.integers(0, len(PLANS), reference_rows)]
    reference = reference_of(frame, timestamp=None)
    defaults = DriftSpec(name="feature-drift", kind="drift", every="1h", window="1h")  # min_rows unset
    windows = [frame.sample(50, random_state=seed).reset_index(drop=True) for seed in range(20)]
    for window in windows:
        fixed = KIND.evaluate(defaults, Window(T0, T0, window), reference, FEATURES)
        assert (fixed.outcome, fixed.values) == ("insufficient_data", [])
        assert {(f["feature"], f["values"], f["needed"], f["for"]) for f in fixed.evidence["insufficient"]} == {
            (name, 50, needed, test) for name in FEATURES
        }
        assert f"n0 50 of {needed:,} ({test})" in fixed.error
    auto = defaults.model_copy(update={"threshold": "auto"})
    shares = [drift_share(auto, window, reference)[0] for window in windows]
    assert max(shares) <= 0.3, shares


def test_a_feature_with_enough_values_is_judged_and_one_without_is_named_insufficient():
    rng = np.random.default_rng(17)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, 5000) for name in NUMBERS})
    frame["plan"] = PLANS[rng.integers(0, len(PLANS), 5000)]
    reference = reference_of(frame, timestamp=None)
    window = frame.sample(1500, random_state=1).reset_index(drop=True)
    window.loc[600:, "n4"] = np.nan  # 600 values of n4: under the 1,000 a fixed distance needs
    defaults = DriftSpec(name="feature-drift", kind="drift", every="1h", window="1h")
    evaluation = KIND.evaluate(defaults, Window(T0, T0, window), reference, FEATURES)
    assert evaluation.outcome == "ok"
    values = {(v.metric, v.feature): v.value for v in evaluation.values}
    assert values[("insufficient_features", "")] == 1.0 and values[("drift_share", "")] == 0.0
    assert {f["feature"] for f in evaluation.evidence["features"]} == set(FEATURES) - {"n4"}
    assert evaluation.evidence["insufficient"] == [
        {"feature": "n4", "type": "number", "values": 600, "needed": 1000, "for": "a fixed distance threshold"}
    ]
    # min_rows set on the check is its author's minimum, for every test: n4 is judged on its 600 values
    accepted = DriftSpec(**{**defaults.model_dump(exclude_unset=True), "min_rows": 100})
    judged = KIND.evaluate(accepted, Window(T0, T0, window), reference, FEATURES)
    assert "insufficient" not in judged.evidence
    assert {f["feature"] for f in judged.evidence["features"]} == set(FEATURES)


def test_the_limit_is_worked_out_once_per_window_size():
    rng = np.random.default_rng(5)
    reference = reference_of(pd.concat([month(rng, 1000, T0 + timedelta(days=30 * m)) for m in range(MIN_TIME_WINDOWS)]))
    window = month(rng, 1000, T0 + timedelta(days=400))
    first = drift_share(spec(threshold="auto"), window, reference)
    again = drift_share(spec(threshold="auto"), window.iloc[:1040], reference)  # 1,040 rows: the same bucket
    assert size_bucket(1000) == size_bucket(1040)
    assert first == again
    limits = [key for key in reference._worked_out if key[0] == "drift limit"]
    assert len(limits) == len(FEATURES)


def test_calibration_is_refused_where_it_cannot_apply():
    with pytest.raises(ValidationError, match="applies to threshold: auto and to rules on the reference range only"):
        spec(calibration={"k": 2})
    with pytest.raises(ValidationError, match="would take a Report per reference window"):
        spec(threshold="auto", method="psi")
    assert spec(threshold="auto", method="ks", calibration={"k": 2.5, "windows": 20}).calibration.k == 2.5


def test_the_alert_says_the_features_own_reference_range_and_how_big_the_change_is(tmp_path, sqlite_engine):
    from factories import live_frame
    from test_drift_bad_values import drift_check, run_check, stored

    from monitor.notifiers.message import AlertMessage
    from monitor.storage.tables import Notification

    result = run_check(tmp_path, sqlite_engine, live_frame(600, drift=True), drift_check("drift_share > 0.3", threshold="auto"))
    assert result.outcome == "breach"
    [note] = stored(sqlite_engine, Notification)
    text = AlertMessage.from_dict(note["payload"]).text()
    assert "drifted features, worst first: " in text
    drifted = [f for f in result.evaluation.evidence["features"] if f["drifted"]]
    first = drifted[0]
    low, high = first["calibrated"]["range"]
    rows = first["calibrated"]["rows"]
    assert f"{first['feature']} ({first['method']} " in text
    assert (
        f"its reference range at {rows:,} rows is {format_number(low)}-{format_number(high)}; {first['effect']['text']}" in text
    )


def test_prediction_drift_calibrates_its_predictions_too():
    from monitor.checks.prediction_drift import KIND as PREDICTION_DRIFT
    from monitor.checks.prediction_drift import PredictionDriftSpec
    from monitor.sources.base import PREDICTION

    check = PredictionDriftSpec(name="prediction-drift", kind="prediction_drift", every="1h", window="30d", threshold="auto")
    fixed = PredictionDriftSpec(name="prediction-drift", kind="prediction_drift", every="1h", window="30d")
    alarms = {"auto": 0, "fixed": 0}
    for seed in range(5):  # five references: one year of predictions whose level moves month to month
        rng = np.random.default_rng(seed)
        months = [
            pd.DataFrame({"score": rng.normal(rng.normal(0.0, 0.3), 1.0, 1000),
                          "ts": [T0 + timedelta(days=30 * m, minutes=i) for i in range(1000)]})
            for m in range(12)
        ]  # fmt: skip
        reference = Reference(Path("reference.parquet"), pd.concat(months, ignore_index=True), prediction="score", timestamp="ts")

        def drifted(spec, window: pd.DataFrame, reference=reference) -> bool:
            evaluation = PREDICTION_DRIFT.evaluate(spec, Window(T0, T0, window), reference, [])
            assert evaluation.outcome == "ok", evaluation.error
            return bool(next(v.value for v in evaluation.values if v.metric == "drifted"))

        for _ in range(20):  # clean months of the same process
            window = pd.DataFrame({PREDICTION: rng.normal(rng.normal(0.0, 0.3), 1.0, 1000)})
            alarms["auto"] += drifted(check, window)
            alarms["fixed"] += drifted(fixed, window)
        assert drifted(check, pd.DataFrame({PREDICTION: rng.normal(2.0, 1.0, 1000)}))  # a real shift is still one
    assert alarms["fixed"] >= 60  # of 100: evidently's 0.1
    assert alarms["auto"] <= 5


def test_a_window_over_max_rows_is_judged_on_a_seeded_sample_that_the_run_names():
    rng = np.random.default_rng(2)
    steady = pd.DataFrame({name: rng.normal(0.0, 1.0, 20_000) for name in NUMBERS})
    steady["plan"] = PLANS[rng.integers(0, len(PLANS), 20_000)]
    reference = reference_of(steady, timestamp=None)
    window = steady.sample(n=3000, random_state=1).reset_index(drop=True)
    check = spec(max_rows=1000)
    first = KIND.evaluate(check, Window(T0, T0, window), reference, FEATURES)
    again = KIND.evaluate(check, Window(T0, T0, window), reference, FEATURES)
    assert first.evidence["sampled"] == {"rows": 1000, "of": 3000, "seed": int(T0.timestamp())}
    assert first.sample_size == 3000  # the window's rows, as its count says
    for feature in first.evidence["features"]:  # what each test compared, on each side
        assert feature["sample_sizes"] == {"window": 1000, "reference": 20_000}
    assert first.values == again.values  # the same window, the same sample
    whole = KIND.evaluate(spec(), Window(T0, T0, window), reference, FEATURES)
    assert "sampled" not in whole.evidence
    with pytest.raises(ValidationError, match="greater than or equal to 1000"):
        spec(max_rows=10)


def test_a_p_value_test_is_given_a_seeded_sample_of_a_large_window_so_a_difference_too_small_to_matter_does_not_drift():
    from monitor.checks.drift import P_VALUE_VALUES
    from monitor.checks.fast_drift import PreparedColumn, column_drift

    rng = np.random.default_rng(21)
    reference = reference_of(pd.DataFrame({"n0": rng.normal(0.0, 1.0, 100_000)}), timestamp=None)
    window = pd.DataFrame({"n0": rng.normal(0.03, 1.0, 100_000)})  # a thirtieth of a standard deviation
    ks = spec(method="ks")
    evaluation = KIND.evaluate(ks, Window(T0, T0, window), reference, ["n0"])
    [feature] = evaluation.evidence["features"]
    seed = int(T0.timestamp())
    assert feature["thinned"] == {"values": P_VALUE_VALUES, "of": 100_000, "seed": seed}
    assert feature["sample_sizes"] == {"window": P_VALUE_VALUES, "reference": 100_000}
    assert not feature["drifted"]
    # the score is K-S's own on that sample; on all 100,000 values, the same test calls it drift
    sample = window["n0"].sample(n=P_VALUE_VALUES, random_state=seed).reset_index(drop=True)
    prepared = PreparedColumn.of(reference.frame["n0"], "number")
    assert feature["score"] == column_drift(prepared, sample, "ks", None)["drift_score"]
    assert column_drift(prepared, window["n0"], "ks", None)["drift_detected"]
    # a distance, or a calibrated threshold, sees every value
    for other in (spec(method="wasserstein"), spec(method="ks", threshold="auto")):
        [feature] = KIND.evaluate(other, Window(T0, T0, window), reference, ["n0"]).evidence["features"]
        assert "thinned" not in feature and feature["sample_sizes"]["window"] == 100_000


def test_periods_larger_than_the_live_window_are_drawn_down_to_its_size():
    """A reference of 20 days of 10,000 rows, checked daily over windows of 100 rows: each day is
    scored at 100 rows, as the live window is, not at its 10,000."""
    rng = np.random.default_rng(4)
    days = pd.DataFrame({name: rng.normal(0.0, 1.0, 200_000) for name in NUMBERS})
    days["plan"] = PLANS[rng.integers(0, len(PLANS), 200_000)]
    days["ts"] = [T0 + timedelta(seconds=8.64 * i) for i in range(200_000)]
    reference = reference_of(days)
    check = DriftSpec(name="d", kind="drift", every="1h", window="1d", threshold="auto")
    alarms = 0
    for _ in range(20):
        window = pd.DataFrame({name: rng.normal(0.0, 1.0, 100) for name in NUMBERS})
        window["plan"] = PLANS[rng.integers(0, len(PLANS), 100)]
        evaluation = KIND.evaluate(check, Window(T0, T0, window), reference, FEATURES)
        alarms += sum(f["drifted"] for f in evaluation.evidence["features"])
        assert {f["calibrated"]["how"] for f in evaluation.evidence["features"]} == {"time"}
    assert alarms <= 6  # of 120 feature verdicts on clean windows


def test_a_feature_that_never_moves_in_the_reference_does_not_alarm_on_one_value_in_two_hundred():
    constant = pd.DataFrame({"n0": [5.0] * 2000, "flag": [True] * 2000})
    reference = reference_of(constant, timestamp=None)
    window = pd.DataFrame({"n0": [5.0] * 199 + [5.1], "flag": [True] * 199 + [False]})
    evaluation = KIND.evaluate(spec(threshold="auto"), Window(T0, T0, window), reference, ["n0", "flag"])
    assert [f["drifted"] for f in evaluation.evidence["features"]] == [False, False]
    assert all(f["threshold"] >= 0.05 for f in evaluation.evidence["features"])
    moved = pd.DataFrame({"n0": [5.0] * 100 + [7.0] * 100, "flag": [True] * 100 + [False] * 100})
    evaluation = KIND.evaluate(spec(threshold="auto"), Window(T0, T0, moved), reference, ["n0", "flag"])
    assert [f["drifted"] for f in evaluation.evidence["features"]] == [True, True]
    assert {f["effect"]["text"] for f in evaluation.evidence["features"]} >= {"'True' from 100% to 50%"}


def test_a_stray_row_years_away_costs_no_span_of_its_own():
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, 5000) for name in NUMBERS})
    frame["plan"] = PLANS[rng.integers(0, len(PLANS), 5000)]
    frame["ts"] = [T0 + timedelta(seconds=i) for i in range(5000)]
    frame.loc[0, "ts"] = datetime(1970, 1, 1, tzinfo=UTC)  # one row of the reference 56 years away
    check = DriftSpec(name="d", kind="drift", every="1m", window="1s", threshold="auto")
    window = frame.iloc[1000:1300].drop(columns="ts").reset_index(drop=True)
    evaluation = KIND.evaluate(check, Window(T0, T0, window), reference_of(frame), FEATURES)
    assert evaluation.outcome == "ok"  # over 1.7 billion seconds: spans only where rows are


def test_the_bootstrap_draws_values_not_rows():
    rng = np.random.default_rng(8)
    values = rng.normal(0.0, 1.0, 20_000)
    full = reference_of(pd.DataFrame({"n0": values}), timestamp=None)
    holes = np.full(200_000, np.nan)
    holes[rng.choice(200_000, 20_000, replace=False)] = values
    sparse = reference_of(pd.DataFrame({"n0": holes}), timestamp=None)
    window = pd.DataFrame({"n0": rng.normal(0.0, 1.0, 1000)})
    limits = [KIND.evaluate(spec(threshold="auto"), Window(T0, T0, window), r, ["n0"]).evidence["features"][0]["threshold"]
              for r in (full, sparse)]  # fmt: skip
    assert limits[1] == pytest.approx(limits[0], rel=0.25)


def test_max_rows_seeds_any_window_start():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, 3000) for name in NUMBERS})
    frame["plan"] = PLANS[rng.integers(0, len(PLANS), 3000)]
    reference = reference_of(frame, timestamp=None)
    before_1970 = datetime(1965, 1, 1, tzinfo=UTC)
    evaluation = KIND.evaluate(spec(max_rows=1000), Window(before_1970, T0, frame), reference, FEATURES)
    assert 0 <= evaluation.evidence["sampled"]["seed"] < 2**32


@pytest.mark.parametrize("threshold", [None, "auto"])
def test_validate_warns_of_a_small_reference_under_evidentlys_choice_and_not_with_auto(tmp_path, capsys, threshold):
    from factories import reference_frame, write_project

    from monitor.cli import main

    check = {"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h",
             **({"threshold": threshold} if threshold else {})}  # fmt: skip
    config = write_project(tmp_path, checks=[check])
    reference_frame(600).to_parquet(tmp_path / "data" / "reference.parquet")
    assert main(["validate", "--config", str(config)]) == 0  # a warning, not a refusal
    out, err = capsys.readouterr()
    assert out.startswith("ok: 1 model(s), 1 check(s) valid")
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    if threshold == "auto":
        assert warnings == []
        return
    where = f"{tmp_path / 'checks' / 'fraud-scorer.yaml'}:18:9: checks[0].kind: "
    assert warnings == [
        f"warning: {where}the reference has at most 1,000 values of 'amount' (600), 'country' (600), 'account_age_days' "
        "(600), so evidently takes p-value tests (K-S, chi-square) that treat it as exact: windows larger than it "
        "drift on most clean runs (docs/drift.md). Write threshold: auto (calibrated, for windows larger than the "
        "reference too), or give a reference of more than 1,000 rows"
    ]


def test_a_reference_too_small_to_calibrate_on_skips_the_feature_with_the_reason():
    rng = np.random.default_rng(23)
    tiny = pd.DataFrame({name: rng.normal(0.0, 1.0, 20) for name in NUMBERS})
    tiny["plan"] = PLANS[rng.integers(0, len(PLANS), 20)]
    window = pd.DataFrame({name: rng.normal(0.0, 1.0, 500) for name in NUMBERS})
    window["plan"] = PLANS[rng.integers(0, len(PLANS), 500)]
    evaluation = KIND.evaluate(spec(threshold="auto"), Window(T0, T0, window), reference_of(tiny, timestamp=None), FEATURES)
    assert evaluation.outcome == "error"  # no feature could be judged: a run that says why, not a verdict
    assert "n0: drift could not be computed: the reference has 20 value(s) of it, too few to calibrate on (30 needed)" in (
        evaluation.error or ""
    )
