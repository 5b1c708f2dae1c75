"""Labels and the `performance` check: windows where some labels are not in yet, labels that arrive as
1.0/0.0 or as text, a class set (declared, from the reference, or inferred), labels that fit no class,
metrics that are undefined, and a model that gives both its decision and its score (`probability`).

The evaluation is called directly on a Window for the arithmetic, and end to end through the real
Evaluator (a files source, on SQLite and PostgreSQL) and the real daemon's HTTP API (an ingest source).
"""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project
from sklearn.metrics import roc_auc_score

from monitor.checks.base import Window
from monitor.checks.performance import PerformanceSpec
from monitor.checks.performance import evaluate as evaluate_quality
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.sources.base import LABEL, PREDICTION, PROBABILITY
from monitor.sources.reference import Reference
from monitor.storage.tables import Alert, CheckRun, Metric, Sample

MODEL = "fraud-scorer"


def spec(**keys) -> PerformanceSpec:
    base = {"name": "quality", "kind": "performance", "task": "classification", "every": "1h", "window": "1h", "min_rows": 20}
    return PerformanceSpec.model_validate(base | keys)


def window(prediction, label, probability=None) -> Window:
    frame = pd.DataFrame({PREDICTION: prediction, LABEL: label})
    if probability is not None:
        frame[PROBABILITY] = probability
    return Window(T0 - timedelta(hours=1), T0, frame)


def values(evaluation) -> dict[str, float]:
    return {v.metric: v.value for v in evaluation.values}


