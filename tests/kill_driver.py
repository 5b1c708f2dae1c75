"""A daemon's evaluation cycles in a process of their own, for tests/test_sigkill.py to kill.

``python -m tests.kill_driver CONFIG CYCLES`` runs the daemon (``monitor.daemon.service.Daemon``) as
``monitor run`` does, but on a fixed clock that this driver moves a minute a cycle in place of its
scheduler: ``Daemon.prepare`` (migrations, closing orphans), the outbox's own loop on a thread of its
own (recovering at start what the killed process left in doubt, then delivering as it is woken),
and each cycle the model's rows for that minute written, its latency check evaluated through
``Daemon.evaluate`` (which wakes the outbox), and the delivery waited for. The cycle reached is kept
in ``cycle`` next to the config (replaced atomically once a cycle is done), so a process killed
anywhere starts again at the cycle it was in: re-running a cycle is what a restarted daemon does
with a run whose record it did not see.

Each cycle's latency is high in blocks of four cycles and low in the next four, so the alert fires
and resolves over and over. Printed (and flushed): the outbox's log lines (``... was in doubt``),
``started N`` as each cycle starts, ``done`` at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from tests.factories import T0, live_frame

BLOCK = 4


def high(cycle: int) -> bool:
    """Whether the cycle's latency breaches the rule (p99_ms > 100)."""
    return (cycle // BLOCK) % 2 == 0


def at(cycle: int):
    return T0 + timedelta(minutes=cycle)


def main(config_path: str, cycles: int) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("monitor.notifiers.outbox").setLevel(logging.INFO)
    project = Project.load(Path(config_path))
    state = project.base_dir / "cycle"
    cycle = int(state.read_text()) if state.exists() else 0
    clock = FixedClock(at(cycle))
    daemon = Daemon(project, clock=clock)
    daemon.prepare()
    stop = threading.Event()
    threading.Thread(target=daemon.outbox.run, args=(stop, 0.01), name="outbox", daemon=True).start()
    model = project.checks.models["fraud-scorer"]
    check = model.check("latency")
    while cycle < cycles:
        print(f"started {cycle}", flush=True)
        clock.set(at(cycle))
        rows = live_frame(200, end=at(cycle), span=timedelta(seconds=50), seed=cycle, latency_scale=100.0 if high(cycle) else 1.0)
        written = project.base_dir / "data" / "live-0001.parquet.tmp"
        rows.to_parquet(written)
        os.replace(written, project.base_dir / "data" / "live-0001.parquet")
        daemon.evaluate(model, check)
        deadline = time.monotonic() + 10
        while daemon.outbox.pending_count() and time.monotonic() < deadline:  # the outbox thread delivers
            time.sleep(0.005)
        cycle += 1
        (project.base_dir / "cycle.tmp").write_text(str(cycle))
        os.replace(project.base_dir / "cycle.tmp", state)
    stop.set()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], int(sys.argv[2]))
    sys.stdout.flush()
    os._exit(code)  # as the monitor command ends (monitor/cli.py): pyarrow's threads must not abort it
