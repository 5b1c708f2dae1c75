"""``METRIC outside reference``: a rule that judges a metric against the range it takes over the
reference's own windows of the live window's size, so a share that moves from hour to hour in the
reference does not alarm where a fixed threshold does, and one far outside that range does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from factories import T0, live_frame, reference_frame, write_project
from test_drift_bad_values import MODEL, stored

from monitor.checks import CHECKS, bands
from monitor.checks.base import Window
from monitor.checks.data_quality import DataQualitySpec
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.message import AlertMessage, format_number
from monitor.sources.reference import Reference
from monitor.storage.tables import Alert, Notification

CHECK = "feature-drift"  # the name run_check evaluates
HOURS = 24


def hourly_reference(rng: np.random.Generator, shares: tuple[float, float] = (0.02, 0.10)) -> pd.DataFrame:
    """A day of rows, 1,000 an hour, whose share of missing amounts moves on its own within ``shares``."""
    hours = []
    for hour in range(HOURS):
        frame = reference_frame(1000, seed=100 + hour)
        share = rng.uniform(*shares)
        frame.loc[rng.random(1000) < share, "amount"] = np.nan
        frame["created_at"] = [T0 - timedelta(days=2) + timedelta(hours=hour, seconds=3.6 * i) for i in range(1000)]
        hours.append(frame)
    return pd.concat(hours, ignore_index=True)


def with_missing(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[np.random.default_rng(seed).random(len(frame)) < share, "amount"] = np.nan
    return frame


def quality_check(*rules: str) -> dict:
    return {"name": CHECK, "kind": "data_quality", "every": "15m", "window": "1h",
            "alert": [{"when": rule, "severity": "warning"} for rule in rules]}  # fmt: skip


def run_on(tmp_path, engine, reference: pd.DataFrame, live: pd.DataFrame, check: dict):
    """One run of ``check`` by the real evaluator at T0, over ``live``, with ``reference`` (timestamped
    by the source's ``created_at``) as the model's reference."""
    project = Project.load(write_project(tmp_path, live=live, checks=[check]))
    reference.to_parquet(tmp_path / "data" / "reference.parquet")
    model = project.checks.models[MODEL]
    return Evaluator(engine, project.config, FixedClock(T0)).run(model, model.check(CHECK))


def band_of(result, feature: str) -> tuple[float, float]:
    [value] = [v for v in result.evaluation.values if (v.metric, v.feature) == ("missing_share", feature)]
    assert value.band is not None
    return value.band


def test_a_share_within_the_references_hour_to_hour_range_is_quiet_where_a_fixed_threshold_fires(tmp_path, sqlite_engine):
    reference = hourly_reference(np.random.default_rng(1))
    live = with_missing(live_frame(1200), 0.08, seed=3)  # 8%: as missing as a busy hour of the reference
    check = quality_check("missing_share outside reference", "missing_share > 0.05")
    result = run_on(tmp_path, sqlite_engine, reference, live, check)
    low, high = band_of(result, "amount")
    assert low < 0.08 < high and high < 0.2  # the reference's own spread, not all of 0-100%
    firing = {(a["rule"], a["feature"]) for a in stored(sqlite_engine, Alert) if a["state"] == "firing"}
    assert firing == {("missing_share > 0.05", "amount")}
    [ranges] = [r for r in result.evaluation.evidence["reference_ranges"] if r["feature"] == "amount"]
    assert (ranges["how"], ranges["windows"], ranges["k"], ranges["range"]) == ("time", HOURS, 3.0, [low, high])


def test_a_share_far_outside_the_references_range_fires_and_the_message_gives_the_range(tmp_path, sqlite_engine):
    reference = hourly_reference(np.random.default_rng(1))
    live = with_missing(live_frame(1200), 0.30, seed=4)
    result = run_on(tmp_path, sqlite_engine, reference, live, quality_check("missing_share outside reference"))
    assert result.outcome == "breach"
    [alert] = stored(sqlite_engine, Alert)  # the other features: no missing value, in the reference either
    low, high = band_of(result, "amount")
    assert (alert["feature"], alert["state"], alert["threshold"]) == ("amount", "firing", high)
    [note] = stored(sqlite_engine, Notification)
    text = AlertMessage.from_dict(note["payload"]).text()
    assert (
        f"(threshold {format_number(high)}, the top of its reference range {format_number(low)} to {format_number(high)})" in text
    )


def test_a_share_the_reference_never_has_gets_a_band_of_a_few_rows_not_of_one_value():
    frame = reference_frame(5000, seed=2)  # no missing value at all, and no time: bootstrap
    reference = Reference(Path("reference.parquet"), frame)
    spec = DataQualitySpec.model_validate(quality_check("missing_share outside reference"))
    kind = CHECKS["data_quality"]
    live = live_frame(1000, seed=5)
    live.loc[:1, "amount"] = np.nan  # 2 of 1,000 rows: within k (3) rows' worth
    evaluation = bands.evaluate(kind, spec, Window(T0 - timedelta(hours=1), T0, live), reference, ["amount", "country"])
    amount = next(v for v in evaluation.values if (v.metric, v.feature) == ("missing_share", "amount"))
    assert amount.value == 0.002 and amount.band is not None
    low, high = amount.band
    assert low == 0.0 and 0.002 < high <= 0.004
    [how] = {r["how"] for r in evaluation.evidence["reference_ranges"]}
    assert how == "bootstrap"


def test_a_share_that_falls_is_past_the_bottom_for_outside_but_not_past_the_top(tmp_path, sqlite_engine):
    """``missing_share > reference range`` is for a share that is bad when it grows: a window with no
    missing value at all is outside the reference's 8-12%, and not an alert of that rule."""
    reference = hourly_reference(np.random.default_rng(1), (0.08, 0.12))
    live = live_frame(1200)  # no missing amount
    check = quality_check("missing_share > reference range", "missing_share outside reference")
    run_on(tmp_path, sqlite_engine, reference, live, check)
    firing = {(a["rule"], a["feature"]) for a in stored(sqlite_engine, Alert) if a["state"] == "firing"}
    assert firing == {("missing_share outside reference", "amount")}


def test_models_sharing_a_reference_file_each_get_the_range_of_their_own_features():
    frame = reference_frame(5000, seed=2)
    frame.loc[np.random.default_rng(3).random(5000) < 0.3, "country"] = None
    reference = Reference(Path("reference.parquet"), frame)
    spec = DataQualitySpec.model_validate(quality_check("missing_share > reference range"))
    kind, window = CHECKS["data_quality"], Window(T0 - timedelta(hours=1), T0, live_frame(1000, seed=5))
    first = bands.evaluate(kind, spec, window, reference, ["amount"])
    second = bands.evaluate(kind, spec, window, reference, ["amount", "country"])  # the same file, another model
    assert {r["feature"] for r in first.evidence["reference_ranges"]} == {"amount"}
    country = next(r for r in second.evidence["reference_ranges"] if r["feature"] == "country")
    low, high = country["range"]
    assert low < 0.3 < high and "no_reference_range" not in second.evidence


def test_a_class_the_reference_never_predicted_has_a_range_of_a_few_rows_and_fires():
    from monitor.checks.prediction_drift import PredictionDriftSpec
    from monitor.sources.base import PREDICTION

    rng = np.random.default_rng(4)
    frame = reference_frame(4000, seed=6).assign(decision=rng.choice(["legit", "fraud"], 4000, p=[0.9, 0.1]))
    reference = Reference(Path("reference.parquet"), frame, prediction="decision")
    live = live_frame(2000, seed=7)
    live[PREDICTION] = rng.choice(["legit", "fraud", "review"], 2000, p=[0.5, 0.1, 0.4])  # "review" is new
    spec = PredictionDriftSpec.model_validate(
        {
            "name": "pred",
            "kind": "prediction_drift",
            "every": "1h",
            "window": "1h",
            "alert": [{"when": "class_share > reference range"}],
        }
    )
    evaluation = bands.evaluate(CHECKS["prediction_drift"], spec, Window(T0 - timedelta(hours=1), T0, live), reference, [])
    review = next(v for v in evaluation.values if (v.metric, v.feature) == ("class_share", "review"))
    assert review.band is not None
    low, high = review.band
    assert low == 0.0 and 0 < high <= 3 / 2000 * 1.1  # k rows' worth, at the window's size bucket
    assert review.value > high