def scored(n: int, seed: int, *, skill: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """The truth (0/1) and a score that follows it with ``skill``."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    score = np.clip(skill * truth + (1 - skill) * rng.random(n) + rng.normal(0, 0.15, n), 0, 1)
    return truth, score


def unlabel(labels: np.ndarray, share: float, seed: int) -> tuple[pd.Series, np.ndarray]:
    """``labels`` as floats with ``share`` of them not in yet (None); and the mask of the labelled ones."""
    rng = np.random.default_rng(seed)
    missing = rng.random(len(labels)) < share
    out = pd.Series(labels.astype(float), dtype=object)
    out[missing] = None
    return out, ~missing


# -- labels not in yet, float labels, text classes -----------------------------------------------------


def test_a_partly_labelled_window_with_float_labels_is_scored_on_its_labelled_rows():
    truth, score = scored(500, seed=1)
    labels, labelled = unlabel(truth, 0.2, seed=2)

    result = evaluate_quality(spec(), window(score, labels), None, [])

    assert result.outcome == "ok", result.error
    got = values(result)
    predicted = (score >= 0.5).astype(int)
    t, p = truth[labelled], predicted[labelled]
    assert got["accuracy"] == pytest.approx(np.mean(t == p), abs=1e-12)
    assert got["precision"] == pytest.approx(np.sum((p == 1) & (t == 1)) / np.sum(p == 1), abs=1e-12)
    assert got["recall"] == pytest.approx(np.sum((p == 1) & (t == 1)) / np.sum(t == 1), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(t, score[labelled]), abs=1e-12)
    assert result.sample_size == labelled.sum()
    assert result.evidence["predictions"] == 500
    assert result.evidence["labelled"] == labelled.sum()
    assert result.evidence["unlabelled"] == 500 - labelled.sum()


def test_float_labels_as_a_column_with_nan_and_float_class_predictions():
    """What a Parquet file gives for a label column with gaps: float64 with NaN; the model's classes 1.0/0.0."""
    truth, score = scored(300, seed=3)
    labels = truth.astype(float)
    labels[::4] = np.nan
    predicted = (score >= 0.5).astype(float)

    result = evaluate_quality(spec(), window(predicted, labels), None, [])

    assert result.outcome == "ok", result.error
    keep = ~np.isnan(labels)
    assert values(result)["accuracy"] == pytest.approx(np.mean(truth[keep] == predicted[keep]), abs=1e-12)
    assert "roc_auc" not in values(result)  # classes, not scores
    assert (result.evidence["labelled"], result.evidence["unlabelled"]) == (keep.sum(), (~keep).sum())
    assert result.evidence["classes"] == [0, 1]


def test_text_classes_with_labels_missing():
    truth = np.array(["fraud", "legit"] * 60)
    predicted = truth.copy()
    predicted[:30] = np.where(truth[:30] == "fraud", "legit", "fraud")  # 30 of 120 wrong
    labels = pd.Series(truth, dtype=object)
    labels[100:] = None  # the last 20 are not labelled yet

    result = evaluate_quality(spec(positive_label="fraud"), window(predicted, labels), None, [])

    assert result.outcome == "ok", result.error
    got = values(result)
    assert got["accuracy"] == pytest.approx(70 / 100)
    t, p = truth[:100], predicted[:100]
    assert got["precision"] == pytest.approx(np.sum((p == "fraud") & (t == "fraud")) / np.sum(p == "fraud"))
    assert (result.evidence["labelled"], result.evidence["unlabelled"]) == (100, 20)
    assert result.evidence["classes"] == ["fraud", "legit"]


def test_declared_classes_coerce_labels_and_a_label_that_fits_none_is_left_out_and_named():
    truth, score = scored(200, seed=4)
    labels = pd.Series(truth.astype(float), dtype=object)
    labels[0], labels[1], labels[2] = "maybe", 2, "maybe"
    labels[3] = "1"  # text of a class is that class

    result = evaluate_quality(spec(classes=[0, 1]), window(score, labels), None, [])

    assert result.outcome == "ok", result.error
    assert result.evidence["labelled"] == 197
    assert result.evidence["unknown_labels"] == {"count": 3, "values": [2, "maybe"]}
    kept = np.ones(200, bool)
    kept[:3] = False
    t = truth.copy()
    t[3] = 1
    assert values(result)["accuracy"] == pytest.approx(np.mean(t[kept] == (score[kept] >= 0.5)), abs=1e-12)


def test_the_evidence_of_unknown_labels_is_strict_json():
    """An inf label is named as text: PostgreSQL's json (and JSON) has no inf."""
    truth, score = scored(50, seed=15)
    labels = pd.Series(truth.astype(float))
    labels[0] = float("inf")
    result = evaluate_quality(spec(classes=[0, 1]), window(score, labels), None, [])
    assert result.evidence["unknown_labels"] == {"count": 1, "values": ["inf"]}
    json.dumps(result.evidence, allow_nan=False)


def test_classes_come_from_the_reference_and_a_label_it_never_had_is_left_out():
    truth, score = scored(200, seed=5)
    labels = pd.Series(truth, dtype=object)
    labels[10] = "maybe"
    frame = pd.DataFrame({"amount": np.arange(6.0), "label": [0, 1] * 3})
    reference = Reference(Path("reference.parquet"), frame, label="label")  # as for_source gives it

    result = evaluate_quality(spec(), window(score, labels), reference, ["amount"])

    assert result.outcome == "ok", result.error
    assert result.evidence["classes"] == [0, 1] and result.evidence["classes_from"] == "reference"
    assert result.evidence["unknown_labels"] == {"count": 1, "values": ["maybe"]}
    assert result.sample_size == 199


def test_declared_classes_must_hold_the_positive_label():
    with pytest.raises(ValueError, match="positive_label 1 is not one of the classes 'fraud', 'legit'"):
        spec(classes=["fraud", "legit"])
    assert spec(classes=["fraud", "legit"], positive_label="fraud").classes == ["fraud", "legit"]


def test_a_positive_label_the_reference_does_not_have_is_refused_at_load(tmp_path):
    config = write_ingest_project(tmp_path, reference_labels=["fraud", "legit"])
    issues = Project.load(config).checks.issues
    assert len(issues) == 1
    assert "positive_label 1 is not one of the classes of the reference's 'label' column ('fraud', 'legit')" in issues[0].message


def test_three_classes_are_macro_averages_and_a_score_needs_two():
    truth = np.array(["a", "b", "c"] * 20)
    predicted = truth.copy()
    predicted[:6] = "a"  # two b and two c called a
    result = evaluate_quality(spec(classes=["a", "b", "c"]), window(predicted, truth), None, [])
    assert result.outcome == "ok", result.error
    from sklearn.metrics import precision_score

    assert values(result)["precision"] == pytest.approx(precision_score(truth, predicted, average="macro"), abs=1e-12)
    assert values(result)["accuracy"] == pytest.approx(np.mean(truth == predicted))

    two_present = evaluate_quality(spec(classes=["a", "b", "c"]), window(predicted[truth != "c"], truth[truth != "c"]), None, [])
    assert two_present.outcome == "ok", two_present.error
    t, p = truth[truth != "c"], predicted[truth != "c"]
    assert values(two_present)["precision"] == pytest.approx(precision_score(t, p, average="macro"), abs=1e-12)

    _, score = scored(60, seed=13)
    failed = evaluate_quality(spec(classes=["a", "b", "c"]), window(score, truth), None, [])
    assert failed.outcome == "error" and "needs two classes; there are 3" in failed.error


def test_regression_leaves_out_labels_not_in_and_labels_that_are_not_numbers():
    rng = np.random.default_rng(14)
    truth = rng.normal(100, 10, 100)
    predicted = truth + rng.normal(0, 5, 100)
    labels = pd.Series(truth, dtype=object)
    labels[:10] = None
    labels[10:12] = "n/a"
    result = evaluate_quality(spec(task="regression"), window(predicted, labels), None, [])
    assert result.outcome == "ok", result.error
    assert values(result)["mae"] == pytest.approx(np.mean(np.abs(predicted[12:] - truth[12:])), rel=1e-9)
    evidence = result.evidence
    assert (evidence["predictions"], evidence["labelled"], evidence["unlabelled"]) == (100, 88, 10)
    assert evidence["unknown_labels"] == {"count": 2, "values": ["n/a"]}


# -- undefined metrics -----------------------------------------------------------------------------------


def test_precision_without_a_positive_prediction_is_absent_and_explained():
    truth = np.array([0, 1] * 50)
    result = evaluate_quality(spec(), window(np.zeros(100, int), truth), None, [])

    assert result.outcome == "ok", result.error
    got = values(result)
    assert "precision" not in got and "f1" not in got
    assert got["accuracy"] == pytest.approx(0.5) and got["recall"] == 0.0
    assert "no prediction of the positive class 1" in result.evidence["undefined"]["precision"]
    assert "precision" in result.evidence["undefined"]["f1"]


def test_recall_and_roc_auc_over_one_class_are_absent_and_explained():
    _, score = scored(100, seed=6)
    result = evaluate_quality(spec(), window(score, np.zeros(100)), None, [])

    assert result.outcome == "ok", result.error
    got = values(result)
    assert {"recall", "f1", "roc_auc"}.isdisjoint(got)
    assert got["accuracy"] == pytest.approx(np.mean(score < 0.5))
    undefined = result.evidence["undefined"]
    assert "no label of the positive class 1" in undefined["recall"]
    assert "one class" in undefined["roc_auc"] and "0" in undefined["roc_auc"]


def test_an_undefined_metric_moves_no_episode(tmp_path, engine):
    """precision < 0.5 over a window with no positive prediction: no value, so no alert either way."""
    setup = FilesProject(tmp_path, engine, rules=[{"when": "precision < 0.5", "severity": "warning"}])
    live = setup.live(500, skill=0.6)
    live["score"] = 0.1  # the model predicts no fraud at all
    setup.write(live)

    result = setup.run()

    assert result.outcome == "ok" and result.observations == [] and result.changes == []
    stored = {m["metric"] for m in table(engine, Metric)}
    assert "precision" not in stored and "accuracy" in stored
    [run] = table(engine, CheckRun)
    assert "precision" in run["evidence"]["undefined"]


# -- the insufficient_data text -----------------------------------------------------------------------


def test_no_predictions_says_so():
    result = evaluate_quality(spec(), window(pd.Series([], dtype=float), pd.Series([], dtype=object)), None, [])
    assert result.outcome == "insufficient_data"
    assert result.error == "no predictions in the window"


def test_predictions_without_their_labels_say_how_many_of_each():
    truth, score = scored(40, seed=7)
    labels = pd.Series(truth, dtype=object)
    labels[10:] = None
    result = evaluate_quality(spec(min_rows=30), window(score, labels), None, [])
    assert result.outcome == "insufficient_data"
    assert result.error == "40 predictions, 10 labelled, 30 needed (labels not in yet?)"
    assert (result.evidence["predictions"], result.evidence["labelled"], result.evidence["unlabelled"]) == (40, 10, 30)


# -- the model's decision and its score -----------------------------------------------------------------


def test_accuracy_from_the_models_decision_and_roc_auc_from_its_probability():
    """The model decides at 0.8, not at 0.5: its accuracy is of its own decisions."""
    truth, score = scored(400, seed=8)
    decision = (score >= 0.8).astype(int)
    assert np.mean(decision == truth) != pytest.approx(np.mean((score >= 0.5) == truth))

    result = evaluate_quality(spec(), window(decision, truth, score), None, [])

    assert result.outcome == "ok", result.error
    got = values(result)
    assert got["accuracy"] == pytest.approx(np.mean(decision == truth), abs=1e-12)
    assert got["recall"] == pytest.approx(np.sum((decision == 1) & (truth == 1)) / np.sum(truth == 1), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(truth, score), abs=1e-12)


def test_a_probability_column_left_empty_keeps_thresholding_the_prediction():
    truth, score = scored(300, seed=9)
    result = evaluate_quality(spec(probability_threshold=0.4), window(score, truth, [None] * 300), None, [])
    assert result.outcome == "ok", result.error
    assert values(result)["accuracy"] == pytest.approx(np.mean((score >= 0.4) == truth), abs=1e-12)
    assert values(result)["roc_auc"] == pytest.approx(roc_auc_score(truth, score), abs=1e-12)


# -- acceptance, over a files source through the Evaluator ---------------------------------------------


def table(engine, model) -> list[dict]:
    t = model.__table__
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(t))]


