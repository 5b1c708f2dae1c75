"""The daemon at scale: N models, each with drift, latency and volume checks every minute.

    python bench/scale.py                      # 100 models for 3 minutes
    python bench/scale.py --models 1000 --minutes 5 --processes 2   # workers: monitor/daemon/workers.py

It writes a project into a temporary directory: N model files, each reading its own Parquet file of
``--rows`` (10,000) rows in the last hour (3 features: two numbers and a category, a latency),
each with a drift check (against a reference of as many rows), a latency and a volume check, all
``every: 1m`` over ``window: 1h``, alerts to the console. It starts ``python -m monitor run`` as a
separate process and, once every check has had its first run and a minute more, samples for ``--minutes``: evaluations per
minute (``check_runs``), the daemon's CPU share of the machine (``/proc/<pid>/stat``), runs that
started late or did not run (``monitor_evaluations_late_total`` in ``/metrics``), the median start
delay, and peak RSS (``VmHWM``). The target (issue 15): every check runs every minute, none late.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parent.parent


def frame(rows: int, end: datetime, seed: int, span: timedelta = timedelta(hours=1)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(rows)],
            "created_at": [end - timedelta(seconds=float(s)) for s in rng.uniform(1, span.total_seconds(), rows)],
            "amount": rng.lognormal(3.0, 1.0, rows),
            "age": rng.integers(18, 90, rows).astype(float),
            "country": rng.choice(["US", "DE", "FR", "GB"], rows),
            "score": rng.random(rows),
            "latency_ms": rng.gamma(2.0, 20.0, rows),
        }
    )


def project(root: Path, models: int, rows: int, processes: int = 0) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "checks").mkdir()
    now = datetime.now(UTC)
    frame(rows, now, 1).to_parquet(root / "data" / "reference.parquet")
    # Rows from an hour ago to an hour ahead: the last hour's window always holds about `rows` of them.
    # Each model has its own file (a copy: the same rows cost the same to read), as each would have its own job.
    live = root / "data" / "live.parquet"
    frame(rows * 2, now + timedelta(hours=1), 2, span=timedelta(hours=2)).to_parquet(live)
    config = {"database": {"url": f"sqlite:///{root / 'monitor.db'}"}, "server": {"listen": "127.0.0.1:0"},
              "checks_dir": "checks", "owners": {"team": {"mention": []}}, "processes": processes}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    for i in range(models):
        (root / "data" / f"model-{i:04d}").mkdir()
        shutil.copyfile(live, root / "data" / f"model-{i:04d}" / "live-0001.parquet")
        source = {"kind": "files", "path": f"data/model-{i:04d}/live-*.parquet", "timestamp": "created_at",
                  "id": "request_id", "features": ["amount", "age", "country"], "prediction": "score",
                  "latency": "latency_ms"}  # fmt: skip
        checks = [
            {"name": "drift", "kind": "drift", "every": "1m", "window": "1h", "alert": [{"when": "drift_share > 0.5"}]},
            {"name": "latency", "kind": "latency", "every": "1m", "window": "1h", "alert": [{"when": "p99_ms > 1000"}]},
            {"name": "volume", "kind": "volume", "every": "1m", "window": "1h", "alert": [{"when": "rows < 10"}]},
        ]
        model = {"model": f"model-{i:04d}", "owner": "team", "source": source, "reference": {"path": "data/reference.parquet"},
                 "checks": checks}  # fmt: skip
        (root / "checks" / f"model-{i:04d}.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return root / "config.yaml"


def family(pid: int) -> list[int]:
    """The daemon and its worker processes (and theirs)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            out.extend(family(int(child)))
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of the daemon and its workers: in user space and in the kernel."""
    user = system = 0.0
    for member in family(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11]) / os.sysconf("SC_CLK_TCK")
        system += int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return user, system


def peak_rss_mib(pid: int) -> float:
    """The peak resident size of the daemon plus each worker's."""
    total = 0.0
    for member in family(pid):
        match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{member}/status").read_text())
        total += int(match[1]) / 1024 if match else 0.0
    return total


def late_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for why, value in re.findall(r'monitor_evaluations_late_total\{[^}]*why="(\w+)"\} ([0-9.e+]+)', text):
        out[why] = out.get(why, 0.0) + float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=0, help="the daemon's worker processes (0: none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="monitor-scale-") as tmp:
        root = Path(tmp)
        config = project(root, args.models, args.rows, args.processes)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = open(root / "daemon.log", "w")  # noqa: SIM115 - open for the daemon's whole life
        process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)], cwd=root, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            url = None
            deadline = time.monotonic() + 120
            while url is None and time.monotonic() < deadline:
                time.sleep(0.2)
                found = re.search(r"HTTP API on (http://\S+)", (root / "daemon.log").read_text())
                url = found[1] if found else None
            if url is None:
                raise SystemExit("the daemon did not start within 120 s")
            # To settle: the daemon staggers the checks' first runs 50 ms apart, then a minute more.
            time.sleep(60 + 0.05 * args.models * 3)
            engine = sa.create_engine(f"sqlite:///{root / 'monitor.db'}")
            with engine.connect() as conn:
                runs_before = conn.scalar(sa.text("SELECT count(*) FROM check_runs")) or 0
            late_before = late_counts(url)
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            time.sleep(args.minutes * 60)
            cpu_after, wall_after = cpu_seconds(process.pid), time.monotonic()
            with engine.connect() as conn:
                runs_after = conn.scalar(sa.text("SELECT count(*) FROM check_runs")) or 0
                durations = [r[0] for r in conn.execute(sa.text(
                    "SELECT (julianday(finished) - julianday(started)) * 86400 FROM check_runs ORDER BY id DESC LIMIT 3000"))]  # fmt: skip
            late_after = late_counts(url)
            rss = peak_rss_mib(process.pid)
            engine.dispose()
        finally:
            process.terminate()
            process.wait(timeout=60)
            log.close()
    minutes = (wall_after - wall_before) / 60
    checks = args.models * 3
    per_minute = (runs_after - runs_before) / minutes
    cores = os.cpu_count() or 1
    user_share, system_share = ((a - b) / (wall_after - wall_before) / cores for a, b in zip(cpu_after, cpu_before, strict=True))
    late = {why: late_after.get(why, 0) - late_before.get(why, 0) for why in ("late", "still_running", "missed")}
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{args.models} models, {checks} checks every minute over {args.rows:,}-row windows, processes: {args.processes}, "
          f"measured {minutes:.1f} min")  # fmt: skip
    print(f"evaluations per minute: {per_minute:,.0f} of {checks:,} due ({per_minute / checks:.0%})")
    print(f"daemon CPU: {user_share + system_share:.0%} of the machine's {cores} cores ({user_share:.0%} user, "
          f"{system_share:.0%} system); {(cpu_after[0] + cpu_after[1] - sum(cpu_before)) / max(runs_after - runs_before, 1) * 1000:.1f} ms "
          "of CPU per evaluation")  # fmt: skip
    print(
        f"runs late: {late['late']:.0f}, skipped while the last still ran: {late['still_running']:.0f}, missed: {late['missed']:.0f}"
    )
    print(f"evaluation time: median {statistics.median(durations):.3f}s, max {max(durations):.3f}s; peak RSS {rss:,.0f} MiB")
    kept_up = per_minute >= 0.99 * checks and not any(late.values())
    print(f"target: every check every minute, none late: {'met' if kept_up else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
