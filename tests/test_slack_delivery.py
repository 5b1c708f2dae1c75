"""Slack delivery end to end: a project on disk, the real evaluator and outbox, slack-sdk's real
WebClient, and a Slack Web API served on loopback by tests/fakes/slack_api.py.

Time is a FixedClock: the live rows lie in the 50 minutes before T0, so evaluating at T0 sees them;
an alert resolves when non-drifted rows are written for the hour before T0+2h and the clock is moved
there. Backoff is waited out by moving the clock, never by sleeping; the only real wait is
slack-sdk's own Retry-After in the rate-limit test.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.config.models import DaemonConfig
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.notifiers.slack import METADATA_EVENT, SlackNotifier
from monitor.storage import db
from monitor.storage.tables import Notification
from tests.deployments import RESOLVED_AT, ROWS, Pipeline
from tests.factories import T0, live_frame, write_project
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-test"


# -- fixtures and helpers ---------------------------------------------------------------------------
@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def fake_slack(clock: FixedClock, **kwargs) -> FakeSlackAPI:
    """A started fake whose message timestamps follow the test's clock, as Slack's follow the real one."""
    return FakeSlackAPI(TOKEN, now=lambda: clock.now().timestamp(), **kwargs).start()


@pytest.fixture
def slack(clock):
    server = fake_slack(clock)
    yield server
    server.stop()


def build(
    tmp_path,
    engine: Engine,
    clock: FixedClock,
    base_url: str,
    *,
    token: str = TOKEN,
    owners: dict | None = None,
    routes: list | None = None,
    latency_scale: float = 20.0,
) -> Pipeline:
    config_path = write_project(
        tmp_path,
        live=live_frame(ROWS, drift=True, latency_scale=latency_scale),
        slack={"token": token, "base_url": base_url},
        owners=owners,
        routes=routes,
    )
    project = Project.load(config_path)
    assert not project.checks.issues, project.checks.issues
    return Pipeline(
        project, engine, clock, Evaluator(engine, project.config, clock), Outbox(engine, Receivers(project.config), clock)
    )


def without_retry_pauses(outbox: Outbox) -> None:
    """Keep slack-sdk's retry handlers and their retry counts, but make their backoff pauses zero."""
    for handler in outbox.receivers.notifier("slack").client.retry_handlers:
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0.0)


def posts(slack: FakeSlackAPI, *, ok: bool | None = None) -> list:
    calls = slack.calls("chat.postMessage")
    return calls if ok is None else [c for c in calls if c.ok == ok]