class FilesProject:
    """The factories' project, with is_fraud (labels) and optionally proba (scores) as source columns and
    one performance check; evaluated at T0 by the real Evaluator."""

    def __init__(
        self,
        root: Path,
        engine,
        *,
        rules: list[dict],
        probability: bool = False,
        label: str = "is_fraud",
        reference_labels: list | None = None,
        **check,
    ) -> None:
        self.root, self.engine = root, engine
        quality = {"name": "quality", "kind": "performance", "task": "classification", "every": "1h", "window": "1h"}
        config = write_project(root, checks=[quality | {"alert": rules} | check])
        path = root / "checks" / f"{MODEL}.yaml"
        model = yaml.safe_load(path.read_text())
        model["source"]["label"] = self.label = label
        if probability:
            model["source"]["probability"] = "proba"
        path.write_text(yaml.safe_dump(model, sort_keys=False))
        if reference_labels is not None:
            reference = pd.read_parquet(root / "data" / "reference.parquet")
            reference[label] = (reference_labels * len(reference))[: len(reference)]
            reference.to_parquet(root / "data" / "reference.parquet")
        self.project = Project.load(config)
        assert not self.project.checks.issues, self.project.checks.issues
        self.model = self.project.checks.models[MODEL]
        self.evaluator = Evaluator(engine, self.project.config, FixedClock(T0))

    def live(self, rows: int, *, skill: float, seed: int = 11) -> pd.DataFrame:
        frame = live_frame(rows, end=T0, seed=seed)
        truth, score = scored(rows, seed=seed, skill=skill)
        frame["score"], frame[self.label] = score, truth.astype(float)
        return frame

    def write(self, frame: pd.DataFrame) -> None:
        frame.to_parquet(self.root / "data" / "live-0001.parquet")

    def run(self):
        return self.evaluator.run(self.model, self.model.check("quality"))


