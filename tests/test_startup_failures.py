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
