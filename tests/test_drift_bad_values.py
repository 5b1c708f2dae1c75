"""One bad value, or one unusable feature, no longer silences a drift check.

- A feature with a few inf values: they are left out (counted in the evidence), its score stays a
  number, the run is stored on SQLite and PostgreSQL, and the feature that did drift alerts.
- ``Evaluation.without_non_finite``: what any check kind produced can be stored; a NaN value is
  dropped and named, and the evidence is JSON.
- A feature with no values, or numbers arriving as text: that feature is skipped, with its reason in
  the evidence and the ``skipped_features`` metric (which rules may name); the others are evaluated.
  With no usable feature the run is ``error``, naming each feature's reason.
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from factories import FEATURES, T0, live_frame, reference_frame, write_project
from sqlalchemy.orm import Session

from monitor.alerting.rules import MetricValue
from monitor.checks.base import Evaluation, Window
from monitor.checks.drift import DriftSpec, evaluate
from monitor.cli import main
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.sources.files import FilesSource, FilesSpec
from monitor.sources.reference import Reference
from monitor.storage.tables import Alert, CheckRun, Metric

MODEL, CHECK = "fraud-scorer", "feature-drift"
START = T0 - timedelta(hours=1)
DRIFT = DriftSpec(name=CHECK, kind="drift", every="15m", window="1h")


def drift_check(*rules: str, **keys) -> dict:
    return {
        "name": CHECK,
        "kind": "drift",
        "every": "15m",
        "window": "1h",
        "alert": [{"when": rule, "severity": "warning"} for rule in rules],
        **keys,
    }


def run_check(tmp_path, engine, live: pd.DataFrame, check: dict):
    """One run of ``check`` over ``live`` by the real evaluator on ``engine``, at T0."""
    project = Project.load(write_project(tmp_path, live=live, checks=[check]))
    assert not project.checks.issues, project.checks.issues
    model = project.checks.models[MODEL]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Evaluator(engine, project.config, FixedClock(T0)).run(model, model.check(CHECK))


def stored(engine, table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table.__table__).order_by(table.__table__.c.id))]


def calm_with_drifted_country(rows: int = 1200) -> pd.DataFrame:
    """Calm rows, but ``country`` from the drifted distribution."""
    live = live_frame(rows)
    live["country"] = live_frame(rows, drift=True)["country"].to_numpy()
    return live


# -- inf values ---------------------------------------------------------------------------------------


def test_inf_values_are_left_out_and_the_drifted_feature_still_alerts(tmp_path, engine):
    live = calm_with_drifted_country()
    live.loc[[3, 50, 120, 300], "amount"] = np.inf
    live.loc[[7, 8], "amount"] = -np.inf
    result = run_check(tmp_path, engine, live, drift_check("drifted == 1"))

    assert result.outcome == "breach", result.evaluation.error
    [run] = stored(engine, CheckRun)
    assert (run["id"], run["outcome"], run["sample_size"]) == (result.run_id, "breach", 1200)
    metrics = {(m["metric"], m["feature"]): m["value"] for m in stored(engine, Metric)}
    assert all(math.isfinite(v) for v in metrics.values())
    assert {f for metric, f in metrics if metric == "drift_score"} == set(FEATURES)
    assert metrics[("drifted", "country")] == 1.0
    assert metrics[("drifted", "amount")] == 0.0  # 394 calm values and 6 left out: not drifted
    evidence = {f["feature"]: f for f in run["evidence"]["features"]}
    assert evidence["amount"]["not_finite"] == 6
    assert evidence["country"]["not_finite"] == 0
    assert run["evidence"]["skipped"] == []

    [alert] = stored(engine, Alert)
    assert (alert["rule"], alert["feature"], alert["state"]) == ("drifted == 1", "country", "firing")


def test_inf_values_in_the_reference_are_left_out_as_missing_ones_are(tmp_path):
    live = live_frame(1200)
    live["created_at"] = pd.to_datetime(live["created_at"], utc=True)
    live.to_parquet(tmp_path / "live.parquet")
    spec = FilesSpec(
        kind="files", path=str(tmp_path / "live.parquet"), timestamp="created_at", id="request_id", features=FEATURES
    )
    frame = FilesSource(spec).read(START, T0)
    with_inf, with_nan = reference_frame(), reference_frame()
    with_inf.loc[[0, 10, 20], "amount"] = [np.inf, -np.inf, np.inf]
    with_nan.loc[[0, 10, 20], "amount"] = np.nan
    scores = []
    for reference in (with_inf, with_nan):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluation = evaluate(DRIFT, Window(START, T0, frame), Reference(tmp_path, reference), FEATURES)
        scores.append({v.feature: v.value for v in evaluation.values if v.metric == "drift_score"})
    assert math.isfinite(scores[0]["amount"])
    assert scores[0] == scores[1]


# -- Evaluation.without_non_finite --------------------------------------------------------------------


def test_without_non_finite_drops_and_names_values_and_makes_the_evidence_json():
    evaluation = Evaluation(
        "ok",
        50,
        [
            MetricValue("drift_score", float("nan"), "amount"),
            MetricValue("drift_score", 0.25, "country"),
            MetricValue("roc_auc", float("inf")),
            MetricValue("rows", 50.0),
        ],
        evidence={
            "features": [{"feature": "amount", "score": np.float64("nan"), "strength": float("-inf"), "rows": np.int64(3)}],
            "bins": np.array([0.5, np.inf]),
            "flags": (np.bool_(True), float("nan")),
            "note": "kept",
        },
    )
    clean = evaluation.without_non_finite()

    assert [(v.metric, v.feature, v.value) for v in clean.values] == [("drift_score", "country", 0.25), ("rows", "", 50.0)]
    assert clean.evidence["not_finite"] == [{"metric": "drift_score", "feature": "amount"}, {"metric": "roc_auc", "feature": ""}]
    assert clean.evidence["features"] == [{"feature": "amount", "score": None, "strength": None, "rows": 3}]
    assert clean.evidence["bins"] == [0.5, None]
    assert clean.evidence["flags"] == [True, None]
    assert clean.evidence["note"] == "kept"
    json.dumps(clean.evidence, allow_nan=False)  # strict JSON: no NaN, no Infinity, no numpy types
    assert (clean.outcome, clean.sample_size, clean.error) == ("ok", 50, None)
    assert len(evaluation.values) == 4 and "not_finite" not in evaluation.evidence  # a copy


def test_what_without_non_finite_returns_is_stored_on_sqlite_and_postgresql(engine):
    evaluation = Evaluation(
        "ok",
        50,
        [MetricValue("drift_score", float("nan"), "amount"), MetricValue("drift_share", 0.5)],
        evidence={"features": [{"feature": "amount", "score": float("nan"), "strength": float("inf")}]},
    ).without_non_finite()
    with Session(engine) as session:
        run = CheckRun(
            model=MODEL,
            check=CHECK,
            kind="drift",
            started=T0,
            finished=T0,
            window_start=START,
            window_end=T0,
            outcome=evaluation.outcome,
            sample_size=evaluation.sample_size,
            evidence=evaluation.evidence,
        )
        session.add(run)
        session.flush()
        session.add_all(
            Metric(
                time=T0,
                model=MODEL,
                check=CHECK,
                metric=v.metric,
                feature=v.feature,
                value=v.value,
                window_start=START,
                window_end=T0,
                sample_size=50,
                run_id=run.id,
            )
            for v in evaluation.values
        )
        session.commit()
    [row] = stored(engine, CheckRun)
    assert row["evidence"]["features"] == [{"feature": "amount", "score": None, "strength": None}]
    assert row["evidence"]["not_finite"] == [{"metric": "drift_score", "feature": "amount"}]
    assert [(m["metric"], m["value"]) for m in stored(engine, Metric)] == [("drift_share", 0.5)]


# -- unusable features --------------------------------------------------------------------------------


def test_a_feature_with_no_values_is_skipped_and_the_others_are_evaluated(tmp_path, engine):
    live = calm_with_drifted_country()
    live["account_age_days"] = None
    result = run_check(tmp_path, engine, live, drift_check("drifted == 1", "skipped_features > 0"))

    assert result.outcome == "breach", result.evaluation.error
    [run] = stored(engine, CheckRun)
    [skipped] = run["evidence"]["skipped"]
    assert skipped["feature"] == "account_age_days"
    assert skipped["missing"] == 1200
    assert skipped["reason"] == "0 usable value(s) in 1200 row(s), 30 needed (min_rows): 1200 missing"
    assert {f["feature"] for f in run["evidence"]["features"]} == {"amount", "country"}
    metrics = {(m["metric"], m["feature"]): m["value"] for m in stored(engine, Metric)}
    assert metrics[("skipped_features", "")] == 1.0
    assert metrics[("drifted_count", "")] == 1.0
    assert metrics[("drift_share", "")] == 0.5  # of the two features evaluated
    assert ("drift_score", "account_age_days") not in metrics
    assert {(a["rule"], a["feature"]) for a in stored(engine, Alert) if a["state"] == "firing"} == {
        ("drifted == 1", "country"),
        ("skipped_features > 0", ""),
    }


def write_text_numbers(tmp_path, fmt: str, values: list) -> FilesSource:
    """Live rows whose ``amount`` holds ``values`` (the reference's amount is numbers), as ``fmt``."""
    live = live_frame(len(values))
    live["amount"] = pd.Series(values, dtype=object)
    path = tmp_path / f"live.{fmt}"
    if fmt == "csv":
        live.to_csv(path, index=False)
    elif fmt == "jsonl":
        live.assign(created_at=[t.isoformat() for t in live["created_at"]]).to_json(path, orient="records", lines=True)
    else:
        live.to_parquet(path)
    return FilesSource(FilesSpec(kind="files", path=str(path), timestamp="created_at", id="request_id", features=FEATURES))


NUMBERS_AS_TEXT = ["12.5", "7.25", "40"] * 400
WORDS_AMONG_THEM = ["12.5", "abc", "40"] * 400


@pytest.mark.parametrize(
    ("fmt", "values"),
    [
        # (a CSV column of 12.5 and 40 is numbers: CSV has no other way to write them)
        pytest.param("csv", WORDS_AMONG_THEM, id="csv-numbers-and-words"),
        pytest.param("jsonl", NUMBERS_AS_TEXT, id="jsonl-numbers-as-text"),
        pytest.param("jsonl", WORDS_AMONG_THEM, id="jsonl-numbers-and-words"),
        pytest.param("parquet", NUMBERS_AS_TEXT, id="parquet-numbers-as-text"),
        pytest.param("parquet", WORDS_AMONG_THEM, id="parquet-numbers-and-words"),
    ],
)
def test_numbers_arriving_as_text_skip_that_feature_with_the_reason(tmp_path, fmt, values):
    frame = write_text_numbers(tmp_path, fmt, values).read(START, T0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate(DRIFT, Window(START, T0, frame), Reference(tmp_path, reference_frame()), FEATURES)

    assert evaluation.outcome == "ok", evaluation.error
    [skipped] = evaluation.evidence["skipped"]
    assert skipped["feature"] == "amount"
    assert skipped["wrong_type"] == 1200
    assert skipped["reason"].startswith(
        "0 usable value(s) in 1200 row(s), 30 needed (min_rows): 1200 not a number (e.g. '12.5', "
    )
    assert skipped["reason"].endswith("where the reference has numbers")
    values_ = {(v.metric, v.feature): v.value for v in evaluation.values}
    assert values_[("skipped_features", "")] == 1.0
    assert {f for m, f in values_ if m == "drift_score"} == {"country", "account_age_days"}


def test_with_no_usable_feature_the_run_is_an_error_naming_each_reason(tmp_path, engine):
    live = live_frame(1200)
    live["amount"] = "n/a"
    live["country"] = None
    live["account_age_days"] = np.where(np.arange(1200) < 1190, np.nan, 5.0)
    result = run_check(tmp_path, engine, live, drift_check("drift_share > 0.3"))

    assert result.outcome == "error"
    [run] = stored(engine, CheckRun)
    assert run["outcome"] == "error"
    assert run["error"] == (
        "no feature could be checked: "
        "amount: 0 usable value(s) in 1200 row(s), 30 needed (min_rows): 1200 not a number (e.g. 'n/a'), "
        "where the reference has numbers; "
        "country: 0 usable value(s) in 1200 row(s), 30 needed (min_rows): 1200 missing; "
        "account_age_days: 10 usable value(s) in 1200 row(s), 30 needed (min_rows): 1190 missing"
    )
    assert [s["feature"] for s in run["evidence"]["skipped"]] == FEATURES
    assert stored(engine, Metric) == []


def test_a_feature_evidently_cannot_compute_is_skipped_and_the_others_are_evaluated(tmp_path):
    """fisher_exact fits categorical columns (evidently's registry says so) but only two categories."""
    reference = reference_frame().assign(is_new=lambda f: np.arange(len(f)) % 3 == 0)
    live = live_frame(len(reference))  # fisher_exact also wants as many rows as the reference has
    frame = pd.DataFrame({"country": live["country"], "is_new": np.arange(len(live)) % 3 == 0})
    spec = DRIFT.model_copy(update={"method": "fisher_exact"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate(spec, Window(START, T0, frame), Reference(tmp_path, reference), ["country", "is_new"])

    assert evaluation.outcome == "ok", evaluation.error
    [skipped] = evaluation.evidence["skipped"]
    assert skipped["feature"] == "country"
    assert skipped["reason"].startswith("evidently could not compute drift: Expects binary data")
    assert [f["feature"] for f in evaluation.evidence["features"]] == ["is_new"]
    assert {(v.metric, v.feature) for v in evaluation.values} == {
        ("drift_share", ""),
        ("drifted_count", ""),
        ("skipped_features", ""),
        ("insufficient_features", ""),
        ("drift_score", "is_new"),
        ("drifted", "is_new"),
    }


def test_a_rule_may_name_skipped_features(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    config = write_project(tmp_path, checks=[drift_check("skipped_features > 0")])
    assert main(["validate", "--config", str(config)]) == 0, capsys.readouterr().err
