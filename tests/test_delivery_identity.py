"""Delivery is not fooled: what the attacker of issue 12 found about messages left in doubt.

- Notification ids repeat across databases, so two deployments (staging and production, or a database
  recreated from scratch) posting to one Slack channel took each other's messages for their own after
  a crash. Each database now has an installation id (migration 0004) that every delivery key holds,
  and a message matches only if its metadata also names the model, check, episode and event.
- A "resolved" update left in doubt was always sent again: chat.update now sets the metadata too, and
  the update's message is read back (conversations.history, latest=ts, inclusive, limit 1).

The pipelines, the fake Slack and the clock are those of tests/test_slack_delivery.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.notifiers.base import Posted
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.slack import METADATA_EVENT, SlackNotifier, metadata_of
from monitor.storage import db
from monitor.storage.tables import Installation, Notification
from tests.factories import T0
from tests.test_slack_delivery import TOKEN, Pipeline, build, fake_slack, posts


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def slack(clock):
    server = fake_slack(clock)
    yield server
    server.stop()


@pytest.fixture
def production(tmp_path):
    """The other deployment: its own SQLite file, posting to the same channel."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'production.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


def crash_after_claim(p: Pipeline) -> tuple[int, Pipeline]:
    """The next due notification is claimed (pending -> sending) and the process dies; the restart."""
    [notification_id] = p.outbox._due(200)
    assert p.outbox._claim(notification_id)
    return notification_id, p.restart()


def row(p: Pipeline, notification_id: int) -> Notification:
    with Session(p.engine) as session:
        found = session.get(Notification, notification_id)
        assert found is not None
        return found


def fired_and_resolved(tmp_path, engine, clock, slack) -> tuple[Pipeline, Notification]:
    """A firing message delivered, then resolved: the resolved notification is due."""
    p = build(tmp_path, engine, clock, slack.url)
    p.evaluate()
    assert p.deliver() == 1
    p.resolve()
    firing, resolved = p.notifications()
    assert (firing.status, resolved.event, resolved.status) == ("sent", "resolved", "pending")
    return p, firing


# -- the installation id --------------------------------------------------------------------------
def test_every_database_gets_its_own_installation_id_and_keeps_it(database_url, tmp_path):
    engine = db.create_engine(database_url)
    other = db.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        db.upgrade(engine, "0003")  # an existing database, from before the installation table
        assert "installation" not in sa.inspect(engine).get_table_names()
        db.upgrade(engine)
        db.upgrade(other)  # a fresh one, made at head
        ours = db.installation_id(engine)
        assert len(ours) == 36 and ours != db.installation_id(other)

        db.upgrade(engine)  # idempotent: the id stays
        assert db.installation_id(engine) == ours
        with Session(engine) as session:
            [installation] = session.scalars(sa.select(Installation))
            assert installation.created.tzinfo is not None

        db.downgrade(engine, "0003")  # a database recreated: a new id, never the old one
        db.upgrade(engine)
        assert db.installation_id(engine) != ours
    finally:
        engine.dispose()
        other.dispose()