def test_acceptance_files_source_20_percent_unlabelled_float_labels_accuracy_fires(tmp_path, engine):
    setup = FilesProject(tmp_path, engine, rules=[{"when": "accuracy < 0.9", "severity": "critical"}])
    live = setup.live(1000, skill=0.5)
    missing = np.random.default_rng(12).random(1000) < 0.2
    live.loc[missing, "is_fraud"] = np.nan  # labels 1.0 / 0.0, a fifth not in yet
    setup.write(live)

    result = setup.run()

    assert result.outcome == "breach", result.evaluation.error
    labelled = live[~missing]
    exact = float(np.mean((labelled["score"].to_numpy() >= 0.5) == labelled["is_fraud"].to_numpy()))
    assert exact < 0.9
    stored = {m["metric"]: m["value"] for m in table(engine, Metric)}
    assert stored["accuracy"] == pytest.approx(exact, abs=1e-12)
    [run] = table(engine, CheckRun)
    assert run["outcome"] == "breach" and run["sample_size"] == (~missing).sum()
    assert (run["evidence"]["predictions"], run["evidence"]["labelled"], run["evidence"]["unlabelled"]) == (
        1000,
        (~missing).sum(),
        missing.sum(),
    )
    [alert] = table(engine, Alert)
    assert (alert["rule"], alert["state"]) == ("accuracy < 0.9", "firing")
    assert [(c.rule, c.state, c.notify) for c in result.changes] == [("accuracy < 0.9", "firing", "firing")]


