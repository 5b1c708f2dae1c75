"""A daemon's evaluation cycles in a process of their own, for tests/test_sigkill.py to kill.

``python -m tests.kill_driver CONFIG CYCLES`` runs what the daemon runs, in its order: at start the
outbox settles what the last process left in doubt (``Outbox.recover``); then, cycle after cycle,
the model's rows for that minute are written, its latency check is evaluated at that minute on a fixed
clock, and the outbox delivers. The cycle reached is kept in ``cycle`` next to the config (replaced
atomically once a cycle is done), so a process killed anywhere starts again at the cycle it was in:
re-running a cycle is what a restarted daemon does with a run whose record it did not see.

Each cycle's latency is high in blocks of four cycles and low in the next four, so the alert fires
and resolves over and over. Printed (and flushed): ``recovered N`` (the deliveries found in doubt at
start), ``started N`` as each cycle starts, ``done`` at the end.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.storage.db import create_engine, upgrade
from tests.factories import T0, live_frame

BLOCK = 4


def high(cycle: int) -> bool:
    """Whether the cycle's latency breaches the rule (p99_ms > 100)."""
    return (cycle // BLOCK) % 2 == 0


def at(cycle: int):
    return T0 + timedelta(minutes=cycle)


def main(config_path: str, cycles: int) -> int:
    project = Project.load(Path(config_path))
    state = project.base_dir / "cycle"
    engine = create_engine(project.config.database.url)
    upgrade(engine)
    cycle = int(state.read_text()) if state.exists() else 0
    clock = FixedClock(at(cycle))
    receivers = Receivers(project.config)
    evaluator = Evaluator(engine, project.config, clock, receivers)
    outbox = Outbox(engine, receivers, clock, backoff_base=0.0, backoff_cap=0.0)
    # As the daemon does at start: every claim is a leftover of the killed process.
    print(f"recovered {outbox.recover()}", flush=True)
    model = project.checks.models["fraud-scorer"]
    check = model.check("latency")
    while cycle < cycles:
        print(f"started {cycle}", flush=True)
        clock.set(at(cycle))
        rows = live_frame(200, end=at(cycle), span=timedelta(seconds=50), seed=cycle, latency_scale=100.0 if high(cycle) else 1.0)
        written = project.base_dir / "data" / "live-0001.parquet.tmp"
        rows.to_parquet(written)
        os.replace(written, project.base_dir / "data" / "live-0001.parquet")
        evaluator.run(model, check)
        outbox.deliver_due()
        cycle += 1
        (project.base_dir / "cycle.tmp").write_text(str(cycle))
        os.replace(project.base_dir / "cycle.tmp", state)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], int(sys.argv[2]))
    sys.stdout.flush()
    os._exit(code)  # as the monitor command ends (monitor/cli.py): pyarrow's threads must not abort it