def test_a_database_without_exactly_one_installation_row_delivers_nothing(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    with sqlite_engine.begin() as conn:
        conn.execute(sa.insert(Installation).values(id="00000000-0000-0000-0000-000000000000", created=T0))
    with pytest.raises(RuntimeError, match="exactly one row, it holds 2"):
        p.deliver()
    assert p.notifications()[0].status == "pending"  # not claimed: nothing left in doubt either
    assert slack.requests == []


# -- two databases, one channel ---------------------------------------------------------------------
def test_another_databases_message_is_not_taken_for_one_in_doubt(tmp_path, engine, production, clock, slack):
    prod = build(tmp_path / "production", production, clock, slack.url)
    prod.evaluate()
    assert prod.deliver() == 1
    [prod_message] = slack.messages("#fraud-alerts")

    staging = build(tmp_path / "staging", engine, clock, slack.url)
    staging.evaluate()
    [mine] = staging.notifications()
    [theirs] = prod.notifications()
    # The same ids on both sides: only the installation tells them apart.
    assert (mine.id, mine.alert_id, mine.payload["model"]) == (theirs.id, theirs.alert_id, theirs.payload["model"])
    clock.advance(timedelta(seconds=5))
    notification_id, restarted = crash_after_claim(staging)
    try:
        assert restarted.outbox.recover() == 1
        assert row(restarted, notification_id).status == "pending"  # looked up, and theirs not taken for it
        assert restarted.deliver() == 1

        first, second = slack.messages("#fraud-alerts")
        assert first.ts == prod_message.ts
        delivered = row(restarted, notification_id)
        assert (delivered.status, delivered.message_id) == ("sent", second.ts)
        assert second.metadata["event_payload"]["key"] == restarted.outbox.key(notification_id)
        assert restarted.outbox.key(notification_id) != prod.outbox.key(notification_id)

        # Its resolve edits its own message; production's is left as it was.
        restarted.resolve()
        assert restarted.deliver() == 1
        [update] = slack.calls("chat.update")
        assert update.body["ts"] == second.ts
        assert first.text.startswith("[FIRING critical]") and not first.edited
    finally:
        restarted.engine.dispose()


def test_a_message_with_the_key_but_another_model_check_or_episode_is_not_ours(tmp_path, sqlite_engine, clock, slack):
    p = build(tmp_path, sqlite_engine, clock, slack.url)
    p.evaluate()
    notification_id, restarted = crash_after_claim(p)
    message = AlertMessage.from_dict(row(restarted, notification_id).payload)
    expected = metadata_of(restarted.outbox.key(notification_id), message)
    poster = WebClient(token=TOKEN, base_url=slack.url)
    for field, value in [("model", "churn-model"), ("check", "latency"), ("alert_id", "99"), ("event", "resolved")]:
        clock.advance(timedelta(seconds=1))
        payload = {**expected["event_payload"], field: value}
        poster.chat_postMessage(
            channel="#fraud-alerts", text=f"not ours: {field}", metadata={**expected, "event_payload": payload}
        )
    try:
        assert restarted.outbox.recover() == 1
        assert row(restarted, notification_id).status == "pending"
        assert restarted.deliver() == 1
        ours = slack.messages("#fraud-alerts")[-1]
        assert ours.metadata == expected and row(restarted, notification_id).message_id == ours.ts
    finally:
        restarted.engine.dispose()


# -- a "resolved" update in doubt -------------------------------------------------------------------
def test_a_resolved_update_in_doubt_that_reached_slack_is_not_sent_again(tmp_path, engine, clock, slack):
    p, firing = fired_and_resolved(tmp_path, engine, clock, slack)
    notification_id, restarted = crash_after_claim(p)
    resolved = row(restarted, notification_id)
    # The update did reach Slack before the process died.
    previous = Posted(firing.message_id, firing.channel_id)
    sent = SlackNotifier(TOKEN, slack.url).send(
        "#fraud-alerts", AlertMessage.from_dict(resolved.payload), restarted.outbox.key(notification_id), previous
    )
    assert sent.ok and sent.posted == previous
    slack.clear_requests()
    try:
        assert restarted.outbox.recover() == 1
        [lookup] = slack.calls("conversations.history")  # the updated message itself, read back
        assert lookup.body["channel"] == firing.channel_id and lookup.body["latest"] == firing.message_id
        assert (lookup.body["inclusive"], lookup.body["limit"], lookup.body["include_all_metadata"]) == ("1", "1", "1")

        assert restarted.deliver() == 0
        assert slack.calls("chat.update") == [] and posts(slack) == []
        settled = row(restarted, notification_id)
        assert (settled.status, settled.attempts, settled.message_id, settled.channel_id) == (
            "sent",
            1,
            firing.message_id,
            firing.channel_id,
        )
        [message] = slack.messages("#fraud-alerts")
        assert message.text.startswith("[RESOLVED]") and len(message.updates) == 1
    finally:
        restarted.engine.dispose()


def test_a_resolved_update_in_doubt_that_never_reached_slack_is_sent(tmp_path, engine, clock, slack):
    p, firing = fired_and_resolved(tmp_path, engine, clock, slack)
    notification_id, restarted = crash_after_claim(p)
    slack.clear_requests()
    try:
        assert restarted.outbox.recover() == 1  # the message still says "firing", with the firing key
        assert row(restarted, notification_id).status == "pending"
        assert posts(slack) == [] and slack.calls("chat.update") == []

        assert restarted.deliver() == 1
        assert restarted.deliver() == 0
        [update] = slack.calls("chat.update")
        assert update.body["ts"] == firing.message_id
        [message] = slack.messages("#fraud-alerts")
        assert message.text.startswith("[RESOLVED]") and message.metadata["event_payload"]["event"] == "resolved"
        assert row(restarted, notification_id).status == "sent"
    finally:
        restarted.engine.dispose()


def test_a_resolved_posted_anew_for_a_deleted_message_is_found_in_the_history(tmp_path, sqlite_engine, clock, slack):
    p, firing = fired_and_resolved(tmp_path, sqlite_engine, clock, slack)
    gone = Posted("1000000000.000100", firing.channel_id)  # someone deleted the firing message
    notification_id, restarted = crash_after_claim(p)
    resolved = row(restarted, notification_id)
    sent = SlackNotifier(TOKEN, slack.url).send(
        "#fraud-alerts", AlertMessage.from_dict(resolved.payload), restarted.outbox.key(notification_id), gone
    )
    assert sent.ok and sent.posted.message_id != firing.message_id  # posted as a new message
    with Session(restarted.engine) as session:
        session.get(Notification, firing.id).message_id = gone.message_id
        session.commit()
    slack.clear_requests()
    try:
        assert restarted.outbox.recover() == 1
        assert [r.body.get("latest") for r in slack.calls("conversations.history")] == [gone.message_id, None]
        assert restarted.deliver() == 0
        assert posts(slack) == [] and slack.calls("chat.update") == []
        assert row(restarted, notification_id).message_id == sent.posted.message_id
    finally:
        restarted.engine.dispose()


def test_the_metadata_is_strings_under_the_monitor_event_type():
    message = AlertMessage.from_dict(
        dict(alert_id=7, event="firing", model="m", check="c", kind="drift", owner="o", severity="critical", rule="x > 1",
             metric="x", value=2.0, threshold=1.0, started="", window="1h", window_start="", window_end="", sample_size=1)
    )  # fmt: skip
    metadata = metadata_of("monitor-abc-1", message)
    assert metadata["event_type"] == METADATA_EVENT
    assert all(isinstance(value, str) for value in metadata["event_payload"].values())
