"""One evaluation end to end, on SQLite and PostgreSQL: the window read from files, evidently's drift or
the latency percentiles, the rows written (runs, metrics, alert episodes, pending notifications), and the
episode carried across evaluations, `for:` durations and restarts. Time is a FixedClock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from factories import FEATURES, T0, live_frame, write_project

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.storage import db
from monitor.storage.tables import Alert, CheckRun, Metric, Notification

MODEL = "fraud-scorer"
DRIFT = "feature-drift"
RULE = "drift_share > 0.3"
RECEIVER = "fraud-team/console"  # the owner has a Slack channel, but there is no Slack token


class Setup:
    """A project on disk, its evaluator on ``engine`` and the clock it reads."""

    def __init__(self, root: Path, engine, *, live: pd.DataFrame | None, hold: str | None = None) -> None:
        self.root = root
        self.config_path = write_project(root, live=live, hold=hold)
        self.clock = FixedClock(T0)
        self.engine = engine
        self.evaluator = self.new_evaluator(engine)

    def new_evaluator(self, engine) -> Evaluator:
        project = Project.load(self.config_path)
        assert not project.checks.issues, project.checks.issues
        self.model = project.checks.models[MODEL]
        return Evaluator(engine, project.config, self.clock)

    def run(self, check: str = DRIFT, *, at: timedelta | None = None, **kw):
        if at is not None:
            self.clock.set(T0 + at)
        return self.evaluator.run(self.model, self.model.check(check), **kw)

    def replace_live(self, frame: pd.DataFrame, name: str) -> None:
        """The batch job's files now hold only ``frame``."""
        for old in (self.root / "data").glob("live-*"):
            old.unlink()
        frame.to_parquet(self.root / "data" / name)


