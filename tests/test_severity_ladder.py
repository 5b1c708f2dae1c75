"""A severity ladder end to end: ``drift_share > 0.3`` (warning) and ``drift_share > 0.5`` (critical) on
one drift check are one alert, through the real evaluator and outbox, slack-sdk and the Slack Web API
on loopback (tests/fakes/slack_api.py), on a FixedClock.

- One feature drifts (a third of them: warning), then two (critical), then one again, then none: one
  episode, one Slack message posted and updated in place as its severity climbs and falls, and one
  resolution; a route for critical alerts brings its owner in at the rise, and it hears the rest.
- Adding a critical rung above a firing warning rule keeps its episode, and so does removing the
  warning rung while the episode is at the critical one; a ladder with none of its rungs left closes
  it, saying so.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.daemon.closing import close_orphans
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.storage.tables import Alert, Notification
from tests.factories import T0, live_frame, write_project
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-test"
ROWS = 1200
WARNING = {"when": "drift_share > 0.3", "severity": "warning"}
CRITICAL = {"when": "drift_share > 0.5", "severity": "critical"}


def rows(drifted: int, end) -> pd.DataFrame:
    """A window's rows with ``drifted`` of the three features drifted (amount, then country)."""
    calm, moved = live_frame(ROWS, end=end, seed=5), live_frame(ROWS, end=end, drift=True, seed=5)
    for feature in ["amount", "country"][:drifted]:
        calm[feature] = moved[feature]
    return calm


def drift_check(*rules: dict) -> list[dict]:
    return [{"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h", "alert": list(rules)}]


class Ladder:
    def __init__(self, root, engine, slack: FakeSlackAPI, *rules: dict) -> None:
        self.root, self.engine = root, engine
        owners = {"fraud-team": {"slack": "#fraud-alerts"}, "ml-platform": {"slack": "#ml-platform"}}
        self.config = write_project(
            root,
            live=rows(0, T0),
            checks=drift_check(*rules),
            owners=owners,
            slack={"token": TOKEN, "base_url": slack.url},
            routes=[{"match": {"severity": "critical"}, "also": ["ml-platform"]}],
        )
        self.clock = FixedClock(T0)
        self.load()

    def load(self) -> None:
        self.project = Project.load(self.config)
        assert not self.project.checks.issues, self.project.checks.issues
        self.evaluator = Evaluator(self.engine, self.project.config, self.clock)
        self.outbox = Outbox(self.engine, Receivers(self.project.config), self.clock)

    def run(self, drifted: int) -> str:
        """The next run (15 minutes on) over a window with ``drifted`` features drifted; its outcome."""
        self.clock.advance(timedelta(minutes=15))
        rows(drifted, self.clock.now()).to_parquet(self.root / "data" / "live-0001.parquet")
        model = self.project.checks.models["fraud-scorer"]
        outcome = self.evaluator.run(model, model.check("feature-drift")).outcome
        self.outbox.deliver_due()
        return outcome

    def edit(self, *rules: dict) -> None:
        path = self.root / "checks" / "fraud-scorer.yaml"
        model = yaml.safe_load(path.read_text())
        model["checks"] = drift_check(*rules)
        path.write_text(yaml.safe_dump(model, sort_keys=False))
        self.load()

    def alerts(self) -> list[Alert]:
        with Session(self.engine) as session:
            return list(session.scalars(sa.select(Alert).order_by(Alert.id)))

    def notifications(self) -> list[Notification]:
        with Session(self.engine) as session:
            return list(session.scalars(sa.select(Notification).order_by(Notification.id)))


def test_a_ladder_is_one_message_updated_as_its_severity_climbs_and_falls_and_one_resolution(tmp_path, sqlite_engine, slack):
    ladder = Ladder(tmp_path, sqlite_engine, slack, WARNING, CRITICAL)
    outcomes = [ladder.run(drifted) for drifted in (1, 2, 2, 1, 0)]
    assert outcomes == ["breach", "breach", "breach", "breach", "ok"]

    [alert] = ladder.alerts()  # one episode, not one per rung
    assert (alert.state, alert.severity, alert.rule_key) == ("resolved", "warning", "drift_share > 0.3")
    told = [(n.receiver, n.event) for n in ladder.notifications()]
    assert told == [
        ("fraud-team/slack", "firing"),  # warning: a third of the features
        ("fraud-team/slack", "updated"),  # critical: two thirds
        ("ml-platform/slack", "updated"),  # the route for critical alerts takes it from here
        ("fraud-team/slack", "updated"),  # back to warning: whoever was told hears it
        ("ml-platform/slack", "updated"),
        ("fraud-team/slack", "resolved"),
        ("ml-platform/slack", "resolved"),
    ]
    assert {n.status for n in ladder.notifications()} == {"sent"}
    # In the owner's channel: one message, posted once and updated in place.
    assert [c.method for c in slack.requests if c.body.get("channel") != "#ml-platform"].count("chat.postMessage") == 1
    [message] = slack.messages("#fraud-alerts")
    assert message.text.startswith("[RESOLVED] fraud-scorer / feature-drift: drift_share = 0")
    assert len(slack.calls("chat.update")) == 3 + 2  # the owner's message thrice, the platform's twice
    [platform] = slack.messages("#ml-platform")
    assert platform.text.startswith("[RESOLVED] fraud-scorer / feature-drift")
    raised = AlertMessage.from_dict(ladder.notifications()[1].payload)
    assert raised.subject == "[UPDATED critical] fraud-scorer / feature-drift: drift_share = 0.6667"
    assert "severity raised from warning; breaching since 2026-11-25 12:15:00 UTC" in raised.lines()
    assert (raised.rule, raised.threshold) == ("drift_share > 0.5", 0.5)
    lowered = AlertMessage.from_dict(ladder.notifications()[3].payload)
    assert "severity lowered from critical; breaching since 2026-11-25 12:15:00 UTC" in lowered.lines()


def test_adding_a_rung_keeps_the_open_episode_and_removing_the_lead_closes_it(tmp_path, sqlite_engine, slack):
    ladder = Ladder(tmp_path, sqlite_engine, slack, WARNING)
    ladder.run(2)
    [firing] = ladder.alerts()
    assert (firing.state, firing.severity) == ("firing", "warning")

    ladder.edit(WARNING, CRITICAL)  # a critical rung above it
    assert (
        close_orphans(sqlite_engine, ladder.project.checks.models, ladder.project.checks.files, T0, every_file_loaded=True) == []
    )
    ladder.run(2)
    [same] = ladder.alerts()
    assert (same.id, same.state, same.severity) == (firing.id, "firing", "critical")

    ladder.edit(CRITICAL)  # the warning rung, which the episode is known by, removed: the critical one it is at stays
    assert (
        close_orphans(sqlite_engine, ladder.project.checks.models, ladder.project.checks.files, T0, every_file_loaded=True) == []
    )
    ladder.run(2)
    [kept] = ladder.alerts()
    assert (kept.id, kept.state, kept.severity, kept.rule_key) == (firing.id, "firing", "critical", "drift_share > 0.5")

    ladder.edit({"when": "drift_share > 0.6", "severity": "critical"})  # no rung of it left
    [(closed_id, reason)] = close_orphans(
        sqlite_engine, ladder.project.checks.models, ladder.project.checks.files, T0, every_file_loaded=True
    )
    assert closed_id == firing.id and "rule removed or its condition changed" in reason
