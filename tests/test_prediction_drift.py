"""prediction_drift: the prediction column alone against the reference's, by evidently's test for its type
(through the drift check's functions); a classifier's classes also as class_share per class against the
reference's share. From a check file through a real evaluation to stored metrics and alerts, on SQLite and
PostgreSQL. Time is a FixedClock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, reference_frame, write_project

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.storage.tables import Alert, CheckRun, Metric

MODEL, CHECK = "fraud-scorer", "prediction-drift"


def table(engine, orm) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(orm.__table__).order_by(orm.__table__.c.id))]


def decisions(rows: int, fraud: float, seed: int, labels=("fraud", "legit")) -> np.ndarray:
    return np.random.default_rng(seed).choice(list(labels), rows, p=[fraud, 1 - fraud])


def project(root, live: pd.DataFrame, rules: list[dict], *, prediction: str = "score", reference=None, **check) -> Project:
    """The factory's project with a prediction_drift check on ``prediction``; ``reference`` replaces its reference."""
    config = write_project(root, live=live, checks=[{"name": CHECK, "kind": "prediction_drift", "every": "15m",
                                                      "window": "1h", "alert": rules, **check}])  # fmt: skip
    if reference is not None:
        reference.to_parquet(root / "data" / "reference.parquet")
    checks = root / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(checks.read_text())
    model["source"]["prediction"] = prediction
    checks.write_text(yaml.safe_dump(model, sort_keys=False))
    loaded = Project.load(config)
    assert not loaded.checks.issues, loaded.checks.issues
    return loaded


def run(project: Project, engine):
    model = project.checks.models[MODEL]
    return Evaluator(engine, project.config, FixedClock(T0)).run(model, model.check(CHECK))


CLASS_RULES = [
    {"when": "drifted == 1", "severity": "critical"},
    {"when": "class_share > reference + 0.1", "severity": "warning"},
]


def classifier(root, fraud: float) -> Project:
    reference = reference_frame().assign(decision=decisions(2000, 0.1, seed=1))
    live = live_frame(1200).assign(decision=decisions(1200, fraud, seed=2))
    return project(root, live, CLASS_RULES, prediction="decision", reference=reference)


def test_a_classifier_predicting_a_class_far_more_often_drifts_and_names_that_class(tmp_path, engine):
    result = run(classifier(tmp_path, fraud=0.4), engine)
    assert result.outcome == "breach"
    metrics = {(m["metric"], m["feature"]): m["value"] for m in table(engine, Metric)}
    assert set(metrics) == {("drift_score", ""), ("drifted", ""), ("class_share", "fraud"), ("class_share", "legit")}
    assert metrics[("drifted", "")] == 1.0
    assert metrics[("class_share", "fraud")] == pytest.approx(0.4, abs=0.05)
    assert metrics[("class_share", "fraud")] + metrics[("class_share", "legit")] == pytest.approx(1.0)
    by_class = {v.feature: v for v in result.evaluation.values if v.metric == "class_share"}
    assert by_class["fraud"].reference == pytest.approx(0.1, abs=0.02)  # the reference's own share
    assert by_class["legit"].reference == pytest.approx(1 - by_class["fraud"].reference)

    alerts = {(a["rule"], a["feature"]): a for a in table(engine, Alert)}
    assert set(alerts) == {("drifted == 1", ""), ("class_share > reference + 0.1", "fraud")}
    assert all(a["state"] == "firing" for a in alerts.values())
    assert alerts[("class_share > reference + 0.1", "fraud")]["threshold"] == pytest.approx(by_class["fraud"].reference + 0.1)
    [run_row] = table(engine, CheckRun)
    [found] = run_row["evidence"]["features"]
    assert (found["feature"], found["type"], found["drifted"]) == ("decision", "classes", True)
    assert found["method"]  # evidently's default test for categories
    assert [c["class"] for c in run_row["evidence"]["classes"]] == ["legit", "fraud"]  # the reference's commonest first
    payload_top = alerts[("drifted == 1", "")]["summary"]
    assert payload_top.startswith(f"[FIRING critical] {MODEL} / {CHECK}: drifted = 1")


def test_a_classifier_predicting_as_before_is_quiet(tmp_path, engine):
    result = run(classifier(tmp_path, fraud=0.1), engine)
    assert result.outcome == "ok", result.evaluation.error
    assert table(engine, Alert) == []
    values = {(v.metric, v.feature): v.value for v in result.evaluation.values}
    assert values[("drifted", "")] == 0.0
    assert values[("class_share", "fraud")] == pytest.approx(0.1, abs=0.04)


def test_whole_number_predictions_are_classes_named_by_their_text(tmp_path, sqlite_engine):
    reference = reference_frame().assign(label_pred=np.random.default_rng(1).choice([0, 1], 2000, p=[0.7, 0.3]))
    # the live decisions arrive as floats (a column with gaps): 1.0 is the class "1"
    live = live_frame(1500).assign(label_pred=np.random.default_rng(2).choice([0.0, 1.0, np.nan], 1500, p=[0.2, 0.7, 0.1]))
    loaded = project(tmp_path, live, [{"when": "class_share > reference + 0.2"}], prediction="label_pred", reference=reference)
    result = run(loaded, sqlite_engine)
    assert result.outcome == "breach"
    shares = {v.feature: v for v in result.evaluation.values if v.metric == "class_share"}
    assert set(shares) == {"0", "1"}
    assert shares["1"].value == pytest.approx(0.7 / 0.9, abs=0.06)  # of the predictions that are there
    assert result.evaluation.evidence["features"][0]["missing"] == int(live["label_pred"].isna().sum())
    [alert] = table(sqlite_engine, Alert)
    assert alert["feature"] == "1"


def test_shifted_scores_drift_and_a_score_has_no_class_share(tmp_path, engine):
    live = live_frame(1200)
    live["score"] = np.clip(live["score"] + 0.4, 0, 1)
    result = run(project(tmp_path, live, [{"when": "drifted == 1"}]), engine)
    assert result.outcome == "breach"
    metrics = {(m["metric"], m["feature"]) for m in table(engine, Metric)}
    assert metrics == {("drift_score", ""), ("drifted", "")}
    [found] = result.evaluation.evidence["features"]
    assert (found["feature"], found["type"]) == ("score", "number")


def test_scores_as_before_are_quiet(tmp_path, engine):
    result = run(project(tmp_path, live_frame(1200), [{"when": "drifted == 1"}]), engine)
    assert result.outcome == "ok"
    assert table(engine, Alert) == []


def test_a_window_without_usable_predictions_is_an_error_that_says_why(tmp_path, sqlite_engine):
    live = live_frame(100).assign(score=None)
    result = run(project(tmp_path, live, [{"when": "drifted == 1"}]), sqlite_engine)
    assert result.outcome == "error"
    assert result.evaluation.error == (
        "the predictions (score) cannot be compared: 0 usable value(s) in 100 row(s), 30 needed (min_rows): 100 missing"
    )