def rows(engine, table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def alerts(engine) -> list[dict]:
    return rows(engine, Alert.__table__)


def notifications(engine) -> list[dict]:
    return rows(engine, Notification.__table__)


def drifted(rows_: int = 4000, **kw) -> pd.DataFrame:
    return live_frame(rows_, drift=True, **kw)


def calm(end, rows_: int = 1500, seed: int = 7) -> pd.DataFrame:
    return live_frame(rows_, end=end, drift=False, seed=seed)


# -- a drifted window -----------------------------------------------------------------------------


def test_drifted_window_is_a_breach_with_metrics_evidence_alert_and_notification(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted())
    result = s.run()
    assert result.outcome == "breach"
    assert result.run_id is not None

    [run] = rows(engine, CheckRun.__table__)
    assert run["id"] == result.run_id
    assert (run["model"], run["check"], run["kind"], run["outcome"]) == (MODEL, DRIFT, "drift", "breach")
    assert (run["started"], run["finished"]) == (T0, T0)
    assert (run["window_start"], run["window_end"]) == (T0 - timedelta(hours=1), T0)
    assert run["sample_size"] == 4000
    assert run["error"] is None

    metrics = rows(engine, Metric.__table__)
    by_key = {(m["metric"], m["feature"]): m for m in metrics}
    assert len(by_key) == len(metrics)
    assert set(by_key) == (
        {("drift_share", ""), ("drifted_count", ""), ("skipped_features", ""), ("insufficient_features", "")}
        | {(metric, f) for f in FEATURES for metric in ("drift_score", "drifted")}
    )
    for m in metrics:
        assert (m["model"], m["check"], m["time"], m["run_id"]) == (MODEL, DRIFT, T0, run["id"])
        assert (m["window_start"], m["window_end"], m["sample_size"]) == (T0 - timedelta(hours=1), T0, 4000)
        assert m["time"].utcoffset() == timedelta(0)
    flags = {f: by_key[("drifted", f)]["value"] for f in FEATURES}
    assert set(flags.values()) <= {0.0, 1.0}
    assert flags["amount"] == flags["country"] == 1.0  # the two features the factory moves
    assert by_key[("drifted_count", "")]["value"] == sum(flags.values())
    assert by_key[("drift_share", "")]["value"] == pytest.approx(sum(flags.values()) / len(FEATURES))
    assert by_key[("drift_share", "")]["value"] > 0.3

    evidence = {f["feature"]: f for f in run["evidence"]["features"]}
    assert set(evidence) == set(FEATURES)
    for feature, item in evidence.items():
        assert item["score"] == pytest.approx(by_key[("drift_score", feature)]["value"])
        assert item["drifted"] is (flags[feature] == 1.0)
        assert isinstance(item["method"], str) and item["method"]
        assert item["threshold"] > 0
    assert [f["drifted"] for f in run["evidence"]["features"]] == sorted(
        (f["drifted"] for f in run["evidence"]["features"]), reverse=True
    )  # drifted first

    [alert] = alerts(engine)
    assert (alert["model"], alert["check"], alert["rule"], alert["feature"]) == (MODEL, DRIFT, RULE, "")
    assert (alert["state"], alert["severity"], alert["owner"]) == ("firing", "critical", "fraud-team")
    assert (alert["started"], alert["fired"], alert["resolved"], alert["updated"]) == (T0, T0, None, T0)
    assert alert["threshold"] == 0.3
    assert alert["last_value"] == pytest.approx(by_key[("drift_share", "")]["value"])
    assert alert["summary"].startswith("[FIRING critical] fraud-scorer / feature-drift")

    [note] = notifications(engine)
    assert (note["alert_id"], note["event"], note["receiver"], note["status"], note["attempts"]) == (
        alert["id"],
        "firing",
        RECEIVER,
        "pending",
        0,
    )
    assert (note["created"], note["next_attempt"]) == (T0, T0)
    assert note["message_id"] is None
    payload = note["payload"]
    assert (payload["alert_id"], payload["event"], payload["rule"], payload["metric"]) == (
        alert["id"],
        "firing",
        RULE,
        "drift_share",
    )
    assert payload["value"] == pytest.approx(alert["last_value"])
    assert payload["sample_size"] == 4000 and payload["window"] == "1h"
    assert {f["feature"] for f in payload["top_features"]} == {f for f, v in flags.items() if v}
    assert [c.notify for c in result.changes] == ["firing"]


def test_evaluating_again_keeps_one_episode_and_one_notification(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted())
    s.run()
    [first] = alerts(engine)
    for minutes in (0, 15, 30):
        result = s.run(at=timedelta(minutes=minutes))
        assert result.outcome == "breach"
        assert result.changes == [] and result.notifications_owed == 0
    [alert] = alerts(engine)
    assert alert["id"] == first["id"]
    assert (alert["state"], alert["started"], alert["fired"]) == ("firing", T0, T0)
    assert alert["updated"] == T0 + timedelta(minutes=30)
    assert len(notifications(engine)) == 1
    assert len(rows(engine, CheckRun.__table__)) == 4
    assert len(rows(engine, Metric.__table__)) == 4 * (4 + 2 * len(FEATURES))


# -- for: --------------------------------------------------------------------------------------------


def test_for_holds_then_fires_once_then_resolves_once(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted(), hold="30m")

    assert s.run().outcome == "breach"
    [alert] = alerts(engine)
    assert (alert["state"], alert["started"], alert["fired"]) == ("pending", T0, None)
    assert notifications(engine) == []

    s.run(at=timedelta(minutes=10))
    [alert] = alerts(engine)
    assert (alert["state"], alert["started"], alert["fired"]) == ("pending", T0, None)
    assert notifications(engine) == []

    result = s.run(at=timedelta(minutes=30))
    assert result.notifications_owed == 1
    [alert] = alerts(engine)
    assert (alert["state"], alert["started"], alert["fired"]) == ("firing", T0, T0 + timedelta(minutes=30))
    [note] = notifications(engine)
    assert (note["event"], note["alert_id"], note["receiver"]) == ("firing", alert["id"], RECEIVER)

    s.run(at=timedelta(minutes=45))
    assert [a["state"] for a in alerts(engine)] == ["firing"]
    assert len(notifications(engine)) == 1

    # the batch job's data recovers
    s.replace_live(calm(T0 + timedelta(hours=3)), "live-0002.parquet")
    result = s.run(at=timedelta(hours=3))
    assert result.outcome == "ok"
    [alert] = alerts(engine)
    assert (alert["state"], alert["resolved"]) == ("resolved", T0 + timedelta(hours=3))
    assert alert["last_value"] <= 0.3
    assert alert["summary"].startswith("[RESOLVED]")
    assert [(n["event"], n["alert_id"], n["status"]) for n in notifications(engine)] == [
        ("firing", alert["id"], "pending"),
        ("resolved", alert["id"], "pending"),
    ]

    # and stays quiet
    s.run(at=timedelta(hours=3, minutes=15))
    assert len(alerts(engine)) == 1 and len(notifications(engine)) == 2


def test_pending_that_recovers_goes_to_ok_and_tells_nobody(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted(), hold="30m")
    s.run()
    s.replace_live(calm(T0 + timedelta(minutes=10)), "live-0002.parquet")
    assert s.run(at=timedelta(minutes=10)).outcome == "ok"
    [alert] = alerts(engine)
    assert (alert["state"], alert["fired"], alert["resolved"]) == ("ok", None, T0 + timedelta(minutes=10))
    assert notifications(engine) == []


def test_for_zero_fires_at_once(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted())  # no `for:`
    assert s.run().notifications_owed == 1
    assert [(a["state"], a["fired"]) for a in alerts(engine)] == [("firing", T0)]


# -- a restart ----------------------------------------------------------------------------------------


def test_a_restart_continues_the_open_episode(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted(), hold="30m")
    s.run()
    [pending] = alerts(engine)
    url = engine.url.render_as_string(hide_password=False)

    # the daemon stops; a new process opens the same database and evaluates at +30m
    engine.dispose()
    second = db.create_engine(url)
    try:
        db.upgrade(second)
        s.evaluator = s.new_evaluator(second)
        result = s.run(at=timedelta(minutes=30))
        assert result.notifications_owed == 1
        [alert] = alerts(second)
        assert (alert["id"], alert["state"], alert["started"]) == (pending["id"], "firing", T0)
        assert len(notifications(second)) == 1
    finally:
        second.dispose()

    # and again, now firing: nothing new is opened or sent
    third = db.create_engine(url)
    try:
        s.evaluator = s.new_evaluator(third)
        result = s.run(at=timedelta(minutes=45))
        assert result.outcome == "breach" and result.notifications_owed == 0
        [alert] = alerts(third)
        assert (alert["id"], alert["state"]) == (pending["id"], "firing")
        assert len(notifications(third)) == 1
    finally:
        third.dispose()


# -- too few rows, errors, dry runs --------------------------------------------------------------


def test_three_rows_are_insufficient_data_and_leave_the_alert_alone(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted())
    s.run()
    before_metrics = len(rows(engine, Metric.__table__))
    [before] = alerts(engine)

    s.replace_live(live_frame(3, end=T0 + timedelta(hours=2), seed=4), "live-0002.parquet")
    result = s.run(at=timedelta(hours=2))
    assert result.outcome == "insufficient_data"
    assert result.evaluation.values == [] and result.changes == []
    run = rows(engine, CheckRun.__table__)[-1]
    assert (run["outcome"], run["sample_size"]) == ("insufficient_data", 3)
    assert "3 rows" in run["error"] and "30" in run["error"]
    assert len(rows(engine, Metric.__table__)) == before_metrics
    assert alerts(engine) == [before]
    assert len(notifications(engine)) == 1


def test_three_rows_and_no_open_alert(tmp_path, engine):
    s = Setup(tmp_path, engine, live=live_frame(3))
    assert s.run().outcome == "insufficient_data"
    assert s.run("latency").outcome == "insufficient_data"
    assert rows(engine, Metric.__table__) == [] and alerts(engine) == [] and notifications(engine) == []
    assert [r["outcome"] for r in rows(engine, CheckRun.__table__)] == ["insufficient_data"] * 2


@pytest.mark.parametrize("check", [DRIFT, "latency"])
def test_a_file_without_a_declared_column_is_an_error_run_with_its_reason(tmp_path, engine, check):
    s = Setup(tmp_path, engine, live=drifted())
    s.run()  # a firing alert that the error must not touch
    [before] = alerts(engine)
    path = tmp_path / "data" / "live-0002.parquet"
    drifted(seed=9).drop(columns=["country"]).to_parquet(path)

    result = s.run(check, at=timedelta(minutes=15))  # does not raise
    assert result.outcome == "error"
    run = rows(engine, CheckRun.__table__)[-1]
    assert (run["check"], run["outcome"], run["sample_size"]) == (check, "error", 0)
    for word in [str(path), "country"]:
        assert word in run["error"]
    assert [m for m in rows(engine, Metric.__table__) if m["run_id"] == run["id"]] == []
    assert alerts(engine) == [before]
    assert len(notifications(engine)) == 1


@pytest.mark.parametrize("check", [DRIFT, "latency"])
def test_an_unreadable_file_is_skipped_and_named_in_the_evidence(tmp_path, engine, check):
    """A corrupt (or half-written) file does not silence the check: the run is over the other files."""
    s = Setup(tmp_path, engine, live=drifted())
    path = tmp_path / "data" / "live-0002.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")

    result = s.run(check)
    assert result.outcome in ("ok", "breach")
    assert result.evaluation.sample_size == 4000  # every row of the readable file
    [(skipped, reason)] = result.evaluation.evidence["skipped_files"].items()
    assert skipped == str(path) and "Parquet" in reason
    assert rows(engine, CheckRun.__table__)[-1]["evidence"]["skipped_files"] == {str(path): reason}