# -- a. one message per episode ---------------------------------------------------------------------
def test_firing_alert_posts_one_message_with_the_facts_in_the_owners_channel(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)

    result = p.evaluate()
    assert result.outcome == "breach"
    assert p.deliver() == 1

    [request] = slack.requests
    assert request.method == "chat.postMessage" and request.ok
    assert request.authorization == f"Bearer {TOKEN}"
    [notification] = p.notifications()
    body = request.body
    assert body["channel"] == "#fraud-alerts"
    assert body["metadata"] == {
        "event_type": METADATA_EVENT,
        "event_payload": {
            "key": f"monitor-{db.installation_id(p.engine)}-{notification.id}",
            "model": "fraud-scorer",
            "check": "feature-drift",
            "alert_id": str(notification.alert_id),
            "event": "firing",
        },
    }
    assert body["unfurl_links"] is False

    text = body["text"]
    assert text.splitlines()[0] == "[FIRING critical] fraud-scorer / feature-drift: drift_share = 0.6667"
    assert "rule: drift_share &gt; 0.3 (threshold 0.3), severity critical" in text  # mrkdwn-escaped
    assert "window: last 1h (2026-11-25 11:00:00 UTC to 2026-11-25 12:00:00 UTC), 1,200 rows" in text
    assert "owner: fraud-team @dana" in text
    # Drifted features, worst first (by how far past its threshold each is); the one that did not drift is left out.
    drifted = [f for f in result.evaluation.evidence["features"] if f["drifted"]]
    worst_first = [f["feature"] for f in sorted(drifted, key=lambda f: -f["strength"])]
    assert worst_first == ["amount", "country"]
    [features_line] = [line for line in text.splitlines() if line.startswith("drifted features, worst first: ")]
    assert features_line.startswith("drifted features, worst first: amount (Wasserstein distance (normed) ")
    assert features_line.index("amount (") < features_line.index("country (Jensen-Shannon distance ")
    assert "account_age_days" not in text
    # The blocks say the same, with the severity's emoji.
    header, section, context = body["blocks"]
    assert header["text"]["text"].startswith(":red_circle: *[FIRING critical] fraud-scorer / feature-drift")
    assert "owner: fraud-team @dana" in section["text"]["text"]
    assert "drifted features, worst first: amount (" in section["text"]["text"]
    assert context["elements"][0]["text"] == f"monitor alert #{notification.alert_id}"

    # Stored once, in the owner's channel; the row knows where, for the update at resolution.
    channel = slack.channel_id("#fraud-alerts")
    assert channel == "C0001"
    [message] = slack.messages("#fraud-alerts")
    assert message.text == text and message.metadata == body["metadata"]
    assert (notification.status, notification.attempts, notification.error) == ("sent", 1, None)
    assert (notification.event, notification.receiver) == ("firing", "fraud-team/slack")
    assert (notification.message_id, notification.channel_id) == (message.ts, channel)
    [alert] = p.alerts()
    assert (alert.state, alert.severity, alert.owner, alert.fired) == ("firing", "critical", "fraud-team", T0)

    # The same breach, evaluated again a quarter of an hour later: still the same episode, nothing new to say.
    clock.advance(timedelta(minutes=15))
    again = p.evaluate()
    assert again.outcome == "breach" and again.changes == []
    assert p.deliver() == 0
    assert len(slack.requests) == 1
    assert len(slack.messages()) == 1
    assert len(p.notifications()) == 1
    assert [a.state for a in p.alerts()] == ["firing"]


