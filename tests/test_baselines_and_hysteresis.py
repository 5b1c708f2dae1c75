"""Relative rules and hysteresis, end to end: a check file's rules driven through real evaluations on
SQLite and PostgreSQL, with a FixedClock and the console receiver captured.

- ``p95_ms > 1.5x baseline`` waits (``insufficient_data``, saying why) until the metric has its
  baseline's values in the ``metrics`` table, stays quiet on steady latency, and fires on a doubling;
  the message shows what the threshold was made of.
- ``resolve_when`` (or ``margin``) makes a value flapping around its threshold one episode, not one
  per crossing; editing the margin keeps the episode.
- A rule on the reference judges each value against the reference the kind gives with it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
import sqlalchemy as sa
from deployments import Deployment, deployments
from factories import T0, live_frame
from sqlalchemy.orm import Session

from monitor.alerting.rules import MetricValue
from monitor.checks import CHECKS
from monitor.checks.base import CheckKind, CheckSpec, Evaluation, Window
from monitor.cli import main
from monitor.clock import FixedClock
from monitor.config.models import DaemonConfig, ModelConfig
from monitor.daemon.evaluator import Evaluator
from monitor.storage.tables import Alert, CheckRun, Metric, Notification

MODEL = "fraud-scorer"
EVERY = timedelta(minutes=5)


def latency_check(*rules: dict) -> list[dict]:
    return [{"name": "latency", "kind": "latency", "every": "5m", "window": "10m", "alert": list(rules)}]


class LatencyDeployment(Deployment):
    """A project on disk with one latency check; each run's window gets the rows :meth:`run` is given."""

    def __init__(self, root: Path, database_url: str, rules: list[dict]) -> None:
        self.files = 0
        super().__init__(root, database_url, latency_check, rules)

    def run(self, frame: pd.DataFrame):
        """Write ``frame`` as the batch job's only file, evaluate now, deliver, and move the clock on."""
        for old in (self.root / "data").glob("live-*"):
            old.unlink()
        self.files += 1
        frame.to_parquet(self.root / "data" / f"live-{self.files:04d}.parquet")
        daemon = self.daemon
        model = daemon.project.checks.models[MODEL]
        result = daemon.evaluator.run(model, model.check("latency"))
        daemon.outbox.deliver_due()
        self.clock.advance(EVERY)
        return result

    def window(self, *, scale: float = 20.0, latency: float | None = None, rows: int = 400) -> pd.DataFrame:
        """Rows over the 10 minutes before now: gamma-distributed latency (``scale``), or all ``latency``."""
        frame = live_frame(rows, end=self.clock.now(), span=timedelta(minutes=9), seed=int(self.clock.now().timestamp()) % 10_000, latency_scale=scale)  # fmt: skip
        if latency is not None:
            frame["latency_ms"] = latency
        return frame


@pytest.fixture
def deployment(tmp_path, database_url):
    yield from deployments(lambda rules: LatencyDeployment(tmp_path, database_url, rules))


# -- relative thresholds: `p95_ms > 1.5x baseline` ------------------------------------------------------

BASELINE_RULE = {"when": "p95_ms > 1.5x baseline", "baseline": "1h", "severity": "critical"}


