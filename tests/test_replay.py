"""``monitor replay``: a check file's rules over past data, nothing stored, nothing sent. The daemon runs
a week on a fake clock (hourly runs, two slow spells in the latency); the replay of the same file over
the same week opens exactly the episodes the daemon opened, and --against a looser threshold shows
the difference in alerts."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project

from monitor.cli import main
from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.ingest.sampler import Sampler
from monitor.storage import db
from monitor.storage.tables import Alert, CheckRun, Notification

WEEK = timedelta(days=7)
START = T0 - WEEK


def week_of_latency() -> pd.DataFrame:
    """A row a minute for a week; p99 near 600 ms in two spells (day 2, 6 h; day 5, 3 h), 60 ms otherwise."""
    rng = np.random.default_rng(5)
    times = pd.date_range(START - timedelta(hours=1), T0, freq="1min", tz="UTC")
    slow = ((times >= START + timedelta(days=2)) & (times < START + timedelta(days=2, hours=6))) | (
        (times >= START + timedelta(days=5)) & (times < START + timedelta(days=5, hours=3))
    )
    latency = np.where(slow, rng.normal(500, 30, len(times)), rng.normal(40, 5, len(times)))
    return pd.DataFrame({"request_id": [f"r{i}" for i in range(len(times))], "created_at": times,
                         "amount": 1.0, "country": "US", "account_age_days": 1, "score": 0.5, "latency_ms": latency})  # fmt: skip


CHECKS = [{"name": "latency", "kind": "latency", "every": "1h", "window": "1h", "min_rows": 10,
           "alert": [{"when": "p99_ms > 300", "severity": "warning", "for": "1h"}]}]  # fmt: skip


def test_a_replay_of_the_week_opens_the_episodes_the_daemon_opened_and_against_shows_a_changes_budget(tmp_path, capsys):
    config = write_project(tmp_path, live=week_of_latency(), checks=CHECKS)
    clock = FixedClock(START)
    daemon = Daemon(Project.load(config), clock=clock)
    daemon.prepare()
    model = daemon.project.checks.models["fraud-scorer"]
    while clock.now() <= T0:  # the daemon's hourly runs, on its clock
        daemon.evaluate(model, model.check("latency"))
        clock.advance(timedelta(hours=1))
    with daemon.engine.connect() as conn:
        live = [tuple(r) for r in conn.execute(sa.select(Alert.rule, Alert.feature, Alert.severity, Alert.started,
                                                         Alert.fired, Alert.resolved).order_by(Alert.id))]  # fmt: skip
        told = conn.scalar(sa.select(sa.func.count()).select_from(Notification))
    daemon.engine.dispose()
    assert len(live) == 2 and told == 4  # two spells, each fired and resolved

    check_file = tmp_path / "checks" / "fraud-scorer.yaml"
    looser = tmp_path / "looser.yaml"
    looser.write_text(check_file.read_text().replace("p99_ms > 300", "p99_ms > 300\n    for: 4h").replace("for: 1h\n", "", 1))
    capsys.readouterr()
    args = ["replay", "--config", str(config), str(check_file), "--since", START.isoformat(), "--until", T0.isoformat()]
    assert main([*args, "--format", "json", "--against", str(looser)]) == 0
    out = json.loads(capsys.readouterr().out)
    [latency] = out["replay"]["checks"]
    replayed = [(e["rule"], e["feature"], e["severity"], e["started"], e["fired"], e["resolved"]) for e in latency["episodes"]]
    assert replayed == [(r, f, s, a.isoformat(), b and b.isoformat(), c and c.isoformat()) for r, f, s, a, b, c in live]
    assert out["replay"]["totals"] == {"alerts": 2, "messages": 4, "runs": 169}
    assert all(e["peak"] > 300 for e in latency["episodes"])
    # Held for 4 h, only the 6-hour spell fires: the pull request's budget is one alert, two messages.
    assert out["against"]["replay"]["totals"]["alerts"] == 1 and out["against"]["replay"]["totals"]["messages"] == 2

    assert main(args + ["--against", str(looser)]) == 0  # the text a reviewer reads
    text = capsys.readouterr().out
    assert "2 alerts, 4 messages in 7d (nothing stored, nothing sent)" in text
    assert "1 alert, 2 messages in 7d" in text
    assert text.rstrip().splitlines()[-1].split() == ["total", "2", "alerts,", "4", "messages", "1", "alert,", "2", "messages"]
    with daemon.engine.connect() as conn:  # the daemon's database is as the daemon left it
        assert conn.scalar(sa.select(sa.func.count()).select_from(Notification)) == told


def test_a_replay_over_an_ingest_source_reads_the_stored_samples_and_writes_nothing_there(tmp_path, capsys):
    config = write_project(tmp_path)
    stream = {"model": "stream", "owner": "fraud-team", "source": {"kind": "ingest", "features": ["amount"]},
              "checks": [{"name": "latency", "kind": "latency", "every": "1h", "window": "1h", "min_rows": 10,
                          "alert": [{"when": "p99_ms > 300", "severity": "warning"}]}]}  # fmt: skip
    (tmp_path / "checks" / "stream.yaml").write_text(yaml.safe_dump(stream))
    engine = db.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    db.upgrade(engine)
    sampler = Sampler(engine, FixedClock(T0), capacity=100)
    start = T0 - timedelta(hours=6)
    for minute in range(6 * 60):  # six hours of rows a minute apart; hour 3 is slow
        at = start + timedelta(minutes=minute)
        latency = 600.0 if 3 * 60 <= minute < 4 * 60 else 40.0
        rows = [{"id": f"{minute}-{i}", "ts": at.timestamp() + i, "features": {"amount": 1.0}, "prediction": 0.5,
                 "latency_ms": latency} for i in range(5)]  # fmt: skip
        sampler.add("stream", rows, rejected=0, received=at.timestamp())
    sampler.flush()
    capsys.readouterr()
    args = ["replay", "--config", str(config), str(tmp_path / "checks" / "stream.yaml"), "--since", "6h",
            "--until", T0.isoformat(), "--format", "json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    [latency] = out["replay"]["checks"]
    [episode] = latency["episodes"]
    assert latency["runs"] == 7 and 550 < episode["peak"] <= 600  # the slow hour, from the samples (a p99 of its sketch)
    with engine.connect() as conn:  # read, never written: no run, no episode in the daemon's database
        assert conn.scalar(sa.select(sa.func.count()).select_from(CheckRun)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(Alert)) == 0
    engine.dispose()


def test_a_replay_of_an_ingest_model_without_the_daemons_database_says_so_and_makes_none(tmp_path, capsys):
    config = write_project(tmp_path, database_url=f"sqlite:///{tmp_path / 'nowhere' / 'never.db'}")
    stream = {"model": "stream", "owner": "fraud-team", "source": {"kind": "ingest", "features": ["amount"]},
              "checks": [{"name": "latency", "kind": "latency", "every": "1h", "window": "1h"}]}  # fmt: skip
    (tmp_path / "checks" / "stream.yaml").write_text(yaml.safe_dump(stream))
    assert main(["replay", "--config", str(config), str(tmp_path / "checks" / "stream.yaml"), "--since", "3h"]) == 1
    assert "no daemon database at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_a_probe_is_not_replayed_it_would_call_its_endpoint_now(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROBE_TOKEN", "secret")
    from tests.test_probe import MODEL, write_probe_project

    config = write_probe_project(tmp_path, "http://127.0.0.1:9/never-called", f"sqlite:///{tmp_path / 'monitor.db'}")
    assert main(["replay", "--config", str(config), str(tmp_path / "checks" / f"{MODEL}.yaml"), "--since", "2h"]) == 0
    said = capsys.readouterr()
    assert "not replayed (probes call their endpoint now; they read no past data)" in said.err
    assert "0 alerts, 0 messages in 2h" in said.out


def test_against_pairs_the_checks_by_name_and_a_check_only_one_side_has_shows_a_dash(tmp_path, capsys):
    config = write_project(tmp_path, live=live_frame(300), checks=CHECKS)
    check_file = tmp_path / "checks" / "fraud-scorer.yaml"
    changed = yaml.safe_load(check_file.read_text())
    slow = {"name": "slow", "kind": "latency", "every": "1h", "window": "1h", "min_rows": 10,
            "alert": [{"when": "p99_ms > 50", "severity": "warning"}]}  # fmt: skip
    changed["checks"] = [slow, CHECKS[0] | {"name": "latency-p99"}]  # one added before, the other renamed
    other = tmp_path / "changed.yaml"
    other.write_text(yaml.safe_dump(changed))
    capsys.readouterr()
    args = ["replay", "--config", str(config), str(check_file), "--since", "2h", "--until", T0.isoformat()]
    assert main([*args, "--against", str(other)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[-4:]]
    assert rows == [
        ["fraud-scorer/latency", "0", "alerts,", "0", "messages", "-"],
        ["fraud-scorer/slow", "-", "1", "alert,", "1", "message"],
        ["fraud-scorer/latency-p99", "-", "0", "alerts,", "0", "messages"],
        ["total", "0", "alerts,", "0", "messages", "1", "alert,", "1", "message"],
    ]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--against=--output=OUT:x"], "give a file, or REV:PATH"),  # never an option of git's
        (["--against", "HEAD:"], "give a file, or REV:PATH"),  # a revision's folder, not a file
        (["--since", "100000000d"], "--since reaches before 1970-01-01"),
        (["--since", "1d", "--until", "0001-01-08T00:00"], "--until reaches before 1970-01-01"),
        (["--since", "1d", "--step", "99999999d"], "--step 99999999d is longer than the replay (1d)"),
        (["--against", "HEAD:" + "a" * 5000], "--against HEAD:aaa"),  # too long for a path: git says it has none
        (["--until", "9999-12-31T23:59"], "is in the future"),
    ],
)
def test_a_replay_told_what_it_cannot_do_says_what_to_change(tmp_path, capsys, given, said):
    config = write_project(tmp_path, checks=CHECKS)
    args = ["replay", "--config", str(config), str(tmp_path / "checks" / "fraud-scorer.yaml")]
    assert main([*args, *[a.replace("OUT", str(tmp_path / "written")) for a in given]]) == 1
    assert said in capsys.readouterr().err
    assert not list(tmp_path.glob("written*"))


def test_a_replay_says_why_runs_found_nothing_and_a_failing_checks_peak_is_its_failing_runs(tmp_path, capsys):
    config = write_project(tmp_path, live=live_frame(300), checks=CHECKS)  # rows only in the last hour
    args = ["replay", "--config", str(config), str(tmp_path / "checks" / "fraud-scorer.yaml"), "--since", "6h",
            "--until", T0.isoformat()]  # fmt: skip
    capsys.readouterr()
    assert main([*args, "--format", "json"]) == 0
    [latency] = json.loads(capsys.readouterr().out)["replay"]["checks"]
    assert latency["reasons"] == [{"outcome": "insufficient_data", "error": "0 rows in the window, 10 needed", "runs": 6}]
    [failing] = latency["episodes"]  # three empty windows in a row: the check is failing, until rows come
    assert (failing["rule"], failing["resolved"], failing["peak"]) == ("failing_runs >= 3", T0.isoformat(), 3)
    assert main(args) == 0
    assert "    6 runs insufficient_data: 0 rows in the window, 10 needed\n" in capsys.readouterr().out
