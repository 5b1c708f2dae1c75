"""A model service installs the client alone (``pip install monitor``): a fresh virtual environment
gets neither evidently nor pandas, imports ``monitor.client`` and sends rows that a real daemon takes;
the ``monitor`` command there says what to install for the daemon.

Making the environment and installing into it takes tens of seconds, mostly waiting on pip, so it is
started as soon as collection is done and runs beside the other tests (``background`` in conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_client import MODEL, TOKEN, ingest_totals, running_daemon
from test_demo import TimedRun

REPO = Path(__file__).resolve().parent.parent
DAEMON_ONLY = ["evidently", "pandas", "numpy", "sqlalchemy", "pydantic", "uvicorn", "apscheduler"]


def make_client_venv() -> TimedRun:
    folder = Path(tempfile.mkdtemp(prefix="monitor-test-client-"))
    venv = folder / "venv"
    script = (
        f"set -e; {sys.executable} -m venv {venv}; "
        f"{venv}/bin/python -m pip install --quiet --disable-pip-version-check {REPO}; echo installed"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return TimedRun(["bash", "-c", script], env=env, cleanup=folder)


@pytest.mark.slow
@pytest.mark.background(start=make_client_venv)
def test_the_client_installs_alone_and_sends_rows_without_the_daemons_dependencies(background, tmp_path):
    made = background
    assert made.wait(timeout=240) == 0, "".join(made.stderr)
    python = made.cleanup / "venv" / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MONITOR_CONFIG")}
    clean["PYTHONSAFEPATH"] = "1"  # not the checkout from the working directory: the installed package

    found = subprocess.run(
        [str(python), "-c", "import importlib.util, json, sys; "
         f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {[*DAEMON_ONLY, 'monitor.client']!r}}}))"],
        capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {**dict.fromkeys(DAEMON_ONLY, False), "monitor.client": True}

    with running_daemon(tmp_path / "daemon") as daemon:
        send = (
            "from monitor.client import MonitorClient\n"
            f"with MonitorClient({daemon.http.url!r}, {MODEL!r}, token={TOKEN!r}) as client:\n"
            "    for i in range(50):\n"
            "        client.log_prediction(f'p{i}', {'amount': 10.5 + i, 'country': 'DE'}, 0.1, latency_ms=5)\n"
            "    assert client.flush(timeout=20)\n"
            "    print(client.sent.predictions)\n"
        )
        sent = subprocess.run([str(python), "-c", send], capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=60)
        assert (sent.returncode, sent.stdout.strip()) == (0, "50"), sent.stderr
        assert ingest_totals(daemon) == (50, 0)

    command = subprocess.run([str(python), "-m", "monitor", "validate"], capture_output=True, text=True, env=clean,
                             cwd=tmp_path, timeout=60)  # fmt: skip
    assert command.returncode == 2
    assert "is not installed: the monitor command needs the daemon's dependencies, pip install 'monitor[daemon]'" in (
        command.stderr
    )
    shutil.rmtree(made.cleanup, ignore_errors=True)
