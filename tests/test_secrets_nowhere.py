"""Secrets come from the environment and go nowhere else: a real daemon with known secrets (a Slack token,
a webhook URL's key, a pager's routing key) fires an alert to Slack and a pager, and no log line (JSON),
no row of any table and no line of /metrics holds any of them. Its JSON log lines each parse, and say
which model, check, run and receiver they are about."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
from conftest import SLACK_TOKEN
from factories import live_frame, write_project

SECRETS = {"SLACK_BOT_TOKEN": SLACK_TOKEN, "HOOK_KEY": "hk-5b1e-never-shown", "ROUTING_KEY": "rk-9f3c-never-shown"}


def test_a_daemon_with_known_secrets_logs_stores_and_exports_none_of_them(tmp_path, slack, pager):
    owners = {"fraud-team": {"slack": "#fraud-alerts", "webhook": {"url": pager.url + "?key=${HOOK_KEY}",
                                                                   "routing_key": "${ROUTING_KEY}"}}}  # fmt: skip
    config = write_project(
        tmp_path,
        live=live_frame(1200, end=datetime.now(UTC), drift=True),
        owners=owners,
        slack={"token": "${SLACK_BOT_TOKEN}", "base_url": slack.url},
    )
    env = {**{k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}, **SECRETS}
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--log-format", "json", "run", "--config", str(config)],
            stdout=out_file, stderr=err_file, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while not (slack.messages() and pager.events()):  # the drift fires, to both receivers
                assert daemon.poll() is None and time.monotonic() < deadline, err_path.read_text()
                time.sleep(0.1)
            assert pager.received[0].path.endswith("?key=" + SECRETS["HOOK_KEY"])  # the secrets did their work
            api = next(
                json.loads(line)["message"].removeprefix("HTTP API on ")
                for line in err_path.read_text().splitlines()
                if '"HTTP API on ' in line
            )
            metrics = httpx.get(api.rstrip("/") + "/metrics", timeout=10).text
            time.sleep(0.5)  # the delivery's own log line and row, just after the peer saw it
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    assert daemon.returncode == 0, err_path.read_text()
    out, err = out_path.read_text(), err_path.read_text()

    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    runs = [line for line in lines if line.get("check") == "feature-drift" and "run_id" in line]
    assert runs and runs[0]["model"] == "fraud-scorer" and runs[0]["level"] == "warning"  # the breach
    assert {line.get("receiver") for line in lines if "delivered to" in line["message"]} >= {"fraud-team/slack"}

    with sqlite3.connect(tmp_path / "monitor.db") as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        stored = "\n".join(repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))  # noqa: S608 - names from sqlite_master
    assert "fraud-team/slack" in stored and "fraud-team/webhook" in stored  # the rows are there to be searched
    assert "monitor_" in metrics
    for name, secret in SECRETS.items():
        for where, text in (("stdout", out), ("log", err), ("database", stored), ("/metrics", metrics)):
            assert secret not in text, f"{name} found in {where}"
