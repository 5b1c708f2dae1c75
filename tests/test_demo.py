"""The README's first command: `monitor demo` shows a real alert naming the drifted features within 60 s.

The demo is a minute of real time, mostly spent waiting on its own schedule, so its process starts as
soon as collection is done and runs alongside the other tests (``background`` in conftest.py); this
test runs last and reads what it printed, each line timed from the start of the process.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import checkout_env


class TimedRun:
    """A process whose output is read as it arrives, each stdout line with the seconds since it started."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cleanup: Path) -> None:
        self.cleanup = cleanup
        self.began = time.monotonic()
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_timed, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_timed(self, stream) -> None:
        for line in stream:
            self.stdout.append((time.monotonic() - self.began, line))

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has exited and its output is read; at most ``timeout`` s after its start."""
        returncode = self.process.wait(timeout=max(0.0, self.began + timeout - time.monotonic()))
        for reader in self._readers:
            reader.join()
        return returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.cleanup, ignore_errors=True)


def start_demo() -> TimedRun:
    folder = Path(tempfile.mkdtemp(prefix="monitor-test-demo-"))
    return TimedRun(
        [sys.executable, "-m", "monitor", "demo", "--dir", str(folder / "demo")],
        env=checkout_env({**os.environ, "SLACK_BOT_TOKEN": ""}),
        cleanup=folder,
    )


@pytest.mark.slow
@pytest.mark.background(start=start_demo)
def test_demo_alerts_on_drift_within_a_minute_and_resolves(background):
    demo = background
    returncode = demo.wait(timeout=150)
    out = "".join(line for _, line in demo.stdout)
    first_alert_at = next(
        (at for at, line in demo.stdout if line.startswith("[FIRING critical] fraud-scorer / feature-drift")), None
    )
    assert returncode == 0, "".join(demo.stderr)
    assert first_alert_at is not None and first_alert_at < 60, out
    assert "drifted features, worst first: amount" in out and "country" in out
    assert "[RESOLVED] fraud-scorer / feature-drift" in out
    assert "the drift alert fired and resolved" in out
    # The message's evidence link was to the demo's daemon, stopped now: it says where the report is kept.
    [kept] = re.findall(r"zcat (\S+\.html\.gz) > report\.html", out)
    assert "Drifted Columns" in gzip.decompress(Path(kept).read_bytes()).decode()
