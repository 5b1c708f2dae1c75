"""Model versions: ``split_by: model_version`` evaluates a check per version (each version's values,
runs and episodes), and ``version_compare`` compares a candidate version with the baseline version in
one window (the canary case).

Every test writes a check file whose files source has a ``model_version`` column, loads it as the
daemon does, and runs the real evaluator over real Parquet files on a real database, with a fixed clock.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project

from monitor.clock import FixedClock
from monitor.daemon.closing import close_orphans
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.message import AlertMessage
from monitor.server.status import render_status
from monitor.storage.tables import Alert, CheckRun, Metric, Notification


def versioned(frame: pd.DataFrame, version: str) -> pd.DataFrame:
    return frame.assign(version=version)


def project(root, frames: list[pd.DataFrame], checks: list[dict], *, model_version: str | None = "version") -> Project:
    """The fraud-scorer project of tests/factories.py, its source's ``model_version`` the column ``version``."""
    config = write_project(root, live=pd.concat(frames, ignore_index=True), checks=checks)
    path = root / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(path.read_text())
    if model_version:
        model["source"]["model_version"] = model_version
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    loaded = Project.load(config)
    assert not loaded.checks.issues, [str(i) for i in loaded.checks.issues]
    return loaded


def run(loaded: Project, engine, name: str, at=T0):
    model = loaded.checks.models["fraud-scorer"]
    return Evaluator(engine, loaded.config, FixedClock(at)).run(model, model.check(name))


def rows(engine, mapped, *columns):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*(getattr(mapped, c) for c in columns)).order_by(mapped.id))]


DRIFT = {"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h", "split_by": "model_version",
         "alert": [{"when": "drift_share > 0.3", "severity": "critical"}]}  # fmt: skip


# -- split_by: model_version -------------------------------------------------------------------------------


def test_split_drift_fires_for_the_drifted_version_only(tmp_path, engine):
    frames = [versioned(live_frame(1500, seed=2), "v1"), versioned(live_frame(1200, seed=3, drift=True), "v2")]
    loaded = project(tmp_path, frames, [DRIFT])
    result = run(loaded, engine, "feature-drift")

    assert result.outcome == "breach"
    assert [(p.model_version, p.outcome, p.evaluation.sample_size) for p in result.versions] == [
        ("v1", "ok", 1500),
        ("v2", "breach", 1200),
    ]
    # Each version is its own run, with its own values.
    assert rows(engine, CheckRun, "model_version", "outcome", "sample_size") == [("v1", "ok", 1500), ("v2", "breach", 1200)]
    with engine.connect() as conn:
        share = dict(conn.execute(sa.select(Metric.model_version, Metric.value).where(Metric.metric == "drift_share")).all())
    assert share["v1"] <= 0.3 < share["v2"]
    # One episode, v2's; its message names the version.
    [(alert_id, version, state)] = rows(engine, Alert, "id", "model_version", "state")
    assert (version, state) == ("v2", "firing")
    with engine.connect() as conn:
        [payload] = conn.scalars(sa.select(Notification.payload)).all()
    message = AlertMessage.from_dict(payload)
    assert message.subject.startswith("[FIRING critical] fraud-scorer / feature-drift [model_version v2]: drift_share = ")
    assert message.sample_size == 1200
    # The status page names the version of the alert and shows each version's last run.
    page = render_status(engine, {"fraud-scorer": ["feature-drift"]}, {})
    assert (
        f"<td>{alert_id}</td><td class='critical'>critical</td><td class='firing'>firing</td>"
        "<td>fraud-scorer / feature-drift [v2]</td>" in page
    )
    assert "<td>feature-drift</td><td>v1</td><td class='ok'>ok</td>" in page
    assert "<td>feature-drift</td><td>v2</td><td class='breach'>breach</td>" in page


