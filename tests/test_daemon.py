"""`monitor run`: checks on their schedule, one log line per evaluation, a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from conftest import checkout_env
from factories import live_frame, write_project

FAST_CHECKS = [
    {
        "name": "feature-drift",
        "kind": "drift",
        "every": "1s",
        "window": "1h",
        "alert": [{"when": "drift_share > 0.3", "severity": "critical"}],
    },
    {
        "name": "latency",
        "kind": "latency",
        "every": "1s",
        "window": "1h",
        "alert": [{"when": "p99_ms > 100000", "severity": "warning"}],
    },
]


def wait_for_runs(db_path, at_least: int, timeout: float = 60.0) -> int:
    """Poll the database the daemon writes until it has recorded ``at_least`` runs."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    runs = conn.scalar(sa.text("SELECT count(*) FROM check_runs"))
                if runs >= at_least:
                    return runs
            except sa.exc.OperationalError:
                pass  # not migrated yet
            time.sleep(0.2)
        raise AssertionError(f"fewer than {at_least} runs after {timeout}s")
    finally:
        engine.dispose()


def start_daemon(folder) -> subprocess.Popen:
    """``monitor run`` in ``folder``, this checkout's."""
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "run"],
        cwd=folder,
        env=checkout_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


STOP_SIGNALS = [signal.SIGTERM, signal.SIGINT]


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    """A project and a running daemon on it for each stop signal, all started at once: a daemon's first
    seconds go mostly to imports (evidently's, for the drift check), and two cores do both side by side."""
    started = {}
    for stop_signal in STOP_SIGNALS:
        folder = tmp_path_factory.mktemp(stop_signal.name)
        write_project(folder, live=live_frame(1200, end=datetime.now(UTC), drift=True), checks=FAST_CHECKS)
        started[stop_signal] = (folder, start_daemon(folder))
    yield started
    for _, daemon in started.values():
        daemon.kill()
        daemon.communicate()


@pytest.mark.parametrize("stop_signal", STOP_SIGNALS)
def test_run_evaluates_on_schedule_alerts_once_and_stops_cleanly(daemons, stop_signal):
    tmp_path, daemon = daemons[stop_signal]
    try:
        wait_for_runs(tmp_path / "monitor.db", at_least=6)
        daemon.send_signal(stop_signal)
        out, err = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, err
    assert "monitor started: 2 checks of 1 models" in err
    assert "monitor stopped" in err
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    with engine.connect() as conn:
        runs = conn.scalar(sa.text("SELECT count(*) FROM check_runs"))
        unfinished = conn.scalar(sa.text("SELECT count(*) FROM notifications WHERE status != 'sent'"))
        firing = conn.scalars(sa.text("SELECT state FROM alerts")).all()
    engine.dispose()
    evaluation_lines = [line for line in err.splitlines() if "fraud-scorer/" in line and " rows, " in line]
    assert len(evaluation_lines) == runs  # one log line per evaluation
    assert firing == ["firing"]  # one episode, however many evaluations
    assert out.count("[FIRING critical] fraud-scorer / feature-drift") == 1
    assert unfinished == 0


def test_run_refuses_an_invalid_daemon_config(tmp_path):
    (tmp_path / "config.yaml").write_text("databse:\n  url: sqlite:///x.db\n")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "run"], cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "config.yaml:1:1: databse: unknown key 'databse' (did you mean 'database'?)" in done.stderr


def test_a_broken_check_file_is_skipped_and_the_others_run(tmp_path):
    # The subject is the broken file: the latency check alone runs (no drift check, so no evidently to import).
    latency = [check for check in FAST_CHECKS if check["kind"] == "latency"]
    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC)), checks=latency)
    (tmp_path / "checks" / "broken.yaml").write_text("model: other\nowner: fraud-team\nsource: {kind: nope}\n")
    daemon = start_daemon(tmp_path)
    try:
        wait_for_runs(tmp_path / "monitor.db", at_least=2)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert daemon.returncode == 0
    assert "check file skipped:" in err and "broken.yaml:3:16: source.kind: unknown kind 'nope'" in err


def test_a_database_outage_skips_recording_and_the_next_run_records(tmp_path):
    """The database down: the evaluation is logged as not recorded, nothing half-written, and the
    daemon carries on; when the database is back the next run records normally."""
    from monitor.daemon.project import Project
    from monitor.daemon.service import Daemon
    from monitor.storage import db

    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC), drift=True), checks=FAST_CHECKS)
    daemon = Daemon(Project.load(tmp_path / "config.yaml"))
    db.upgrade(daemon.engine)
    model = daemon.project.checks.models["fraud-scorer"]
    drift = model.check("feature-drift")
    database = tmp_path / "monitor.db"
    hidden = tmp_path / "elsewhere.db"
    daemon.engine.dispose()
    database.rename(hidden)
    database.mkdir()  # a directory where the file was: SQLite cannot open it

    assert daemon.evaluate(model, drift) is None  # logged, not raised

    database.rmdir()
    hidden.rename(database)
    daemon.engine.dispose()
    result = daemon.evaluate(model, drift)
    assert result is not None and result.outcome == "breach" and result.run_id is not None
    daemon.engine.dispose()


def test_a_run_that_starts_late_or_not_at_all_is_counted_in_metrics_and_logged(tmp_path, caplog):
    """The scheduler says when a run was due as it submits it; a run that starts past max(1s, a tenth of
    its interval) after that, or that the scheduler skipped (its last run still ran) or missed, shows."""
    from datetime import timedelta

    from apscheduler.events import (
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        EVENT_JOB_SUBMITTED,
        JobExecutionEvent,
        JobSubmissionEvent,
    )

    from monitor.daemon.project import Project
    from monitor.daemon.service import Daemon

    config = write_project(tmp_path, live=live_frame(1200))
    daemon = Daemon(Project.load(config))
    daemon.prepare()
    model = daemon.project.checks.models["fraud-scorer"]
    job = "fraud-scorer/latency"  # every 1m: late past 6s
    now = datetime.now(UTC)
    daemon._on_scheduler_event(JobSubmissionEvent(EVENT_JOB_SUBMITTED, job, "default", [now - timedelta(seconds=2)]))
    daemon.evaluate(model, model.check("latency"))
    daemon._on_scheduler_event(JobSubmissionEvent(EVENT_JOB_SUBMITTED, job, "default", [now - timedelta(seconds=30)]))
    daemon.evaluate(model, model.check("latency"))
    daemon._on_scheduler_event(JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, job, "default", [now]))
    daemon._on_scheduler_event(JobExecutionEvent(EVENT_JOB_MISSED, job, "default", now))
    metrics = daemon.telemetry.render().decode()
    assert 'monitor_evaluation_start_delay_seconds_count{check="latency",model="fraud-scorer"} 2.0' in metrics
    for why in ("late", "still_running", "missed"):
        assert f'monitor_evaluations_late_total{{check="latency",model="fraud-scorer",why="{why}"}} 1.0' in metrics
    late = [r.getMessage() for r in caplog.records if "after it was due" in r.getMessage()]
    assert len(late) == 1 and late[0].startswith("fraud-scorer/latency started 30.")
    daemon.engine.dispose()
