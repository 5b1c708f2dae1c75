"""A receiver that fails for good is itself an alert, sent through another receiver: a drift's Slack
message answered ``invalid_auth`` (a revoked token) by the Slack Web API on loopback reaches the
platform owner's pager webhook on loopback, and /healthz's health says so; the next message Slack
takes resolves it. The real evaluator and outbox, slack-sdk and a FixedClock.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.daemon.closing import close_orphans
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.health import Health
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.storage.tables import Alert, Notification
from tests.factories import T0, live_frame, write_project

TOKEN = "xoxb-test"


def test_a_revoked_slack_token_reaches_the_platform_owners_pager_and_its_recovery_too(tmp_path, sqlite_engine, slack, pager):
    owners = {"fraud-team": {"slack": "#fraud-alerts"}, "ml-platform": {"webhook": pager.url}}
    config = write_project(
        tmp_path, live=live_frame(600, drift=True), owners=owners, slack={"token": TOKEN, "base_url": slack.url}
    )
    text = config.read_text() + "platform_owner: ml-platform\n"
    config.write_text(text)
    project = Project.load(config)
    clock, health = FixedClock(T0), Health()
    outbox = Outbox(sqlite_engine, Receivers(project.config), clock, health=health, platform_owner=project.config.platform_owner)
    evaluator = Evaluator(sqlite_engine, project.config, clock)
    model = project.checks.models["fraud-scorer"]

    slack.fail_next("chat.postMessage", error="invalid_auth")
    assert evaluator.run(model, model.check("feature-drift")).outcome == "breach"
    assert outbox.deliver_due() == 1  # the pager heard of it; Slack did not take the drift

    with Session(sqlite_engine) as session:
        rows = list(session.scalars(sa.select(Notification).order_by(Notification.id)))
        [watch] = session.scalars(sa.select(Alert).where(Alert.model == "(monitor)")).all()
    assert [(n.receiver, n.status) for n in rows] == [("fraud-team/slack", "failed"), ("ml-platform/webhook", "sent")]
    assert (watch.check, watch.feature, watch.state, watch.owner) == ("receivers", "fraud-team/slack", "firing", "ml-platform")
    [event] = pager.events()
    assert event["event_action"] == "trigger"
    assert event["payload"]["summary"] == "[FIRING critical] (monitor) / receivers / fraud-team/slack: failing = 1"
    details = event["payload"]["custom_details"]["text"]
    assert "the error: slack answered HTTP 200: invalid_auth" in details
    assert "what it could not deliver: [FIRING critical] fraud-scorer / feature-drift: drift_share = 0.6667" in details
    assert health.problems()["receiver fraud-team/slack"].startswith("notifications to it fail for good: ")
    # A restart does not close it as an episode no file defines.
    assert close_orphans(sqlite_engine, project.checks.models, project.checks.files, T0, every_file_loaded=True) == []

    # The token is mended; the drift resolves, and Slack takes that message: the receiver works again.
    live_frame(600, end=T0 + timedelta(hours=2), seed=3).to_parquet(tmp_path / "data" / "live-0001.parquet")
    clock.set(T0 + timedelta(hours=2))
    assert evaluator.run(model, model.check("feature-drift")).outcome == "ok"
    assert outbox.deliver_due() == 2
    trigger, resolve = pager.events()
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
    with Session(sqlite_engine) as session:
        assert session.get(Alert, watch.id).state == "resolved"
    assert "receiver fraud-team/slack" not in health.problems()