def test_a_glob_of_only_unreadable_files_is_an_error_run(tmp_path, engine):
    s = Setup(tmp_path, engine, live=None)
    path = tmp_path / "data" / "live-0001.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    result = s.run("latency")
    assert result.outcome == "error"
    assert result.evaluation.error.startswith(f"cannot read {path}: ")


def test_a_missing_reference_is_an_error_run(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted())
    (tmp_path / "data" / "reference.parquet").unlink()
    result = s.run()
    assert result.outcome == "error"
    assert "reference" in rows(engine, CheckRun.__table__)[0]["error"]


def test_dry_run_stores_nothing(tmp_path, engine):
    s = Setup(tmp_path, engine, live=drifted(latency_scale=200.0))
    drift = s.run(dry_run=True)
    latency = s.run("latency", dry_run=True)
    assert (drift.outcome, latency.outcome) == ("breach", "breach")
    assert drift.run_id is None and latency.run_id is None
    assert drift.notifications_owed == 1  # what a real run would owe
    for table in (CheckRun, Metric, Alert, Notification):
        assert rows(engine, table.__table__) == [], table.__tablename__


# -- latency ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, outcome", [(20.0, "ok"), (200.0, "breach")])
def test_latency_percentiles_match_numpy(tmp_path, engine, scale, outcome):
    live = live_frame(500, span=timedelta(minutes=90), seed=11, latency_scale=scale)  # a third is outside the window
    s = Setup(tmp_path, engine, live=live)
    result = s.run("latency")
    assert result.outcome == outcome

    in_window = live[(live["created_at"] >= T0 - timedelta(hours=1)) & (live["created_at"] < T0)]
    assert 200 < len(in_window) < 500
    latencies = in_window["latency_ms"].to_numpy()
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    values = {m["metric"]: m for m in rows(engine, Metric.__table__)}
    assert set(values) == {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}
    assert values["p50_ms"]["value"] == pytest.approx(p50, rel=1e-12)
    assert values["p95_ms"]["value"] == pytest.approx(p95, rel=1e-12)
    assert values["p99_ms"]["value"] == pytest.approx(p99, rel=1e-12)
    assert values["max_ms"]["value"] == pytest.approx(latencies.max(), rel=1e-12)
    assert values["mean_ms"]["value"] == pytest.approx(latencies.mean(), rel=1e-12)
    assert all(m["sample_size"] == len(in_window) and m["feature"] == "" for m in values.values())

    if outcome == "breach":
        [alert] = alerts(engine)
        assert (alert["rule"], alert["severity"], alert["state"]) == ("p99_ms > 250", "warning", "firing")
        assert alert["last_value"] == pytest.approx(p99, rel=1e-12)
        assert len(notifications(engine)) == 1
    else:
        assert alerts(engine) == [] and notifications(engine) == []