def test_a_files_source_with_a_probability_column(tmp_path, engine):
    setup = FilesProject(tmp_path, engine, rules=[{"when": "roc_auc < 0.7"}], probability=True)
    live = setup.live(600, skill=0.6)
    live["proba"] = live["score"]
    live["score"] = (live["proba"] >= 0.7).astype(int)  # the model's own decision
    setup.write(live)

    result = setup.run()

    assert result.outcome == "ok", result.evaluation.error
    got = values(result.evaluation)
    truth = live["is_fraud"].to_numpy()
    assert got["accuracy"] == pytest.approx(np.mean(live["score"].to_numpy() == truth), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(truth, live["proba"]), abs=1e-12)


@pytest.mark.parametrize("label", ["label", "is_fraud"])
def test_a_files_source_label_the_reference_never_had_is_left_out_and_named(tmp_path, engine, label):
    """The reference's label column, the one the source's `label` names, gives the classes: 0 and 1."""
    setup = FilesProject(tmp_path, engine, rules=[], label=label, reference_labels=[0, 1])
    live = setup.live(300, skill=0.6)
    live[label] = live[label].map(lambda v: str(int(v)))  # text: "1" is the reference's class 1
    live.loc[[3, 7], label] = "maybe"
    live.loc[9, label] = "2"
    setup.write(live)

    result = setup.run()

    assert result.outcome == "ok", result.evaluation.error
    [run] = table(engine, CheckRun)
    assert run["evidence"]["classes"] == [0, 1] and run["evidence"]["classes_from"] == "reference"
    assert run["evidence"]["unknown_labels"] == {"count": 3, "values": ["2", "maybe"]}
    assert run["sample_size"] == 297


# -- acceptance, over the ingest source through the daemon's API ------------------------------------------


def write_ingest_project(root: Path, *, reference_labels: list | None = None, **check) -> Path:
    (root / "checks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"amount": rng.lognormal(3, 1, 100), "country": rng.choice(["US", "DE"], 100)})
    if reference_labels is not None:
        reference["label"] = (reference_labels * 100)[:100]
    reference.to_parquet(root / "reference.parquet")
    (root / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{root / 'monitor.db'}"},
                "server": {"listen": "127.0.0.1:0"},
                "owners": {"risk": {"mention": ["@risk-oncall"]}},
            }
        )
    )
    quality = {
        "name": "quality",
        "kind": "performance",
        "task": "classification",
        "every": "1d",
        "window": "30m",
        "min_rows": 50,
        "alert": [{"when": "accuracy < 0.9", "severity": "critical"}],
    }
    model = {
        "model": MODEL,
        "owner": "risk",
        "reference": {"path": "reference.parquet"},
        "source": {"kind": "ingest", "features": ["amount", "country"]},
        "checks": [quality | check],
    }
    (root / "checks" / f"{MODEL}.yaml").write_text(yaml.safe_dump(model))
    return root / "config.yaml"


