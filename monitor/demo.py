"""``monitor demo``: the whole loop on embedded defaults, in about a minute.

It writes a small project into a folder (a reference data set, a daemon config on SQLite, a check
file), starts a simulated batch-scoring job that writes a Parquet file of scored rows every second,
and runs the real daemon on it. The job is healthy at first, then its inputs drift (larger amounts,
a different country mix), then it recovers: the drift alert fires, naming the drifted features, and
resolves. Nothing here is special-cased: it is the daemon, the files source, evidently and the
console notifier (and Slack, when SLACK_BOT_TOKEN is set) as in production.
"""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

EVERY_S, WINDOW_S = 3, 20
DRIFT_FROM_S, DRIFT_UNTIL_S = 10, 30
TIMEOUT_S = 110
ROWS_PER_SECOND = 60
COUNTRIES = ["US", "DE", "FR", "GB", "BR"]


def _rows(rng, count: int, drifted: bool, end: datetime, span_s: float):
    import pandas as pd

    return pd.DataFrame(
        {
            "row_id": [f"{end.timestamp():.0f}-{i}" for i in range(count)],
            "scored_at": [end - timedelta(seconds=float(s)) for s in rng.uniform(0, span_s, count)],
            "amount": rng.lognormal(4.2 if drifted else 3.0, 1.0, count).round(2),
            "country": rng.choice(COUNTRIES, count, p=[0.1, 0.1, 0.1, 0.1, 0.6] if drifted else [0.4, 0.2, 0.15, 0.15, 0.1]),
            "device_type": rng.choice(["ios", "android", "web"], count, p=[0.3, 0.4, 0.3]),
            "account_age_days": rng.integers(1, 3000, count),
            "score": rng.random(count).round(4),
            "latency_ms": rng.gamma(2.0, 15.0, count).round(1),
        }
    )


def write_project(directory: Path, slack: bool) -> Path:
    """The demo's config, check file and reference; returns the config path."""
    import numpy as np

    (directory / "checks").mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    reference = _rows(rng, 5000, False, datetime.now(UTC), 3600)
    reference.drop(columns=["row_id", "scored_at", "latency_ms"]).to_parquet(directory / "data" / "reference.parquet")
    owners = {"demo-team": {"slack": "${MONITOR_DEMO_CHANNEL:-#monitor-demo}", "mention": ["@on-call"]}}
    config: dict = {
        "database": {"url": f"sqlite:///{directory / 'monitor.db'}"},
        "server": {"listen": "127.0.0.1:0"},
        "checks_dir": "checks",
        "owners": owners,
        "notifiers": {"slack": {"token": "${SLACK_BOT_TOKEN:-}", "base_url": "${SLACK_API_URL:-https://slack.com/api/}"}},
    }
    if slack:  # alerts go to Slack; a catch-all route prints them here as well
        owners["terminal"] = {}
        config["routes"] = [{"match": {}, "also": ["terminal"]}]
    checks = {
        "model": "fraud-scorer",
        "owner": "demo-team",
        "source": {
            "kind": "files",
            "path": "data/scores-*.parquet",
            "timestamp": "scored_at",
            "id": "row_id",
            "features": ["amount", "country", "device_type", "account_age_days"],
            "prediction": "score",
            "latency": "latency_ms",
        },
        "reference": {"path": "data/reference.parquet"},
        "checks": [
            {
                "name": "feature-drift",
                "kind": "drift",
                "every": f"{EVERY_S}s",
                "window": f"{WINDOW_S}s",
                "min_rows": 100,
                "alert": [{"when": "drift_share > 0.3", "severity": "critical"}],
            },
            {
                "name": "latency",
                "kind": "latency",
                "every": f"{EVERY_S}s",
                "window": f"{WINDOW_S}s",
                "alert": [{"when": "p99_ms > 250", "severity": "warning"}],
            },
        ],
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "checks" / "fraud-scorer.yaml").write_text(yaml.safe_dump(checks, sort_keys=False))
    return directory / "config.yaml"