def test_a_p_value_of_zero_is_stored(tmp_path, engine):
    """K-S on completely separated data gives a p-value that underflows to (almost) 0; the evidence that
    ranks features by how far past the threshold they are must still be JSON PostgreSQL accepts."""
    live = drifted()
    live["amount"] += 1e6
    check = {
        "name": "ks-drift",
        "kind": "drift",
        "every": "15m",
        "window": "1h",
        "method": "ks",
        "features": ["amount", "account_age_days"],
        "alert": [{"when": "drifted == 1", "severity": "critical"}],
    }
    config_path = write_project(tmp_path, live=live, checks=[check])
    project = Project.load(config_path)
    model = project.checks.models[MODEL]
    result = Evaluator(engine, project.config, FixedClock(T0)).run(model, model.check("ks-drift"))
    assert result.outcome == "breach"
    [run] = rows(engine, CheckRun.__table__)
    amount = next(f for f in run["evidence"]["features"] if f["feature"] == "amount")
    assert amount["drifted"] is True and amount["method"] == "K-S p_value"
    assert amount["score"] < 1e-300
    assert run["evidence"]["features"][0]["feature"] == "amount"  # the most drifted first
    [alert] = alerts(engine)
    assert (alert["feature"], alert["state"]) == ("amount", "firing")