class Running:
    def __init__(self, config: Path) -> None:
        self.clock = FixedClock(datetime.now(UTC))
        self.daemon = Daemon(Project.load(config), clock=self.clock, console=io.StringIO())
        assert not self.daemon.project.checks.issues, self.daemon.project.checks.issues

    def __enter__(self):
        self.daemon.start()
        self.http = httpx.Client(base_url=self.daemon.http.url, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self.daemon.stop()

    def post(self, what: str, rows: list[dict]) -> httpx.Response:
        return self.http.post(f"/v1/models/{MODEL}/{what}", content=b"\n".join(orjson.dumps(r) for r in rows))

    def evaluate(self):
        self.daemon.sampler.flush()
        model = self.daemon.project.checks.models[MODEL]
        return self.daemon.evaluate(model, model.check("quality"))

    def stored(self) -> dict[str, dict]:
        self.daemon.sampler.flush()
        with self.daemon.engine.connect() as conn:
            return {r["row_id"]: dict(r) for r in conn.execute(sa.select(Sample.__table__)).mappings()}


def ingest_rows(n: int, score: np.ndarray, *, probability: np.ndarray | None = None) -> list[dict]:
    now = time.time()
    rows = []
    for i in range(n):
        row = {"id": f"p{i}", "ts": now - 60 - (i % 600), "features": {"amount": 1.0 + i, "country": "US"}}
        row["prediction"] = float(score[i]) if probability is None else int(score[i])
        if probability is not None:
            row["probability"] = float(probability[i])
        rows.append(row)
    return rows


def test_acceptance_ingest_source_20_percent_unlabelled_float_labels_accuracy_fires(tmp_path):
    truth, score = scored(800, seed=21, skill=0.5)
    with Running(write_ingest_project(tmp_path)) as running:
        assert running.post("predictions", ingest_rows(800, score)).status_code == 202
        labelled = np.random.default_rng(22).random(800) >= 0.2
        labels = [{"id": f"p{i}", "label": float(truth[i])} for i in range(800) if labelled[i]]  # 1.0 / 0.0
        assert running.post("labels", labels).json()["matched"] == labelled.sum()

        result = running.evaluate()

        assert result.outcome == "breach", result.evaluation.error
        exact = float(np.mean((score[labelled] >= 0.5) == truth[labelled]))
        assert exact < 0.9
        assert values(result.evaluation)["accuracy"] == pytest.approx(exact, abs=1e-12)
        evidence = result.evaluation.evidence
        assert (evidence["predictions"], evidence["labelled"], evidence["unlabelled"]) == (
            800,
            labelled.sum(),
            800 - labelled.sum(),
        )
        assert [(c.rule, c.state) for c in result.changes] == [("accuracy < 0.9", "firing")]
        with running.daemon.engine.connect() as conn:
            stored = conn.scalar(sa.select(Metric.value).where(Metric.metric == "accuracy", Metric.run_id == result.run_id))
        assert stored == pytest.approx(exact, abs=1e-12)


def test_ingest_rejects_a_label_that_fits_no_class_of_the_reference_and_takes_the_rest(tmp_path):
    with Running(write_ingest_project(tmp_path, reference_labels=[0, 1])) as running:
        rows = ingest_rows(4, np.array([0.9, 0.1, 0.8, 0.2]))
        assert running.post("predictions", rows).status_code == 202
        response = running.post(
            "labels",
            [{"id": "p0", "label": 1.0}, {"id": "p1", "label": "maybe"}, {"id": "p2", "label": 1}, {"id": "p3", "label": 2}],
        )

        assert response.status_code == 400
        body = response.json()
        assert (body["accepted"], body["rejected"], body["matched"]) == (2, 2, 2)
        assert [(e["index"], e["id"], e["reason"]) for e in body["errors"]] == [
            (1, "p1", "label 'maybe' is not one of the classes 0, 1"),
            (3, "p3", "label 2 is not one of the classes 0, 1"),
        ]
        stored = running.stored()
        assert {k: v["label"] for k, v in stored.items()} == {"p0": 1, "p1": None, "p2": 1, "p3": None}
        assert type(stored["p0"]["label"]) is int  # 1.0 is stored as the class 1


def test_ingest_takes_text_classes_declared_in_the_check(tmp_path):
    config = write_ingest_project(tmp_path, classes=["fraud", "legit"], positive_label="fraud")
    with Running(config) as running:
        assert running.post("predictions", ingest_rows(3, np.array([0.9, 0.1, 0.5]))).status_code == 202
        response = running.post(
            "labels", [{"id": "p0", "label": "fraud"}, {"id": "p1", "label": 1}, {"id": "p2", "label": "legit"}]
        )
        assert response.status_code == 400
        assert [(e["index"], e["reason"]) for e in response.json()["errors"]] == [
            (1, "label 1 is not one of the classes 'fraud', 'legit'")
        ]


def test_ingest_probability_is_stored_and_scored(tmp_path):
    truth, score = scored(300, seed=31)
    decision = (score >= 0.7).astype(int)
    with Running(write_ingest_project(tmp_path)) as running:
        assert running.post("predictions", ingest_rows(300, decision, probability=score)).status_code == 202
        assert running.post("labels", [{"id": f"p{i}", "label": int(truth[i])} for i in range(300)]).status_code == 202
        stored = running.stored()
        assert stored["p5"]["probability"] == pytest.approx(score[5])

        result = running.evaluate()

        got = values(result.evaluation)
        assert got["accuracy"] == pytest.approx(np.mean(decision == truth), abs=1e-12)
        assert got["roc_auc"] == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