class BatchJob(threading.Thread):
    """A scoring job writing one Parquet file of scored rows a second: healthy, drifted, healthy."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="demo-batch-job", daemon=True)
        import numpy as np

        self.data_dir = data_dir
        self.rng = np.random.default_rng(11)
        self.stop = threading.Event()
        self.started = time.monotonic()
        now = datetime.now(UTC)
        # A window's worth of healthy history, so the first evaluations have data.
        _rows(self.rng, ROWS_PER_SECOND * WINDOW_S, False, now, WINDOW_S).to_parquet(data_dir / "scores-00000.parquet")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def drifting(self) -> bool:
        return DRIFT_FROM_S <= self.elapsed() < DRIFT_UNTIL_S

    def run(self) -> None:
        batch = 1
        while not self.stop.wait(1.0):
            frame = _rows(self.rng, ROWS_PER_SECOND, self.drifting(), datetime.now(UTC), 1.0)
            tmp = self.data_dir / f".scores-{batch:05d}.tmp"
            frame.to_parquet(tmp)
            tmp.rename(self.data_dir / f"scores-{batch:05d}.parquet")  # readers never see half a file
            batch += 1


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run_demo(directory: Path | None = None) -> int:
    import os

    from monitor.daemon.project import Project
    from monitor.daemon.service import Daemon
    from monitor.storage.tables import Alert

    directory = (directory or Path(tempfile.mkdtemp(prefix="monitor-demo-"))).resolve()
    slack = bool(os.environ.get("SLACK_BOT_TOKEN"))
    config_path = write_project(directory, slack)
    project = Project.load(config_path)
    _say(f"project written to {directory}")
    _say(
        "a batch-scoring job writes 60 scored rows a second; drift is injected at "
        f"{DRIFT_FROM_S}s and removed at {DRIFT_UNTIL_S}s; checks run every {EVERY_S}s over the last {WINDOW_S}s"
    )
    _say("alerts go to " + ("Slack and this terminal" if slack else "this terminal (set SLACK_BOT_TOKEN for Slack)"))
    job = BatchJob(directory / "data")
    daemon = Daemon(project)
    job.start()
    daemon.start()
    phase, outcome = "healthy", 1
    try:
        while job.elapsed() < TIMEOUT_S:
            time.sleep(0.5)
            now_phase = "drifting" if job.drifting() else ("recovered" if job.elapsed() >= DRIFT_UNTIL_S else "healthy")
            if now_phase != phase:
                phase = now_phase
                _say(
                    "drift injected: amounts grow and most rows now come from BR"
                    if phase == "drifting"
                    else "the job is healthy again: waiting for the alert to resolve"
                )
            with daemon.engine.connect() as conn:
                states = set(conn.scalars(sa.select(Alert.state).where(Alert.check == "feature-drift")))
            if "resolved" in states and daemon.outbox.pending_count() == 0:
                outcome = 0
                break
    except KeyboardInterrupt:
        _say("interrupted")
    finally:
        job.stop.set()
        daemon.stop()
    if outcome == 0:
        _say(f"done in {job.elapsed():.0f}s: the drift alert fired and resolved.")
    else:
        _say("the alert did not complete its cycle in time; see the log above")
    _say(f"everything is in {directory / 'monitor.db'}; try:")
    _say(f"  monitor alerts --all --config {config_path}")
    reports = sorted((directory / project.config.evidence_dir).glob("*.html.gz"))
    if reports:  # the link in the message was to this daemon, stopped now: the report is a file
        _say(f"  zcat {reports[0]} > report.html   (the drift alert's evidence report: open it in a browser)")
    _say(f"  monitor check fraud-scorer/feature-drift --dry-run --config {config_path}")
    _say(
        f'  sqlite3 {directory / "monitor.db"} "select time, feature, metric, value from metrics '
        'where \\"check\\" = \'feature-drift\' order by time desc limit 20"   (with the sqlite3 shell)'
    )
    return outcome