def test_each_version_has_its_own_episode_and_a_version_gone_from_the_window_ends_its_own(tmp_path, engine):
    frames = [
        versioned(live_frame(1200, seed=2, drift=True), "v1"),
        versioned(live_frame(1200, seed=3, drift=True), "v2"),
        # An hour later only v2 serves, still drifted.
        versioned(live_frame(1200, end=T0 + timedelta(hours=1), seed=4, drift=True), "v2"),
    ]
    loaded = project(tmp_path, frames, [DRIFT])
    first = run(loaded, engine, "feature-drift")
    assert sorted((c.model_version, c.state) for c in first.changes) == [("v1", "firing"), ("v2", "firing")]

    later = run(loaded, engine, "feature-drift", at=T0 + timedelta(hours=1))
    assert [p.model_version for p in later.versions] == ["v2"]
    # v2's episode goes on (no new notification); v1's is ended, and its receivers are told why.
    assert [(c.model_version, c.state, c.notify) for c in later.changes] == [("v1", "resolved", "resolved")]
    by_version = {version: (state, reason) for version, state, reason in rows(engine, Alert, "model_version", "state", "reason")}
    assert by_version["v2"] == ("firing", None)
    assert by_version["v1"] == (
        "resolved",
        "no rows of model_version v1 in the window 2026-11-25 12:00 to 2026-11-25 13:00 UTC: it is not judged while it has none",
    )
    with engine.connect() as conn:
        events = conn.execute(sa.select(Notification.event, Notification.payload).order_by(Notification.id)).all()
    assert [e for e, _ in events] == ["firing", "firing", "resolved"]
    closing = AlertMessage.from_dict(events[-1].payload)
    assert closing.subject.startswith("[CLOSED] fraud-scorer / feature-drift [model_version v1]")


def test_a_split_volume_check_compares_each_version_with_its_own_last_week(tmp_path, engine):
    week = timedelta(days=7)
    frames = [
        versioned(live_frame(300, end=T0 - week, seed=5), "v1"),
        versioned(live_frame(100, seed=6), "v1"),
        versioned(live_frame(200, seed=7), "v2"),  # new this week
    ]
    check = {"name": "volume", "kind": "volume", "every": "15m", "window": "1h", "split_by": "model_version",
             "alert": [{"when": "rows_ratio < 0.5"}, {"when": "rows < 50"}]}  # fmt: skip
    result = run(project(tmp_path, frames, [check]), engine, "volume")
    v1, v2 = result.versions
    assert {v.metric: v.value for v in v1.evaluation.values}["rows_ratio"] == pytest.approx(1 / 3)
    assert v1.outcome == "breach"
    assert "rows_ratio" not in {v.metric for v in v2.evaluation.values}
    assert v2.evaluation.evidence["no_rows_ratio"].startswith("no rows in the window 7d earlier")
    assert (v2.outcome, {v.metric: v.value for v in v2.evaluation.values}["rows"]) == ("ok", 200.0)
    assert [(c.model_version, c.rule) for c in result.changes] == [("v1", "rows_ratio < 0.5")]


def test_rows_without_a_version_are_counted_and_no_version_at_all_is_insufficient(tmp_path, engine):
    unversioned = live_frame(100, seed=8).assign(version=None)
    loaded = project(tmp_path, [unversioned], [DRIFT])
    result = run(loaded, engine, "feature-drift")
    assert result.outcome == "insufficient_data"
    assert result.evaluation.error == "all versions: 100 row(s) in the window, none with a model_version: no version to evaluate"


def test_removing_split_by_ends_the_episodes_of_each_version(tmp_path, engine):
    frames = [versioned(live_frame(1200, seed=3, drift=True), "v2")]
    loaded = project(tmp_path, frames, [DRIFT])
    run(loaded, engine, "feature-drift")
    edited = tmp_path / "checks" / "fraud-scorer.yaml"
    edited.write_text(edited.read_text().replace("  split_by: model_version\n", ""))
    again = Project.load(tmp_path / "config.yaml")
    closed = close_orphans(engine, again.checks.models, again.checks.files, T0, every_file_loaded=True)
    assert [reason for _, reason in closed] == [
        f"check 'feature-drift' no longer splits by model_version (this episode was of v2) in {edited}"
    ]


