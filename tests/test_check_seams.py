"""The check-kind seam: the evaluator reads for a kind only what the kind says it needs, so a kind that
reads no rows (a probe) runs on a model with no source, and is never handed a source's failure."""

from __future__ import annotations

from typing import Literal

import pytest
import sqlalchemy as sa
from factories import T0

from monitor.alerting.rules import MetricValue
from monitor.checks import CHECKS
from monitor.checks.base import CheckKind, CheckSpec, Evaluation, Window
from monitor.cli import main
from monitor.clock import FixedClock
from monitor.config.models import DaemonConfig, ModelConfig
from monitor.daemon.evaluator import Evaluator
from monitor.sources.files import FilesSpec
from monitor.storage.tables import Metric


class HeartbeatSpec(CheckSpec):
    kind: Literal["heartbeat"]  # type: ignore[assignment]


seen: list[Window] = []


def beat(spec: HeartbeatSpec, window: Window, reference, features: list[str]) -> Evaluation:
    seen.append(window)
    return Evaluation("ok", 1, [MetricValue("up", 1.0)])


@pytest.fixture
def heartbeat(monkeypatch):
    """A kind that reads no rows, registered as a new module's KIND would be."""
    kind = CheckKind("heartbeat", HeartbeatSpec, frozenset({"up"}), frozenset(), beat, reads_rows=False)
    monkeypatch.setitem(CHECKS, "heartbeat", kind)
    seen.clear()
    return HeartbeatSpec(name="beat", kind="heartbeat", every="1m", window="5m", alert=[{"when": "up < 1"}])


@pytest.mark.parametrize(
    "source",
    [None, FilesSpec(kind="files", path="/nowhere/*.parquet", timestamp="ts", id="id", features=["x"])],
    ids=["no source", "a source that cannot be read"],
)
def test_a_kind_that_reads_no_rows_gets_the_bounds_and_no_rows(sqlite_engine, heartbeat, source):
    model = ModelConfig.model_construct(model="m", owner="o", source=source, reference=None, checks=[heartbeat])
    result = Evaluator(sqlite_engine, DaemonConfig(), FixedClock(T0)).run(model, heartbeat)
    assert result.outcome == "ok"
    [window] = seen
    assert (window.start, window.end, len(window.frame)) == (T0 - heartbeat.window, T0, 0)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(Metric.metric, Metric.value)).all() == [("up", 1.0)]


def test_a_kind_that_reads_rows_needs_a_source(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    path = tmp_path / "probe-only.yaml"
    path.write_text(
        "model: probe-only\n"
        "owner: team\n"
        "checks:\n"
        "  - name: latency\n"
        "    kind: latency\n"  # line 5, column 11
        "    every: 1m\n"
        "    window: 10m\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{path}:5:11: checks[0].kind: a latency check reads the model's rows: add a source"
    )
