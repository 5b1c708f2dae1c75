"""`monitor check MODEL/CHECK`: evaluate one check now, print, store and notify (or, dry, none of it)."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from factories import FEATURES, live_frame, write_project
from sqlalchemy.orm import Session

from monitor.cli import main
from monitor.storage import db
from monitor.storage.tables import Notification, Replica


@pytest.fixture
def monitor(capsys, caplog, monkeypatch):
    """``monitor ARGS`` in ``cwd``, run in this process as ``python -m monitor`` runs it (what ``main``
    returns is the exit code), its output captured, the log (warnings and errors) after its stderr: what
    these tests check is printed and stored, which needs no process of its own. The real process is
    tested in test_daemon.py, test_demo.py and test_cli_help.py."""
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)

    def run(*args: str, cwd) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()  # output from before is not this command's
        caplog.clear()
        returncode = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["monitor", *args], returncode, out, err + caplog.text)

    return run


def count(db_path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        n = conn.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # table names are the test's own constants
    engine.dispose()
    return n


def test_check_on_a_drifted_window_prints_stores_and_notifies(tmp_path, monitor):
    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC), drift=True))

    done = monitor("check", "fraud-scorer/feature-drift", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "fraud-scorer/feature-drift: breach" in out
    for feature in FEATURES:  # the per-feature table
        assert feature in out
    assert "drift_share" in out and "YES" in out
    assert "[FIRING critical] fraud-scorer / feature-drift" in out  # the console notifier's message
    assert "drifted features, worst first: amount" in out
    assert "1 notification(s) delivered" in out
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT metric, feature FROM metrics")).all()
        sent = conn.execute(sa.text("SELECT status FROM notifications")).scalars().all()
    engine.dispose()
    assert ("drift_share", "") in stored
    assert {(m, f) for m, f in stored if m == "drifted"} == {("drifted", f) for f in FEATURES}
    assert sent == ["sent"]


def test_check_on_three_rows_is_insufficient_data(tmp_path, monitor):
    write_project(tmp_path, live=live_frame(3, end=datetime.now(UTC), drift=True))

    done = monitor("check", "fraud-scorer/feature-drift", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "insufficient_data" in done.stdout
    assert "3 rows in the window, 30 needed" in done.stdout
    assert "FIRING" not in done.stdout
    assert count(tmp_path / "monitor.db", "metrics") == 0
    assert count(tmp_path / "monitor.db", "alerts") == 0


def test_dry_run_stores_and_sends_nothing(tmp_path, monitor):
    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC), drift=True))
    assert monitor("db", "upgrade", cwd=tmp_path).returncode == 0

    done = monitor("check", "fraud-scorer/feature-drift", "--dry-run", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "breach" in done.stdout and "-> firing (notify: firing)" in done.stdout
    assert "dry run: nothing stored, nobody notified" in done.stdout
    assert "[FIRING" not in done.stdout
    for table in ("check_runs", "metrics", "alerts", "notifications"):
        assert count(tmp_path / "monitor.db", table) == 0


@pytest.mark.parametrize("command", [("check", "fraud-scorer/feature-drift", "--dry-run"), ("alerts",)])
def test_dry_run_and_alerts_neither_create_nor_migrate_the_database(tmp_path, command, monitor):
    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC), drift=True))

    done = monitor(*command, cwd=tmp_path)

    # A fresh folder: the dry run evaluates the files source with no database at all, and `alerts`
    # says there are none yet; neither creates the database.
    assert done.returncode == 0, done.stderr
    expected = "dry run: nothing stored, nobody notified (no database yet" if command[0] == "check" else "no alerts yet"
    assert expected in done.stdout
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "monitor.db").exists()

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")  # an older schema: not migrated either
    db.upgrade(engine, "0001")
    engine.dispose()
    done = monitor(*command, cwd=tmp_path)
    assert done.returncode == 1 and "at revision 0001, not at head" in done.stderr
    assert db.current_revision(engine) == "0001"
    engine.dispose()

    assert monitor("db", "upgrade", cwd=tmp_path).returncode == 0
    done = monitor(*command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def _claim_the_sent_notification(db_path, claimed: datetime) -> None:
    """The notification as a running daemon would hold it: claimed (``sending``) at ``claimed`` by a
    replica that beats (this test's parent process stands for the daemon)."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with Session(engine) as session:
        [row] = session.scalars(sa.select(Notification)).all()
        row.status, row.time, row.claimed_by = "sending", claimed, "the-daemon"
        session.merge(Replica(id="the-daemon", host=socket.gethostname(), pid=os.getppid(), started=claimed,
                              seen=datetime.now(UTC)))  # fmt: skip
        session.commit()
    engine.dispose()


def test_check_does_not_resend_what_a_running_daemon_has_in_hand(tmp_path, monitor):
    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC), drift=True))
    first = monitor("check", "fraud-scorer/feature-drift", cwd=tmp_path)
    assert first.returncode == 0 and "1 notification(s) delivered" in first.stdout, first.stderr
    # The daemon claimed it a minute ago and is waiting out a Retry-After.
    _claim_the_sent_notification(tmp_path / "monitor.db", datetime.now(UTC) - timedelta(minutes=1))

    done = monitor("check", "fraud-scorer/feature-drift", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "[FIRING" not in done.stdout and "0 notification(s) delivered" in done.stdout
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM notifications")).scalars().all() == ["sending"]
    engine.dispose()

    # A claim older than the lease is a leftover (its process died): the command settles it.
    _claim_the_sent_notification(tmp_path / "monitor.db", datetime.now(UTC) - timedelta(minutes=6))
    done = monitor("check", "fraud-scorer/feature-drift", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[FIRING critical] fraud-scorer / feature-drift" in done.stdout
    assert "1 notification(s) delivered" in done.stdout


def test_an_unreadable_source_is_an_error_with_its_reason(tmp_path, monitor):
    live = live_frame(100, end=datetime.now(UTC)).drop(columns=["amount"])
    write_project(tmp_path, live=live)

    done = monitor("check", "fraud-scorer/feature-drift", cwd=tmp_path)

    assert done.returncode == 1
    assert "fraud-scorer/feature-drift: error" in done.stdout
    assert "missing column(s) amount" in done.stdout


def test_unknown_model_or_check_is_named(tmp_path, monitor):
    write_project(tmp_path)

    unknown_model = monitor("check", "fraud-scorr/feature-drift", cwd=tmp_path)
    unknown_check = monitor("check", "fraud-scorer/drift", cwd=tmp_path)

    assert unknown_model.returncode == 1 and "unknown model 'fraud-scorr'; models: fraud-scorer" in unknown_model.stderr
    assert unknown_check.returncode == 1 and "checks: feature-drift, latency" in unknown_check.stderr


def test_check_names_a_file_it_could_not_read_and_evaluates_the_others(tmp_path, monitor):
    write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC)))
    corrupt = tmp_path / "data" / "live-0002.parquet"
    corrupt.write_bytes(b"PAR1 half written")

    done = monitor("check", "fraud-scorer/latency", "--dry-run", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "fraud-scorer/latency: ok" in done.stdout and "1,200 rows" in done.stdout
    assert f"  skipped file {corrupt}: " in done.stdout
    assert f"files source: cannot read {corrupt}: " in done.stderr  # the log's warning
    assert "(skipped: the run reads the other files)" in done.stderr
