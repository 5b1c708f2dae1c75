"""The daemon's cold start and breach-to-message time, end to end.

    python bench/daemon.py                # 5 starts; --repeat N

Each round writes a project into a fresh temporary directory (tests/factories.py: one model read
from Parquet files, a drift check whose window has drifted and a latency check, every minute) whose
Slack is a Slack Web API on loopback in this process (tests/fakes/slack_api.py), and starts
``python -m monitor run`` as a separate process. It measures, on the wall clock:

- **start to first evaluation**: from the process's start to the end of its first recorded run
  (``check_runs.finished``), against the target of 3 s;
- **breach to message**: from the end of the breaching drift run to the arrival of its Slack
  message at the server, against the target of 1 s.

Baselines in the same run: a bare interpreter (``python -c pass``) and ``import monitor.cli``'s cost
(``python -c "import monitor.cli"``), each the median of the rounds; the figures are medians too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.factories import live_frame, write_project  # noqa: E402
from tests.fakes.slack_api import FakeSlackAPI  # noqa: E402

TOKEN = "xoxb-bench"


def interpreter(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return time.perf_counter() - started


def one_round(slack: FakeSlackAPI) -> tuple[float, float]:
    from datetime import UTC, datetime

    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        root = Path(tmp)
        end = datetime.now(UTC)
        config = write_project(root, live=live_frame(600, end=end, drift=True), slack={"token": TOKEN, "base_url": slack.url})
        engine = sa.create_engine(f"sqlite:///{root / 'monitor.db'}")
        before = len(slack.requests)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started_wall = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            first_run = breach_run = posted = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (first_run is None or breach_run is None or posted is None):
                time.sleep(0.01)
                try:
                    with engine.connect() as conn:
                        rows = conn.execute(sa.text('SELECT "check", outcome, finished FROM check_runs')).all()
                except sa.exc.OperationalError:  # not created yet, or being migrated
                    continue
                if rows and first_run is None:
                    first_run = min(_seconds(r[2]) for r in rows)
                breaches = [_seconds(r[2]) for r in rows if r[0] == "feature-drift" and r[1] == "breach"]
                if breaches and breach_run is None:
                    breach_run = min(breaches)
                posts = [r.received for r in slack.requests[before:] if r.method == "chat.postMessage" and r.ok]
                if posts and posted is None:
                    posted = min(posts)
            if first_run is None or breach_run is None or posted is None:
                raise SystemExit("the daemon did not evaluate and post within 60 s")
            return first_run - started_wall, posted - breach_run
        finally:
            process.terminate()
            process.wait(timeout=30)
            engine.dispose()


def _seconds(value) -> float:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    slack = FakeSlackAPI(TOKEN).start()
    try:
        starts, breaches, bare, imports = [], [], [], []
        for _ in range(args.repeat):
            bare.append(interpreter("pass"))
            imports.append(interpreter("import monitor.cli"))
            start, breach = one_round(slack)
            starts.append(start)
            breaches.append(breach)
    finally:
        slack.stop()
    med = statistics.median
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of {args.repeat} starts")
    print(f"baselines: bare interpreter {med(bare):.3f}s; import monitor.cli {med(imports):.3f}s")
    print(
        f"start to first evaluation: {med(starts):.2f}s (min {min(starts):.2f}, max {max(starts):.2f}); target < 3 s: "
        f"{'met' if med(starts) < 3 else 'NOT met'}; {med(starts) / med(bare):.0f}x a bare interpreter"
    )
    print(
        f"breach to Slack message: {med(breaches) * 1000:.0f} ms (min {min(breaches) * 1000:.0f}, max {max(breaches) * 1000:.0f}); "
        f"target < 1 s: {'met' if med(breaches) < 1 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