def test_a_baseline_rule_waits_for_ten_values_then_fires_on_a_doubling(deployment):
    d = deployment(BASELINE_RULE)
    waiting = [d.run(d.window()) for _ in range(10)]  # the runs at 0m .. 45m: 0 .. 9 values in the last hour

    assert [r.outcome for r in waiting] == ["insufficient_data"] * 10
    assert waiting[0].evaluation.error == (
        "rule 'p95_ms > 1.5x baseline' waits for its baseline: 0 value(s) of p95_ms in the last 1h, 10 needed"
    )
    assert waiting[-1].evaluation.error.endswith("9 value(s) of p95_ms in the last 1h, 10 needed")
    runs = d.rows(CheckRun)
    assert [r.outcome for r in runs] == ["insufficient_data"] * 10
    assert runs[-1].evidence["waiting_for_baseline"] == [
        {"rule": "p95_ms > 1.5x baseline", "feature": "", "baseline": "1h", "points": 9, "needed": 10}
    ]
    # Each waiting run still stores its values: they are what the baseline is made of.
    p95s = [m.value for m in d.rows(Metric) if m.metric == "p95_ms"]
    assert len(p95s) == 10

    steady = d.run(d.window())  # 50m: ten values in the last hour
    assert steady.outcome == "ok" and steady.waiting == []
    [observation] = steady.observations
    median = sorted(p95s)[4:6]
    assert observation.anchor == pytest.approx(sum(median) / 2)  # the median of the ten, not the current value
    assert observation.threshold == pytest.approx(1.5 * observation.anchor)
    assert d.rows(Alert) == []

    doubled = d.run(d.window(scale=40.0))
    assert doubled.outcome == "breach"
    [alert] = d.rows(Alert)
    assert (alert.state, alert.rule, alert.threshold) == (
        "firing",
        "p95_ms > 1.5x baseline",
        pytest.approx(doubled.observations[0].threshold),
    )
    assert alert.last_value > alert.threshold
    [firing] = d.rows(Notification)
    assert (firing.event, firing.status) == ("firing", "sent")
    text = d.console.getvalue()
    assert "[FIRING critical] fraud-scorer / latency: p95_ms = " in text
    assert " = 1.5x baseline " in text and ", the median of the last 1h), severity critical" in text

    back = d.run(d.window())  # the doubling itself is one value of eleven: the median barely moves
    assert back.outcome == "ok"
    assert [a.state for a in d.rows(Alert)] == ["resolved"]
    assert [n.event for n in d.rows(Notification)] == ["firing", "resolved"]


def test_a_baseline_rule_stays_quiet_on_steady_latency(deployment):
    d = deployment(BASELINE_RULE)
    results = [d.run(d.window()) for _ in range(30)]  # two and a half hours of runs

    assert [r.outcome for r in results] == ["insufficient_data"] * 10 + ["ok"] * 20
    assert d.rows(Alert) == [] and d.rows(Notification) == []
    assert len([m for m in d.rows(Metric) if m.metric == "p95_ms"]) == 30


def test_a_rule_waiting_for_its_baseline_does_not_hold_up_the_others(deployment):
    d = deployment(BASELINE_RULE, {"when": "p99_ms > 10000"})
    result = d.run(d.window())

    assert result.outcome == "ok" and result.evaluation.error is None
    assert [o.rule.when.text for o in result.observations] == ["p99_ms > 10000"]
    [waiting] = result.waiting
    assert (waiting.points, waiting.needed, waiting.period) == (0, 10, timedelta(hours=1))
    [run] = d.rows(CheckRun)
    assert run.outcome == "ok"
    assert [w["rule"] for w in run.evidence["waiting_for_baseline"]] == ["p95_ms > 1.5x baseline"]


