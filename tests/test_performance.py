"""`performance`: quality against labels that arrive later, posted through the ingest API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from monitor.daemon.project import Project
from monitor.daemon.service import Daemon


def project(tmp_path: Path, checks: list[dict]) -> Project:
    (tmp_path / "checks").mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame({"amount": rng.lognormal(3, 1, 500), "country": rng.choice(["US", "DE"], 500)}).to_parquet(
        tmp_path / "ref.parquet"
    )
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'monitor.db'}"},
                "server": {"listen": "127.0.0.1:0"},
                "owners": {"risk": {"mention": ["@risk-oncall"]}},
            }
        )
    )
    (tmp_path / "checks" / "scorer.yaml").write_text(
        yaml.safe_dump(
            {
                "model": "scorer",
                "owner": "risk",
                "reference": {"path": "ref.parquet"},
                "source": {"kind": "ingest", "features": ["amount", "country"]},
                "checks": checks,
            }
        )
    )
    return Project.load(tmp_path / "config.yaml")


@pytest.fixture
def daemon(tmp_path):
    checks = [
        {
            "name": "quality",
            "kind": "performance",
            "task": "classification",
            "every": "1h",
            "window": "30m",
            "label_delay": "5m",
            "min_rows": 200,
            "alert": [{"when": "roc_auc < 0.7", "severity": "critical"}],
        },
        {
            "name": "errors",
            "kind": "performance",
            "task": "regression",
            "every": "1h",
            "window": "30m",
            "label_delay": "5m",
            "min_rows": 200,
            "alert": [{"when": "mae > 5", "severity": "warning"}],
        },
    ]
    daemon = Daemon(project(tmp_path, checks))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def post(daemon: Daemon, path: str, rows: list[dict]) -> httpx.Response:
    return httpx.post(f"{daemon.http.url}/v1/models/scorer/{path}", content=b"\n".join(orjson.dumps(r) for r in rows))


def predictions(n: int, age_minutes: float, seed: int) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"p{seed}-{i}",
            "ts": (now - timedelta(minutes=age_minutes + rng.uniform(0, 10))).isoformat(),
            "features": {"amount": float(rng.lognormal(3, 1)), "country": "US"},
            "prediction": float(np.clip(0.75 * truth[i] + 0.25 * rng.random(), 0, 1)) if seed % 2 == 0 else float(rng.random()),
        }
        for i in range(n)
    ]
    return rows, truth


def evaluate(daemon: Daemon, check: str):
    daemon.sampler.flush()
    model = daemon.project.checks.models["scorer"]
    return daemon.evaluate(model, model.check(check))


def test_waiting_for_labels_is_insufficient_data_not_a_quality_drop(daemon):
    rows, _ = predictions(400, age_minutes=8, seed=2)
    assert post(daemon, "predictions", rows).status_code == 202

    result = evaluate(daemon, "quality")

    assert result.outcome == "insufficient_data"
    assert result.evaluation.error == "400 predictions, 0 labelled, 200 needed (labels not in yet?)"
    evidence = result.evaluation.evidence
    assert (evidence["predictions"], evidence["labelled"], evidence["unlabelled"]) == (400, 0, 400)
    assert result.changes == []


def test_good_labels_are_ok_and_a_fall_in_roc_auc_fires(daemon):
    good, truth = predictions(400, age_minutes=8, seed=2)  # predictions that track the truth
    assert post(daemon, "predictions", good).status_code == 202
    labels = post(daemon, "labels", [{"id": r["id"], "label": int(t)} for r, t in zip(good, truth, strict=False)])
    assert labels.status_code == 202 and labels.json()["matched"] == 400

    healthy = evaluate(daemon, "quality")
    assert healthy.outcome == "ok"
    values = {v.metric: v.value for v in healthy.evaluation.values}
    assert values["roc_auc"] > 0.95 and {"accuracy", "precision", "recall", "f1"} <= values.keys()

    noise, truth = predictions(1200, age_minutes=8, seed=3)  # predictions that ignore the truth
    assert post(daemon, "predictions", noise).status_code == 202
    post(daemon, "labels", [{"id": r["id"], "label": int(t)} for r, t in zip(noise, truth, strict=False)])

    degraded = evaluate(daemon, "quality")

    assert degraded.outcome == "breach"
    auc = next(v.value for v in degraded.evaluation.values if v.metric == "roc_auc")
    assert auc < 0.7
    assert [(c.rule, c.state, c.notify) for c in degraded.changes] == [("roc_auc < 0.7", "firing", "firing")]


def test_predictions_younger_than_the_label_delay_are_not_judged(daemon):
    fresh, truth = predictions(400, age_minutes=-4, seed=4)  # made in the last 5 minutes
    post(daemon, "predictions", fresh)
    post(daemon, "labels", [{"id": r["id"], "label": int(t)} for r, t in zip(fresh, truth, strict=False)])

    assert evaluate(daemon, "quality").outcome == "insufficient_data"


def test_regression_quality(daemon):
    rng = np.random.default_rng(5)
    now = datetime.now(UTC)
    truth = rng.normal(100, 10, 300)
    rows = [
        {
            "id": f"r{i}",
            "ts": (now - timedelta(minutes=10)).isoformat(),
            "features": {"amount": 1.0, "country": "US"},
            "prediction": float(truth[i] + rng.normal(0, 8)),
        }
        for i in range(300)
    ]
    post(daemon, "predictions", rows)
    post(daemon, "labels", [{"id": f"r{i}", "label": float(t)} for i, t in enumerate(truth)])

    result = evaluate(daemon, "errors")

    values = {v.metric: v.value for v in result.evaluation.values}
    exact_mae = float(np.mean(np.abs(np.array([r["prediction"] for r in rows]) - truth)))
    assert values["mae"] == pytest.approx(exact_mae, rel=1e-9)
    assert result.outcome == "breach" and values["mae"] > 5
    assert {"rmse", "mape"} <= values.keys()


def test_classification_with_text_classes():
    """Predictions and labels as class names ('fraud'/'legit') with positive_label: fraud."""
    from monitor.checks.base import Window
    from monitor.checks.performance import PerformanceSpec
    from monitor.checks.performance import evaluate as evaluate_quality
    from monitor.sources.base import LABEL, PREDICTION

    spec = PerformanceSpec.model_validate(
        {
            "name": "q",
            "kind": "performance",
            "task": "classification",
            "every": "1h",
            "window": "1h",
            "positive_label": "fraud",
            "min_rows": 10,
        }
    )
    truth = ["fraud", "legit"] * 50
    predicted = truth[:80] + ["legit" if t == "fraud" else "fraud" for t in truth[80:]]  # 80% right
    now = datetime.now(UTC)
    window = Window(now - timedelta(hours=1), now, pd.DataFrame({PREDICTION: predicted, LABEL: truth}))

    result = evaluate_quality(spec, window, None, [])

    assert result.outcome == "ok", result.error
    values = {v.metric: v.value for v in result.values}
    assert values["accuracy"] == pytest.approx(0.8)
    assert "roc_auc" not in values  # classes, not probabilities: no ROC AUC to compute