# -- b. resolution updates the message in place ------------------------------------------------------
def test_resolution_updates_the_same_message_in_place(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    assert p.deliver() == 1
    [fired] = slack.messages()

    result = p.resolve()
    assert [c.notify for c in result.changes] == ["resolved"]
    assert p.deliver() == 1

    assert len(posts(slack)) == 1  # no second message
    [update] = slack.calls("chat.update")
    assert update.ok
    assert (update.body["channel"], update.body["ts"]) == (fired.channel, fired.ts) == ("C0001", fired.ts)
    assert update.body["text"].startswith("[RESOLVED] fraud-scorer / feature-drift: drift_share = 0")
    assert "resolved 2026-11-25 14:00:00 UTC; breaching since 2026-11-25 12:00:00 UTC" in update.body["text"]
    assert update.body["blocks"][0]["text"]["text"].startswith(":white_check_mark: *[RESOLVED]")

    [message] = slack.messages()  # still one message, now saying "resolved"
    assert message.ts == fired.ts and message.edited
    assert message.text == update.body["text"]
    firing, resolved = p.notifications()
    # The update replaced the metadata: it is how a resolve left in doubt is recognised in Slack.
    assert update.body["metadata"] == message.metadata
    assert message.metadata["event_payload"] == {
        "key": p.outbox.key(resolved.id),
        "model": "fraud-scorer",
        "check": "feature-drift",
        "alert_id": str(resolved.alert_id),
        "event": "resolved",
    }
    assert [(n.event, n.status, n.attempts) for n in (firing, resolved)] == [("firing", "sent", 1), ("resolved", "sent", 1)]
    assert (resolved.message_id, resolved.channel_id) == (firing.message_id, firing.channel_id) == (fired.ts, "C0001")
    [alert] = p.alerts()
    assert (alert.state, alert.resolved) == ("resolved", RESOLVED_AT)


# -- c. a rate limit is waited out inside one attempt ------------------------------------------------
def test_rate_limit_is_waited_out_by_the_retry_handler_and_posted_once(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    began = time.monotonic()
    assert p.deliver() == 1
    waited = time.monotonic() - began

    first, second = posts(slack)
    assert (first.status, first.error) == (429, "ratelimited")
    assert (second.status, second.ok) == (200, True)
    assert second.body == first.body  # the same request, repeated
    assert waited >= 1.0  # slack-sdk honoured Retry-After: 1
    assert len(slack.messages("#fraud-alerts")) == 1
    [notification] = p.notifications()
    assert (notification.status, notification.attempts, notification.error) == ("sent", 1, None)
    assert notification.message_id == slack.messages()[0].ts


def test_an_hour_of_slack_500s_delivers_every_message_once_in_order_saying_how_late(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    without_retry_pauses(p.outbox)
    slack.fail_next("*", status=500, times=100_000)  # every request, for as long as the outage lasts
    assert p.evaluate().outcome == "breach"  # firing at T0
    for tick in range(120):  # an hour of the outbox's passes, every 30 s of fake time
        if tick == 60:  # half an hour in, the drift is over: the resolution queues behind the firing
            live_frame(ROWS, end=clock.now(), drift=False, seed=3).to_parquet(p.project.base_dir / "data" / "live-0001.parquet")
            assert p.evaluate().outcome == "ok"
        assert p.deliver() == 0
        clock.advance(timedelta(seconds=30))
    firing, resolved = p.notifications()
    assert (firing.status, resolved.status, resolved.attempts) == ("pending", "pending", 0)  # in line, not tried
    assert firing.attempts >= 10 and firing.error == "slack answered HTTP 500: internal_error"

    slack.clear_faults()
    clock.advance(timedelta(minutes=5))  # past the longest backoff
    assert p.deliver() == 2
    assert p.deliver() == 0
    firing, resolved = p.notifications()
    assert (firing.status, resolved.status, resolved.attempts) == ("sent", "sent", 1)
    # Once each, in order: the firing message posted, then updated in place by its resolution.
    assert [c.method for c in slack.requests if c.ok] == ["chat.postMessage", "chat.update"]
    [message] = slack.messages("#fraud-alerts")
    assert message.text.startswith("[RESOLVED] fraud-scorer / feature-drift")
    posted, updated = (c.body["text"] for c in slack.requests if c.ok)
    assert posted.splitlines()[1].startswith("sent late: this changed at 2026-11-25 12:00:00 UTC, 1h")
    assert updated.splitlines()[1].startswith("sent late: this changed at 2026-11-25 12:30:00 UTC, 3")
    assert p.outbox.stuck() is None


def test_a_notification_failing_past_give_up_after_fails_for_good(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    without_retry_pauses(p.outbox)
    p.outbox.give_up_after = timedelta(hours=1)
    slack.fail_next("*", status=503, times=100_000)
    p.evaluate()
    for _ in range(13):
        p.deliver()
        clock.advance(timedelta(minutes=5))
    row, told = p.notifications()
    assert (told.receiver, told.payload["model"], told.payload["feature"]) == (
        "fraud-team/console",
        "(monitor)",
        "fraud-team/slack",
    )
    assert row.status == "failed"
    assert row.error.startswith("gave up after 1h and ") and row.error.endswith(
        "attempts: slack answered HTTP 503: internal_error"
    )
    attempts = row.attempts
    clock.advance(timedelta(hours=1))
    assert p.deliver() == 0 and p.notifications()[0].attempts == attempts  # not tried again


@pytest.mark.parametrize("asked", [1e12, float("inf"), float("nan"), -5.0])
def test_a_retry_after_past_an_hour_or_not_a_number_is_not_waited_out_longer(tmp_path, sqlite_engine, clock, asked):
    outbox = Outbox(sqlite_engine, Receivers(DaemonConfig()), clock)
    assert timedelta(seconds=1) <= outbox.backoff(1, retry_after=asked) <= timedelta(hours=1)


# -- d. Slack down: the row waits with backoff, then goes out once ----------------------------------
@pytest.mark.parametrize("outage", ["http-500", "connection-refused"])
def test_slack_down_leaves_the_row_pending_with_backoff_then_delivers_once(tmp_path, sqlite_engine, clock, slack, outage):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    without_retry_pauses(p.outbox)
    p.evaluate()
    if outage == "http-500":
        slack.fail_next("chat.postMessage", status=500, times=3)  # the first try and slack-sdk's 2 retries
    else:
        slack.stop()  # the port is closed: connection refused

    stop = threading.Event()
    stop.set()
    p.outbox.run(stop)  # the daemon's loop: one pass, no exception

    [row] = p.notifications()
    assert (row.status, row.attempts) == ("pending", 1)
    if outage == "http-500":
        assert row.error == "slack answered HTTP 500: internal_error"
        assert [c.status for c in posts(slack)] == [500, 500, 500]
        assert slack.pending_faults() == 0
    else:
        assert row.error.startswith("slack unreachable: URLError") and "Connection refused" in row.error
        assert slack.requests == []
    assert T0 + timedelta(seconds=1.5) <= row.next_attempt <= T0 + timedelta(seconds=2)  # 2 s, less a jitter
    assert row.next_attempt > clock.now()
    assert slack.messages() == []

    # Not due yet: nothing is tried.
    seen = len(slack.requests)
    assert p.deliver() == 0
    assert len(slack.requests) == seen
    assert p.notifications()[0].attempts == 1

    # Slack is back and the clock has passed next_attempt: delivered, once.
    if outage == "connection-refused":
        slack.start()  # same port, same base_url
    clock.advance(timedelta(seconds=3))
    assert p.deliver() == 1
    assert p.deliver() == 0
    assert len(posts(slack, ok=True)) == 1
    [message] = slack.messages("#fraud-alerts")
    [row] = p.notifications()
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert (row.message_id, row.channel_id) == (message.ts, "C0001")


# -- e. crashes: between recording and delivering, and in doubt -------------------------------------
def assert_posted_once(slack, pipeline, *, attempts: int) -> None:
    """One message in the channel, and the one notification row points at it (by ts and metadata key)."""
    assert len(posts(slack)) == 1
    [message] = slack.messages("#fraud-alerts")
    [row] = pipeline.notifications()
    assert (row.status, row.attempts, row.message_id, row.channel_id) == ("sent", attempts, message.ts, "C0001")
    assert message.metadata["event_payload"]["key"] == pipeline.outbox.key(row.id)


def test_crash_between_recording_and_delivering_is_delivered_once_after_restart(tmp_path, engine, clock, slack):
    p = build(tmp_path, engine, clock, slack.url)
    assert p.evaluate().notifications_owed == 1
    [row] = p.notifications()
    assert (row.status, row.attempts) == ("pending", 0)  # committed with the alert, not yet sent

    # The process dies before its outbox delivers anything.
    clock.advance(timedelta(seconds=30))
    restarted = p.restart()
    del p
    assert slack.requests == []

    assert restarted.outbox.recover() == 0  # nothing was in doubt
    assert restarted.deliver() == 1
    assert restarted.deliver() == 0
    again = restarted.restart()  # and a second restart sends nothing more
    assert again.outbox.recover() == 0 and again.deliver() == 0
    try:
        assert_posted_once(slack, again, attempts=1)
    finally:
        again.engine.dispose()


def test_in_doubt_delivery_that_reached_slack_is_found_by_its_metadata_not_posted_again(tmp_path, engine, clock, slack):
    p = build(tmp_path, engine, clock, slack.url)
    p.evaluate()
    [notification_id] = p.outbox._due(200)
    assert p.outbox._claim(notification_id)  # pending -> sending
    row = p.notifications()[0]
    sender = SlackNotifier(TOKEN, slack.url)
    delivery = sender.send("#fraud-alerts", AlertMessage.from_dict(row.payload), p.outbox.key(notification_id), None)
    assert delivery.ok  # Slack has it, and then the process dies before recording
    # Later messages in the channel push ours past the first page of the history.
    other = WebClient(token=TOKEN, base_url=slack.url)
    for i in range(205):
        clock.advance(timedelta(seconds=1))
        other.chat_postMessage(
            channel="#fraud-alerts",
            text=f"chatter {i}",
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": f"someone-else-{i}"}},
        )
    slack.clear_requests()

    restarted = p.restart()
    del p
    try:
        assert restarted.outbox.recover() == 1
        assert posts(slack) == []  # found, not posted again
        history = slack.calls("conversations.history")
        assert len(history) == 2  # our message is on the second page
        assert history[0].body["channel"] == "C0001" and history[0].body["include_all_metadata"] == "1"
        assert float(history[0].body["oldest"]) <= row.created.timestamp()
        assert history[1].body.get("cursor")

        [row] = restarted.notifications()
        assert (row.status, row.attempts, row.error) == ("sent", 1, None)
        assert (row.message_id, row.channel_id) == (delivery.posted.message_id, "C0001")
        assert restarted.deliver() == 0
        assert posts(slack) == []
        assert len([m for m in slack.messages() if not m.text.startswith("chatter")]) == 1
    finally:
        restarted.engine.dispose()


def test_in_doubt_delivery_that_never_reached_slack_is_posted_once_after_recover(tmp_path, engine, clock, slack):
    slack.create_channel("#fraud-alerts")  # the channel exists; the message never got there
    p = build(tmp_path, engine, clock, slack.url)
    p.evaluate()
    [notification_id] = p.outbox._due(200)
    assert p.outbox._claim(notification_id)  # claimed, and the process dies before sending
    assert p.notifications()[0].status == "sending"

    restarted = p.restart()
    del p
    try:
        assert restarted.outbox.recover() == 1
        [history] = slack.calls("conversations.history")  # it looked first, and found nothing
        assert history.body["channel"] == "C0001"
        assert posts(slack) == []
        [row] = restarted.notifications()
        assert row.status == "pending"

        assert restarted.deliver() == 1
        assert restarted.deliver() == 0
        assert_posted_once(slack, restarted, attempts=2)
    finally:
        restarted.engine.dispose()


# -- f. an error a person must fix is not retried ---------------------------------------------------
@pytest.mark.parametrize("cause", ["scripted", "unknown-channel", "revoked-token"])
def test_non_retryable_error_marks_the_row_failed_and_is_not_retried(tmp_path, sqlite_engine, clock, cause):
    server = fake_slack(clock, channels=["general"] if cause == "unknown-channel" else None)
    try:
        if cause == "scripted":
            server.fail_next("chat.postMessage", error="channel_not_found")
        p = build(tmp_path, sqlite_engine, clock, server.url, token="xoxb-revoked" if cause == "revoked-token" else TOKEN)
        p.evaluate()
        assert p.deliver() == 1  # not the drift's: that Slack fails for good, told on the owner's console

        error = "invalid_auth" if cause == "revoked-token" else "channel_not_found"
        row, told = p.notifications()
        assert (row.status, row.attempts, row.error) == ("failed", 1, f"slack answered HTTP 200: {error}")
        assert (told.receiver, told.status, told.payload["model"]) == ("fraud-team/console", "sent", "(monitor)")
        [request] = server.requests
        assert (request.method, request.status, request.ok, request.error) == ("chat.postMessage", 200, False, error)

        clock.advance(timedelta(hours=1))
        assert p.outbox.recover() == 0
        assert p.deliver() == 0
        assert len(server.requests) == 1
        assert server.messages() == []
        assert p.notifications()[0].status == "failed"
    finally:
        server.stop()


# -- g. routes: a critical alert also goes to a second owner ----------------------------------------
def test_critical_alert_is_routed_to_a_second_owner_too(tmp_path, sqlite_engine, clock, slack):
    owners = {
        "fraud-team": {"slack": "#fraud-alerts", "mention": ["@dana"]},
        "ml-platform": {"slack": "#ml-platform", "mention": ["@oncall-ml"]},
    }
    routes = [{"match": {"severity": "critical"}, "also": ["ml-platform"]}]
    p = build(tmp_path, sqlite_engine, clock, slack.url, owners=owners, routes=routes, latency_scale=50.0)

    assert p.evaluate("feature-drift").outcome == "breach"  # critical
    assert p.evaluate("latency").outcome == "breach"  # warning: the owner only
    assert p.deliver() == 3

    by_receiver = {(n.receiver, n.payload["check"]): n for n in p.notifications()}
    assert sorted(by_receiver) == [
        ("fraud-team/slack", "feature-drift"),
        ("fraud-team/slack", "latency"),
        ("ml-platform/slack", "feature-drift"),
    ]
    assert all(n.status == "sent" for n in by_receiver.values())
    assert [r.body["channel"] for r in posts(slack)] == ["#fraud-alerts", "#ml-platform", "#fraud-alerts"]
    fraud, platform = slack.channel_id("#fraud-alerts"), slack.channel_id("#ml-platform")
    assert fraud != platform
    [drift_copy] = slack.messages("#ml-platform")
    assert drift_copy.text.startswith("[FIRING critical] fraud-scorer / feature-drift")
    assert "owner: fraud-team @dana" in drift_copy.text
    assert [m.text.split(":")[0] for m in slack.messages("#fraud-alerts")] == [
        "[FIRING critical] fraud-scorer / feature-drift",
        "[FIRING warning] fraud-scorer / latency",
    ]
    assert by_receiver[("ml-platform/slack", "feature-drift")].channel_id == platform

    # Resolution updates each receiver's own message, in its own channel.
    p.resolve("feature-drift")
    assert p.deliver() == 2
    assert len(posts(slack)) == 3
    updates = {(u.body["channel"], u.body["ts"]) for u in slack.calls("chat.update")}
    assert updates == {(fraud, slack.messages("#fraud-alerts")[0].ts), (platform, drift_copy.ts)}
    assert slack.messages("#ml-platform")[0].text.startswith("[RESOLVED] fraud-scorer / feature-drift")


# -- h. what the reviewer found ---------------------------------------------------------------------
def test_fallback_text_is_escaped_for_mrkdwn_but_the_mentions_are_kept(tmp_path, sqlite_engine, clock, slack):
    owners = {"fraud-team": {"slack": "#fraud-alerts", "mention": ["<@U0DANA>", "<!subteam^S0FRAUD>"]}}
    p = build(tmp_path, sqlite_engine, clock, slack.url, owners=owners)
    p.evaluate()
    assert p.deliver() == 1

    [request] = posts(slack)
    text = request.body["text"]
    # "... < 0.1" then "... >= 0.1" later on: raw, Slack would read "<...>" as one control sequence.
    assert "drift_share &gt; 0.3" in text and "&gt;=" in text
    assert "owner: fraud-team <@U0DANA> <!subteam^S0FRAUD>" in text
    rest = text.replace("<@U0DANA>", "").replace("<!subteam^S0FRAUD>", "")
    assert "<" not in rest and ">" not in rest
    assert request.body["blocks"][1]["text"]["text"] == "\n".join(text.splitlines()[1:])  # the blocks say the same


def test_resolution_of_a_deleted_message_is_posted_as_a_new_one(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    assert p.deliver() == 1
    [fired] = slack.messages()
    with Session(p.engine) as session:  # someone deleted the firing message in Slack
        session.get(Notification, p.notifications()[0].id).message_id = "1000000000.000100"
        session.commit()

    p.resolve()
    assert p.deliver() == 1

    [update] = slack.calls("chat.update")
    assert (update.ok, update.error) == (False, "message_not_found")
    first, second = posts(slack, ok=True)
    assert second.body["channel"] == "#fraud-alerts" and second.body["text"].startswith("[RESOLVED] fraud-scorer")
    _, resolved = p.notifications()
    assert (resolved.status, resolved.error) == ("sent", None)
    assert resolved.message_id == slack.messages("#fraud-alerts")[1].ts != fired.ts


def test_an_unreadable_payload_is_failed_and_the_loop_goes_on(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    with Session(p.engine) as session:  # written by a newer version, with a key this one lacks
        row = session.get(Notification, p.notifications()[0].id)
        row.payload = {**row.payload, "runbook": "https://wiki/fraud"}
        session.commit()

    stop = threading.Event()
    stop.set()
    p.outbox.run(stop)  # one pass of the daemon's loop: it must not die

    [row] = p.notifications()
    assert row.status == "failed"
    assert row.error.startswith("unreadable payload: TypeError") and "runbook" in row.error
    assert slack.requests == []


def test_an_unexpected_error_in_a_pass_is_logged_and_the_loop_goes_on(tmp_path, sqlite_engine, clock, slack, caplog):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    p.outbox.on_attempt = None
    calls = []

    def broken(limit: int = 200) -> int:
        calls.append(limit)
        raise RuntimeError("a bug")

    p.outbox.deliver_due = broken
    stop = threading.Event()
    stop.set()
    p.outbox.run(stop)  # logged, not raised: the thread lives on

    assert calls and "outbox pass failed" in caplog.text and "RuntimeError: a bug" in caplog.text
    del p.outbox.deliver_due
    p.outbox.run(stop)
    assert p.notifications()[0].status == "sent"


def test_a_claim_never_recorded_is_recovered_by_the_running_loop_after_the_lease(tmp_path, engine, clock, slack, monkeypatch):
    p = build(tmp_path, engine, clock, slack.url)
    p.evaluate()
    stop = threading.Event()
    stop.set()

    def database_down(notification_id: int) -> int:
        raise sa.exc.OperationalError("SELECT notifications", {}, Exception("connection lost"))

    monkeypatch.setattr(p.outbox, "_deliver", database_down)
    p.outbox.run(stop)  # claimed, then the database failed before the record
    monkeypatch.undo()
    assert p.notifications()[0].status == "sending"

    clock.advance(timedelta(minutes=4))  # within the lease: maybe still in hand, left alone
    p.outbox.run(stop)
    assert p.notifications()[0].status == "sending"
    assert posts(slack) == []

    clock.advance(timedelta(minutes=2))  # past the lease: looked up, not found, sent once
    p.outbox.run(stop)
    p.outbox.run(stop)
    assert len(posts(slack)) == 1
    [message] = slack.messages("#fraud-alerts")
    [row] = p.notifications()
    assert (row.status, row.attempts, row.message_id) == ("sent", 2, message.ts)
    assert p.outbox.lease == timedelta(minutes=5)  # the default


def test_recover_stale_leaves_a_claim_within_the_lease_alone(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    [notification_id] = p.outbox._due(200)
    assert p.outbox._claim(notification_id)

    clock.advance(timedelta(minutes=1))
    assert p.outbox.recover_stale() == 0  # another process may be waiting out a Retry-After
    assert p.notifications()[0].status == "sending"
    clock.advance(timedelta(minutes=5))
    assert p.outbox.recover_stale() == 1
    assert p.notifications()[0].status == "pending"