# -- version_compare -----------------------------------------------------------------------------------------

CANARY = {"name": "canary", "kind": "version_compare", "every": "15m", "window": "1h", "baseline": "v1",
          "alert": [{"when": "prediction_drifted == 1", "severity": "critical"}, {"when": "latency_ratio > 1.5"}]}  # fmt: skip


def shifted(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same rows with the model's scores moved up: the candidate predicts otherwise."""
    return frame.assign(score=np.random.default_rng(seed).beta(5, 2, len(frame)))


def test_canary_with_shifted_predictions_fires_naming_the_candidate(tmp_path, engine):
    frames = [versioned(live_frame(900, seed=2), "v1"), versioned(shifted(live_frame(100, seed=3), 4), "v2")]
    result = run(project(tmp_path, frames, [CANARY]), engine, "canary")

    assert result.outcome == "breach"
    values = {v.metric: v.value for v in result.evaluation.values}
    assert values["prediction_drifted"] == 1.0 and values["prediction_drift_score"] < 0.05
    assert values["latency_ratio"] == pytest.approx(1.0, abs=0.3)  # as fast as the baseline: that rule is quiet
    assert result.evaluation.evidence["compared"] == {
        "baseline": "v1",
        "candidate": "v2",
        "baseline_rows": 900,
        "candidate_rows": 100,
    }
    [(version, rule, state)] = rows(engine, Alert, "model_version", "rule", "state")
    assert (version, rule, state) == ("v2", "prediction_drifted == 1", "firing")
    assert rows(engine, CheckRun, "model_version", "outcome") == [("v2", "breach")]
    with engine.connect() as conn:
        [payload] = conn.scalars(sa.select(Notification.payload)).all()
    text = AlertMessage.from_dict(payload).text()
    assert text.startswith("[FIRING critical] fraud-scorer / canary [model_version v2]: prediction_drifted = 1")
    assert "candidate v2 (100 rows) against baseline v1 (900 rows)" in text
    assert "drifted features, worst first: prediction (" in text


def test_canary_is_quiet_when_both_versions_behave_alike(tmp_path, engine):
    frames = [versioned(live_frame(900, seed=2), "v1"), versioned(live_frame(100, seed=3), "v2")]
    result = run(project(tmp_path, frames, [CANARY]), engine, "canary")
    assert (result.outcome, result.changes) == ("ok", [])
    values = {v.metric: v.value for v in result.evaluation.values}
    assert values["prediction_drifted"] == 0.0
    assert values["latency_ratio"] == pytest.approx(1.0, abs=0.3)


def test_a_slower_candidate_fires_latency_ratio(tmp_path, engine):
    frames = [versioned(live_frame(900, seed=2), "v1"), versioned(live_frame(100, seed=3, latency_scale=60.0), "v2")]
    result = run(project(tmp_path, frames, [CANARY]), engine, "canary")
    assert [(o.rule.when.text, o.breached) for o in result.observations] == [
        ("prediction_drifted == 1", False),
        ("latency_ratio > 1.5", True),
    ]
    assert result.evaluation.evidence["p95_ms"]["candidate"] > 2 * result.evaluation.evidence["p95_ms"]["baseline"]


def test_a_candidate_too_small_for_the_drift_test_still_gets_its_latency_ratio(tmp_path, engine):
    """1,500 baseline rows take a distance test, which needs 1,000 candidate values: 200 are too few for
    the predictions' drift, and enough for the latency's p95."""
    frames = [versioned(live_frame(1500, seed=2), "v1"), versioned(live_frame(200, seed=3, latency_scale=60.0), "v2")]
    result = run(project(tmp_path, frames, [CANARY]), engine, "canary")
    assert result.outcome == "breach"
    assert [(o.rule.when.text, o.breached) for o in result.observations] == [("latency_ratio > 1.5", True)]
    not_computed = result.evaluation.evidence["not_computed"]
    assert "prediction 200 of 1,000 (a fixed distance threshold)" in not_computed["prediction_drifted"]


def labelled(frame: pd.DataFrame, accuracy: float, seed: int) -> pd.DataFrame:
    """Class predictions and labels that agree on about ``accuracy`` of the rows."""
    rng = np.random.default_rng(seed)
    predicted = rng.integers(0, 2, len(frame))
    agree = rng.random(len(frame)) < accuracy
    return frame.assign(decision=predicted, is_fraud=np.where(agree, predicted, 1 - predicted))


def test_a_candidate_that_is_less_accurate_once_labelled_fires_accuracy_delta(tmp_path, engine):
    frames = [
        versioned(labelled(live_frame(600, seed=2), 0.9, seed=1), "v1"),
        versioned(labelled(live_frame(300, seed=3), 0.6, seed=2), "v2"),
    ]
    check = {"name": "canary", "kind": "version_compare", "every": "15m", "window": "1h", "baseline": "v1",
             "candidate": "v2", "task": "classification", "alert": [{"when": "accuracy_delta < -0.1"}]}  # fmt: skip
    config = write_project(tmp_path, live=pd.concat(frames, ignore_index=True), checks=[check])
    path = tmp_path / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(path.read_text())
    model["source"].update(model_version="version", prediction="decision", label="is_fraud")
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    loaded = Project.load(config)
    assert not loaded.checks.issues, [str(i) for i in loaded.checks.issues]
    result = run(loaded, engine, "canary")
    assert result.outcome == "breach"
    accuracy = result.evaluation.evidence["accuracy"]
    assert accuracy["baseline"] == pytest.approx(0.9, abs=0.05) and accuracy["candidate"] == pytest.approx(0.6, abs=0.07)
    assert {v.metric: v.value for v in result.evaluation.values}["accuracy_delta"] == pytest.approx(
        accuracy["candidate"] - accuracy["baseline"]
    )


def test_no_candidate_in_the_window_is_insufficient_and_says_which_versions_there_are(tmp_path, engine):
    result = run(project(tmp_path, [versioned(live_frame(500, seed=2), "v1")], [CANARY]), engine, "canary")
    assert result.outcome == "insufficient_data"
    assert result.evaluation.error == "no version other than the baseline v1 in the window to compare (versions seen: v1)"


def test_a_candidate_with_too_few_rows_is_insufficient(tmp_path, engine):
    frames = [versioned(live_frame(500, seed=2), "v1"), versioned(live_frame(10, seed=3), "v2")]
    result = run(project(tmp_path, frames, [CANARY]), engine, "canary")
    assert result.outcome == "insufficient_data"
    assert result.evaluation.error == "candidate v2: 10 row(s) in the window, 30 needed"


def test_a_newer_candidate_ends_the_episodes_of_the_one_before(tmp_path, engine):
    later = T0 + timedelta(hours=1)
    frames = [
        versioned(live_frame(900, seed=2), "v1"),
        versioned(shifted(live_frame(100, seed=3), 4), "v2"),
        versioned(live_frame(900, end=later, seed=5), "v1"),
        versioned(live_frame(100, end=later, span=timedelta(minutes=20), seed=6), "v3"),  # deployed last
    ]
    loaded = project(tmp_path, frames, [CANARY])
    run(loaded, engine, "canary")
    result = run(loaded, engine, "canary", at=later)
    assert result.evaluation.evidence["compared"]["candidate"] == "v3"
    assert [(c.model_version, c.state) for c in result.changes] == [("v2", "resolved")]
    [(state, reason)] = [(s, r) for v, s, r in rows(engine, Alert, "model_version", "state", "reason") if v == "v2"]
    assert (state, reason) == (
        "resolved",
        "model_version v2 is no longer the candidate: v3 is, in the window 2026-11-25 12:00 to 2026-11-25 13:00 UTC",
    )


# -- over the ingest source, and what the daemon and `monitor check` say -------------------------------------


def test_split_over_ingest_counts_each_version_from_its_share_of_the_exact_count(tmp_path, engine, database_url):
    import orjson

    from monitor.ingest.rows import validate_predictions
    from monitor.ingest.sampler import Sampler

    (tmp_path / "checks").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"database": {"url": database_url}, "owners": {"team": {}}}))
    checks = [
        {"name": "volume", "kind": "volume", "every": "1h", "window": "1h", "start_grace": "0s", "split_by": "model_version",
         "alert": [{"when": "rows < 2000"}]},
        {"name": "latency", "kind": "latency", "every": "1h", "window": "1h", "split_by": "model_version",
         "alert": [{"when": "p95_ms > 100"}]},
    ]  # fmt: skip
    model = {"model": "stream", "owner": "team", "source": {"kind": "ingest", "features": ["u"]}, "checks": checks}
    (tmp_path / "checks" / "stream.yaml").write_text(yaml.safe_dump(model))
    loaded = Project.load(tmp_path / "config.yaml")
    assert not loaded.checks.issues, [str(i) for i in loaded.checks.issues]
    # 3,000 rows of v1 (fast) and 1,000 of v2 (slow) in one hour; a minute keeps at most 20 in its sample.
    body = b"\n".join(
        orjson.dumps(
            {"id": f"r{i}", "ts": (T0 - timedelta(seconds=1 + 3590 * i / 4000)).isoformat(), "features": {"u": i},
             "prediction": 0.5, "latency_ms": 20.0 if i % 4 else 200.0, "model_version": "v1" if i % 4 else "v2"}
        )
        for i in range(4000)
    )  # fmt: skip
    parsed = validate_predictions(body, {"u": "number"}, T0.timestamp())
    sampler = Sampler(engine, FixedClock(T0), capacity=20, seed=1)
    sampler.add("stream", parsed.rows, rejected=0, received=T0.timestamp())
    sampler.flush()
    stream = loaded.checks.models["stream"]
    evaluator = Evaluator(engine, loaded.config, FixedClock(T0))

    result = evaluator.run(stream, stream.check("volume"))
    counts = {p.model_version: p.evaluation.values[0].value for p in result.versions}
    assert counts["v1"] + counts["v2"] == pytest.approx(4000, abs=1)  # the window's exact count, shared out
    assert counts["v1"] == pytest.approx(3000, rel=0.1) and counts["v2"] == pytest.approx(1000, rel=0.25)
    assert [(c.model_version, c.state) for c in result.changes] == [("v2", "firing")]

    latency = evaluator.run(stream, stream.check("latency"))
    p95 = {p.model_version: next(v.value for v in p.evaluation.values if v.metric == "p95_ms") for p in latency.versions}
    assert p95["v1"] == pytest.approx(20, rel=0.01) and p95["v2"] == pytest.approx(200, rel=0.01)
    assert [(c.model_version, c.state) for c in latency.changes] == [("v2", "firing")]


