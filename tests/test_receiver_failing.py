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
        tmp_path, live=live_frame(1200, drift=True), owners=owners, slack={"token": TOKEN, "base_url": slack.url}
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
    live_frame(1200, end=T0 + timedelta(hours=2), seed=3).to_parquet(tmp_path / "data" / "live-0001.parquet")
    clock.set(T0 + timedelta(hours=2))
    assert evaluator.run(model, model.check("feature-drift")).outcome == "ok"
    assert outbox.deliver_due() == 2
    trigger, resolve = pager.events()
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
    with Session(sqlite_engine) as session:
        assert session.get(Alert, watch.id).state == "resolved"
    assert "receiver fraud-team/slack" not in health.problems()


def test_a_restart_with_the_token_mended_sends_what_failed_for_good_while_its_incident_still_fires(
    tmp_path, sqlite_engine, slack
):
    config = write_project(tmp_path, live=live_frame(1200, drift=True), slack={"token": TOKEN, "base_url": slack.url})
    project = Project.load(config)
    clock = FixedClock(T0)
    outbox = Outbox(sqlite_engine, Receivers(project.config), clock)
    model = project.checks.models["fraud-scorer"]

    def drift_to_slack() -> str:
        with Session(sqlite_engine) as session:
            return session.scalars(
                sa.select(Notification.status).where(Notification.receiver == "fraud-team/slack").order_by(Notification.id)
            ).first()

    slack.fail_next("chat.postMessage", error="invalid_auth", times=2)
    Evaluator(sqlite_engine, project.config, clock).run(model, model.check("feature-drift"))
    outbox.deliver_due()  # the drift fails for good; that is told on the console (the owner has nothing else)
    assert drift_to_slack() == "failed"
    assert outbox.retry_failed() == 1
    outbox.deliver_due()
    assert drift_to_slack() == "failed"  # the token is still revoked: failed again

    clock.advance(timedelta(minutes=30))  # the token is mended and the daemon restarted
    restarted = Outbox(sqlite_engine, Receivers(project.config), clock)
    assert restarted.retry_failed() == 1
    restarted.deliver_due()
    assert drift_to_slack() == "sent"
    [message] = slack.messages("#fraud-alerts")
    assert "\nsent late: this changed at 2026-11-25 12:00:00 UTC, 30m before it could be sent\n" in message.text

    clock.advance(timedelta(days=1))  # a day on, what failed then is old news: not tried again
    with Session(sqlite_engine) as session:
        session.execute(sa.update(Notification).values(status="failed"))
        session.commit()
    assert Outbox(sqlite_engine, Receivers(project.config), clock).retry_failed() == 0