def test_monitor_check_names_the_rule_waiting_for_its_baseline(deployment, capsys):
    d = deployment(BASELINE_RULE, {"when": "p99_ms > 10000"})
    d.clock.set(datetime.now(UTC))  # `monitor check` reads the real clock
    d.window().to_parquet(d.root / "data" / "live-0001.parquet")
    capsys.readouterr()

    assert main(["check", "fraud-scorer/latency", "--config", str(d.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fraud-scorer/latency: ok" in out
    assert "rule 'p95_ms > 1.5x baseline' waits for its baseline: 0 value(s) of p95_ms in the last 1h, 10 needed" in out


# -- hysteresis: a value flapping around its threshold ---------------------------------------------------

FLAPPING = [310.0, 290.0, 320.0, 280.0, 330.0, 150.0]  # around `p50_ms > 300`, then well below


@pytest.mark.parametrize(
    "hysteresis, episodes, events",
    [
        ({"resolve_when": "p50_ms < 200"}, 1, ["firing", "resolved"]),
        ({"margin": 100}, 1, ["firing", "resolved"]),
        ({}, 3, ["firing", "resolved"] * 3),  # without it: one episode per crossing
    ],
    ids=["resolve_when", "margin", "none"],
)
def test_a_flapping_value_with_hysteresis_is_one_episode(deployment, hysteresis, episodes, events):
    d = deployment({"when": "p50_ms > 300", "severity": "critical"} | hysteresis)
    results = [d.run(d.window(latency=ms, rows=60)) for ms in FLAPPING]

    assert [r.observations[0].value for r in results] == FLAPPING
    alerts = d.rows(Alert)
    assert len(alerts) == episodes
    assert [n.event for n in d.rows(Notification)] == events
    assert all(a.state == "resolved" for a in alerts)
    if episodes == 1:
        [alert] = alerts
        assert alert.fired == T0 and alert.resolved == T0 + 5 * EVERY  # fired at 310, resolved at the 150
        assert [c.notify for r in results for c in r.changes] == ["firing", "resolved"]
        assert "resolves when p50_ms " in d.console.getvalue()


def test_editing_the_margin_keeps_the_firing_episode(deployment):
    d = deployment({"when": "p50_ms > 300", "margin": 100})
    d.run(d.window(latency=310.0, rows=60))
    [episode] = d.rows(Alert)

    d.edit_rules({"when": "p50_ms > 300", "margin": 50})
    d.restart()
    held = d.run(d.window(latency=260.0, rows=60))  # below 300, not yet 50 below it
    [same] = d.rows(Alert)
    assert (same.id, same.state) == (episode.id, "firing")
    assert held.changes == []

    d.edit_rules({"when": "p50_ms > 300", "resolve_when": "p50_ms < 280"})  # margin to resolve_when: still the rule
    d.restart()
    d.run(d.window(latency=270.0, rows=60))
    [resolved] = d.rows(Alert)
    assert (resolved.id, resolved.state, resolved.reason) == (episode.id, "resolved", None)
    assert [n.event for n in d.rows(Notification)] == ["firing", "resolved"]


# -- a rule on the reference --------------------------------------------------------------------------------
# No kind of today computes reference values (data_quality will); a kind registered here gives them, as a
# new module's KIND would, and the rule goes through the real evaluator and database.


class ShareSpec(CheckSpec):
    kind: Literal["share"]  # type: ignore[assignment]


NEXT: list[MetricValue] = []


def shares(spec: ShareSpec, window: Window, reference, features: list[str]) -> Evaluation:
    return Evaluation("ok", 100, [NEXT.pop(0)])


@pytest.fixture
def share_check(monkeypatch):
    kind = CheckKind(
        "share", ShareSpec, frozenset(), frozenset({"missing_share"}), shares, reads_rows=False,
        reference_metrics=frozenset({"missing_share"}),
    )  # fmt: skip
    monkeypatch.setitem(CHECKS, "share", kind)
    NEXT.clear()
    return ShareSpec(name="missing", kind="share", every="5m", window="1h", alert=[{"when": "missing_share > reference + 0.05"}])


def test_a_reference_rule_judges_each_value_against_its_own_reference(engine, share_check):
    model = ModelConfig.model_construct(model=MODEL, owner="fraud-team", source=None, reference=None, checks=[share_check])
    clock = FixedClock(T0)
    evaluator = Evaluator(engine, DaemonConfig(), clock)

    def run(value: float, reference: float | None):
        NEXT.append(MetricValue("missing_share", value, "amount", reference=reference))
        result = evaluator.run(model, share_check)
        clock.advance(EVERY)
        return result

    assert run(0.08, 0.05).outcome == "ok"  # 0.08 is not above 0.05 + 0.05
    fired = run(0.11, 0.05)
    assert fired.outcome == "breach"
    [observation] = fired.observations
    assert (observation.anchor, observation.threshold) == (0.05, pytest.approx(0.10))
    assert run(0.02, None).changes == []  # no reference this time: neither a breach nor a recovery
    assert run(0.20, 0.18).changes[0].state == "resolved"  # judged against its own reference: 0.23

    with Session(engine) as session:
        [alert] = session.scalars(sa.select(Alert)).all()
        payloads = [n.payload for n in session.scalars(sa.select(Notification).order_by(Notification.id))]
    assert (alert.feature, alert.rule, alert.threshold) == ("amount", "missing_share > reference + 0.05", pytest.approx(0.23))
    firing = payloads[0]
    assert (firing["anchor"], firing["anchor_value"], firing["offset"]) == ("reference", 0.05, 0.05)