def test_the_log_line_and_monitor_check_show_each_version(tmp_path, capsys, monkeypatch):
    from monitor.cli import main
    from monitor.daemon.service import describe

    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    frames = [versioned(live_frame(1500, end=now, seed=2), "v1"), versioned(live_frame(1200, end=now, seed=3, drift=True), "v2")]
    loaded = project(tmp_path, frames, [DRIFT])
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "fraud-scorer/feature-drift"]) == 0
    out = capsys.readouterr().out
    assert "fraud-scorer/feature-drift [model_version v1]: ok" in out
    assert "fraud-scorer/feature-drift [model_version v2]: breach" in out
    assert "alert #1 drift_share > 0.3 [model_version v2] -> firing (notify: firing)" in out
    assert "[FIRING critical] fraud-scorer / feature-drift [model_version v2]" in out  # the console's message
    assert "stored runs #1, #2; 1 notification(s) delivered" in out

    import sqlalchemy as sa_

    engine = sa_.create_engine(loaded.config.database.url)
    model = loaded.checks.models["fraud-scorer"]
    line = describe(Evaluator(engine, loaded.config, FixedClock(now)).run(model, model.check("feature-drift"), dry_run=True))
    assert line.startswith("fraud-scorer/feature-drift: breach [model_version v1] ok drift_share=")
    assert "; [model_version v2] breach drift_share=" in line
    engine.dispose()
