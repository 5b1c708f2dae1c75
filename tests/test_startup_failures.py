"""A daemon that cannot start says so in one line that says what to change, exits 2, and prints no
traceback: the database unreachable, the listen port taken."""

from __future__ import annotations

import socket

import pytest
from factories import write_project

from monitor.cli import main


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_unreachable_database(tmp_path, capsys):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write_project(tmp_path, database_url=f"postgresql+psycopg://monitor@127.0.0.1:{port}/monitor")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("monitor: ")]
    assert line.startswith(f"monitor: cannot use the database postgresql+psycopg://monitor@127.0.0.1:{port}/monitor: ")
    assert "the database is unavailable" in line and "Traceback" not in err


def test_a_listen_port_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_project(tmp_path)
        edit(config, "listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}")
        assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("monitor: ")]
    assert line.startswith(f"monitor: cannot serve on 127.0.0.1:{port}: ")
    assert line.endswith("stop what holds it, or set server.listen") and "Traceback" not in err


def test_a_second_daemon_on_one_sqlite_file_exits_naming_it_and_one_after_a_kill_starts(tmp_path):
    """SQLite takes one daemon: a second would schedule every check again and send every notification
    twice. The lock is the kernel's, so a daemon killed with -9 leaves nothing that blocks the next."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = write_project(tmp_path)
    database = (tmp_path / "monitor.db").resolve()
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    command = [sys.executable, "-m", "monitor", "run", "--config", str(config)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lock = database.with_name("monitor.db.lock")
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):  # the first holds it
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 2
        [line] = [line for line in second.stderr.splitlines() if line.startswith("monitor: ")]
        assert line == (
            f"monitor: another monitor daemon (pid {first.pid}) uses the SQLite database {database}: SQLite takes one "
            "daemon; stop that one, or run several on PostgreSQL"
        )
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    third = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while lock.read_text().strip() != str(third.pid):
            assert third.poll() is None and time.monotonic() < deadline, third.communicate()
            time.sleep(0.05)
    finally:
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=60) == 0


def test_under_json_logs_why_the_daemon_did_not_start_is_a_json_line_too(tmp_path):
    """A log pipeline that parses every line of the daemon's stderr gets the reason it exited as well."""
    import json
    import os
    import subprocess
    import sys

    config = write_project(tmp_path)
    config.write_text(config.read_text() + "retention:\n  raw: forever\n")
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "monitor", "--log-format", "json", "run", "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    [error] = [line for line in lines if line["level"] == "error"]
    assert f"{config}:" in error["message"] and "retention.raw" in error["message"]


def test_a_second_path_to_the_same_sqlite_file_is_refused_too(tmp_path):
    import os

    from monitor.storage import db

    engine = db.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    db.upgrade(engine)
    os.link(tmp_path / "monitor.db", tmp_path / "linked.db")
    first, second = db.SqliteLock(engine), db.SqliteLock(db.create_engine(f"sqlite:///{tmp_path / 'linked.db'}"))
    first.acquire()
    with pytest.raises(db.SqliteInUse, match=r"linked\.db \(by another path to the same file\)"):
        second.acquire()
    first.release()
    second.acquire()  # free again once the first is gone
    second.release()
    engine.dispose()
