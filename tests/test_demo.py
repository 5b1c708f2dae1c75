"""The README's first command: `monitor demo` shows a real alert naming the drifted features within 60 s."""

from __future__ import annotations

import subprocess
import sys
import time


def test_demo_alerts_on_drift_within_a_minute_and_resolves(tmp_path):
    began = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "SLACK_BOT_TOKEN": ""},
    )
    first_alert_at = None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if first_alert_at is None and line.startswith("[FIRING critical] fraud-scorer / feature-drift"):
            first_alert_at = time.monotonic() - began
    demo.wait(timeout=150)
    out = "".join(lines)
    assert demo.returncode == 0, demo.stderr.read()
    assert first_alert_at is not None and first_alert_at < 60, out
    assert "drifted features, worst first: amount" in out and "country" in out
    assert "[RESOLVED] fraud-scorer / feature-drift" in out
    assert "the drift alert fired and resolved" in out