def test_a_category_sent_as_a_number_is_the_same_category(tmp_path, sqlite_engine):
    """Reference zip codes are text ("80331"); live ones arrive as numbers (80331): no drift."""
    import numpy as np
    import pandas as pd
    import yaml

    from monitor.clock import FixedClock
    from monitor.daemon.evaluator import Evaluator
    from monitor.daemon.project import Project

    rng = np.random.default_rng(0)
    zips = ["80331", "10115", "20095"]
    (tmp_path / "checks").mkdir()
    pd.DataFrame({"zip": rng.choice(zips, 1000)}).to_parquet(tmp_path / "ref.parquet")
    live = pd.DataFrame(
        {
            "id": range(300),
            "ts": [T0 - timedelta(minutes=1 + i % 50) for i in range(300)],
            "zip": rng.choice([int(z) for z in zips], 300),
        }
    )
    live.to_parquet(tmp_path / "live.parquet")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"owners": {"team": {}}}))
    (tmp_path / "checks" / "m.yaml").write_text(
        yaml.safe_dump(
            {
                "model": "m",
                "owner": "team",
                "reference": {"path": "ref.parquet"},
                "source": {"kind": "files", "path": "live.parquet", "timestamp": "ts", "id": "id", "features": ["zip"]},
                "checks": [{"name": "d", "kind": "drift", "every": "1h", "window": "1h"}],
            }
        )
    )
    project = Project.load(tmp_path / "config.yaml")
    model = project.checks.models["m"]

    result = Evaluator(sqlite_engine, project.config, FixedClock(T0)).run(model, model.check("d"))

    assert result.outcome == "ok"
    assert {v.metric: v.value for v in result.evaluation.values}["drift_share"] == 0.0
