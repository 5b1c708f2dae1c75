"""Repeats and acknowledgement: an incident still firing is told again every ``notifiers.repeat`` (4h), in
the thread of its Slack message and as a new trigger with the same ``dedup_key`` to a pager, until
``monitor alerts ack ID``. The real evaluator and outbox, slack-sdk, the Slack Web API and a pager
endpoint on loopback, on a FixedClock.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.cli import main
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.daemon.repeats import owe_repeats
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from tests.deployments import Pipeline
from tests.factories import T0, live_frame, write_project

TOKEN = "xoxb-test"
FOUR_HOURS = timedelta(hours=4)


def test_a_firing_incident_is_repeated_in_its_thread_every_4h_until_acknowledged(tmp_path, sqlite_engine, slack, pager, capsys):
    owners = {"fraud-team": {"slack": "#fraud-alerts", "webhook": pager.url}}
    config = write_project(
        tmp_path, live=live_frame(1200, drift=True), owners=owners, slack={"token": TOKEN, "base_url": slack.url},
        database_url=sqlite_engine.url.render_as_string(hide_password=False),
    )  # fmt: skip
    project = Project.load(config)
    clock = FixedClock(T0)
    p = Pipeline(
        project,
        sqlite_engine,
        clock,
        Evaluator(sqlite_engine, project.config, clock),
        Outbox(sqlite_engine, Receivers(project.config), clock),
    )
    p.evaluate()
    assert p.deliver() == 2  # Slack and the pager
    [parent] = slack.messages("#fraud-alerts")

    clock.advance(FOUR_HOURS - timedelta(minutes=1))
    assert owe_repeats(sqlite_engine, FOUR_HOURS, clock.now()) == 0  # not yet
    clock.advance(timedelta(minutes=1))
    assert owe_repeats(sqlite_engine, FOUR_HOURS, clock.now()) == 2
    assert owe_repeats(sqlite_engine, FOUR_HOURS, clock.now()) == 0  # once: these are on their way
    assert p.deliver() == 2

    repeat = [c for c in slack.calls("chat.postMessage") if c.ok][-1]
    assert repeat.body["thread_ts"] == parent.ts  # in the thread; the message itself stays as it was
    text = repeat.body["text"]
    assert text.startswith("[STILL FIRING critical] fraud-scorer / feature-drift: drift_share = 0.6667")
    [alert] = p.alerts()
    assert (
        f"still firing since 2026-11-25 12:00 UTC (4h), told every 4h until acknowledged: monitor alerts ack {alert.id}" in text
    )
    first, again = pager.events()
    assert (again["event_action"], again["dedup_key"]) == ("trigger", first["dedup_key"])
    assert [n.event for n in p.notifications()] == ["firing", "firing", "repeat", "repeat"]
    assert AlertMessage.from_dict(p.notifications()[-1].payload).event == "repeat"

    clock.advance(FOUR_HOURS)
    assert owe_repeats(sqlite_engine, FOUR_HOURS, clock.now()) == 2  # every 4h
    p.deliver()

    assert main(["alerts", "--config", str(config), "ack", str(alert.id)]) == 0
    assert f"alert #{alert.id} acknowledged: its incident #{alert.id} is not repeated any more" in capsys.readouterr().out
    clock.advance(FOUR_HOURS)
    assert owe_repeats(sqlite_engine, FOUR_HOURS, clock.now()) == 0
    # ... and its resolution is still told.
    live_frame(1200, end=clock.now(), seed=3).to_parquet(tmp_path / "data" / "live-0001.parquet")
    assert p.evaluate().outcome == "ok"
    assert p.deliver() == 2
    assert main(["alerts", "--config", str(config), "ack", str(alert.id)]) == 1
    assert f"alert #{alert.id} is not firing (it is resolved)" in capsys.readouterr().err


def firing_with_a_repeat_owed(tmp_path, engine, slack) -> Pipeline:
    """A drift told to Slack, four hours on: its repeat is owed, not yet sent."""
    config = write_project(
        tmp_path, live=live_frame(1200, drift=True), slack={"token": TOKEN, "base_url": slack.url},
        database_url=engine.url.render_as_string(hide_password=False),
    )  # fmt: skip
    project = Project.load(config)
    clock = FixedClock(T0)
    p = Pipeline(
        project, engine, clock, Evaluator(engine, project.config, clock), Outbox(engine, Receivers(project.config), clock)
    )
    p.evaluate()
    assert p.deliver() == 1
    clock.advance(FOUR_HOURS)
    assert owe_repeats(engine, FOUR_HOURS, clock.now()) == 1
    return p


def test_a_repeat_in_doubt_after_a_crash_is_found_in_its_thread_and_not_sent_again(tmp_path, sqlite_engine, slack, monkeypatch):
    p = firing_with_a_repeat_owed(tmp_path, sqlite_engine, slack)

    class Killed(BaseException):
        pass

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(p.outbox, "_record", die)  # Slack has the reply; the process dies before it knows
    with pytest.raises(Killed):
        p.deliver()
    restarted = p.restart()
    assert restarted.outbox.recover() == 1
    assert restarted.deliver() == 0
    assert [n.status for n in restarted.notifications()] == ["sent", "sent"]
    replies = [c for c in slack.calls("chat.postMessage") if c.ok and c.body.get("thread_ts")]
    assert len(replies) == 1  # found in the thread, not sent again
    assert restarted.notifications()[-1].message_id == slack.messages("#fraud-alerts")[-1].ts


def test_a_repeat_that_fails_for_good_waits_its_interval_before_the_next(tmp_path, sqlite_engine, slack):
    p = firing_with_a_repeat_owed(tmp_path, sqlite_engine, slack)
    clock = p.clock
    slack.fail_next("chat.postMessage", error="channel_not_found")  # the channel was archived
    p.deliver()
    assert [n.status for n in p.notifications() if n.event == "repeat"] == ["failed"]

    def repeats_to_slack() -> list[str]:
        return [n.status for n in p.notifications() if n.event == "repeat" and n.receiver == "fraud-team/slack"]

    for _ in range(10):  # a minute at a time, as the daemon asks
        clock.advance(timedelta(minutes=1))
        owe_repeats(sqlite_engine, FOUR_HOURS, clock.now())
    assert repeats_to_slack() == ["failed"]
    clock.advance(FOUR_HOURS - timedelta(minutes=10))
    owe_repeats(sqlite_engine, FOUR_HOURS, clock.now())
    assert repeats_to_slack() == ["failed", "pending"]  # 4h after the one that failed
