"""SIGKILL at random points of 50 evaluation cycles: no state change unsent, none sent twice.

The cycles run in a process of their own (tests/kill_driver.py: the daemon, with its outbox loop on
its own thread, on a fixed clock the driver moves in place of the scheduler), against a Slack Web
API on loopback in this process. The test kills that process with SIGKILL at a random moment of a random cycle, again and
again, restarting it each time, until all 50 cycles are done. Then every state change the alert went
through (it fires and resolves every four cycles) has its notification, each delivered, and Slack got
each delivery exactly once: one successful call per delivery key, none missing, none twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from monitor.notifiers.outbox import delivery_key
from monitor.storage.db import create_engine, installation_id
from monitor.storage.tables import Notification
from tests.factories import write_project
from tests.kill_driver import BLOCK, high

CYCLES = 50
KILLS = 8
REPO = Path(__file__).resolve().parent.parent


def start(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kill_driver", str(config), str(CYCLES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip


def run_until_cycle(process: subprocess.Popen, cycle: int, recovered: list[int]) -> bool:
    """Read the driver's progress until it starts ``cycle`` (True) or ends (False)."""
    assert process.stdout is not None
    for line in process.stdout:
        if "was in doubt" in line:  # the outbox settling, at start, what the killed process had in hand
            recovered.append(1)
        if line.strip() == "done":
            return False
        if line.startswith("started ") and int(line.split()[1]) >= cycle:
            return True
    return False


def wait_for_a_delivery_in_hand(engine: sa.Engine, timeout: float = 2.0) -> bool:
    """Poll until the driver has claimed a notification and not recorded it yet: it is mid-delivery."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.scalar(sa.select(sa.func.count()).where(Notification.status == "sending")):
                return True
        time.sleep(0.002)
    return False


def test_sigkill_at_random_points_of_50_cycles_loses_and_repeats_no_state_change(tmp_path, slack):
    checks = [{"name": "latency", "kind": "latency", "every": "1m", "window": "1h", "min_rows": 10,
               "alert": [{"when": "p99_ms > 100", "severity": "critical"}]}]  # fmt: skip
    config = write_project(tmp_path, checks=checks, slack={"token": "xoxb-test", "base_url": slack.url})
    slack.answer_after = 0.05  # a kill mid-delivery may come after Slack posted, before the daemon knew
    engine = create_engine(yaml.safe_load(config.read_text())["database"]["url"])
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # Half the kills at any moment of a random cycle; half in a cycle that changes the alert's state,
    # at the moment a delivery is in hand (claimed, not recorded): the hardest place to die.
    changing = [c for c in range(1, CYCLES) if c % BLOCK == 0]
    targets = sorted({*rng.sample(range(1, CYCLES), KILLS // 2), *rng.sample(changing, KILLS // 2)})
    kills, in_hand, recovered = 0, 0, []
    for target in targets:
        process = start(config)
        if not run_until_cycle(process, target, recovered):
            process.wait(timeout=60)
            break
        if target in changing and wait_for_a_delivery_in_hand(engine):
            in_hand += 1
        else:
            time.sleep(rng.uniform(0, 0.1))  # somewhere in the cycle: writing rows, evaluating, delivering
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.stdout is not None
        recovered.extend(1 for line in process.stdout.read().splitlines() if "was in doubt" in line)
        kills += 1
    process = start(config)
    out, err = process.communicate(timeout=120)
    recovered.extend(1 for line in out.splitlines() if "was in doubt" in line)
    assert process.returncode == 0, f"seed {seed}: {err}"
    assert out.rstrip().endswith("done"), f"seed {seed}: {out[-500:]}"
    assert kills == len(targets), f"seed {seed}: the driver ended before kill {kills + 1}"
    # The hard place was hit, and what was in hand then was settled at the next start.
    assert in_hand >= 1 and sum(recovered) >= in_hand, f"seed {seed}: {in_hand} kills in hand, recovered {recovered}"

    # Every state change: firing at the start of each high block, resolved at the start of each low one.
    changes = [("firing" if high(c) else "resolved") for c in range(CYCLES) if c % BLOCK == 0]
    with Session(engine) as session:
        rows = session.scalars(sa.select(Notification).order_by(Notification.id)).all()
        assert [n.event for n in rows] == changes, f"seed {seed}"
        assert {n.status for n in rows} == {"sent"}, f"seed {seed}"
        keys = {delivery_key(installation_id(engine), n.id) for n in rows}
    engine.dispose()
    delivered = Counter(
        c.body["metadata"]["event_payload"]["key"]
        for c in slack.requests
        if c.method in ("chat.postMessage", "chat.update") and c.ok
    )
    assert set(delivered) == keys, f"seed {seed}: missing {keys - set(delivered)}, unknown {set(delivered) - keys}"
    assert [key for key, times in delivered.items() if times > 1] == [], f"seed {seed}: sent twice"
