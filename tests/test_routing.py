"""The routing tree, and messages that tell several alerts at once.

- The decision, pure: the first route that matches is taken, ``continue`` lets the next ones be tried,
  a route's own routes refine it (the deepest match decides, inheriting what it does not set); ``via``
  keeps to kinds of receiver, ``mute`` tells no one; matches on the check file's labels and patterns.
- The config refuses a route naming an unknown owner or receiver, one that does nothing, and labels
  that shadow the built-in ones, each at its file:line:col.
- End to end (the real evaluator and outbox, slack-sdk and the Slack Web API, a pager endpoint on
  loopback, a FixedClock): labels route, a muted route records and sends nothing, ``group_by: [model]``
  makes two checks' firing one Slack message while the pager gets an event each, a receiver's cap
  per minute summarises the rest ("and 4 more alerts"), a route's ``repeat`` is its own, and a crash
  in the middle of a bundled delivery sends it once.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
import yaml

from monitor.alerting.routing import Addressee, RouteRule, addressees, plans
from monitor.clock import FixedClock
from monitor.config.errors import ConfigError
from monitor.config.loader import load_config
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.daemon.repeats import owe_repeats
from monitor.notifiers.bundling import Due, lots
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from tests.deployments import Pipeline
from tests.factories import T0, live_frame, write_project
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-test"
RECEIVERS = {
    "fraud-team": [("fraud-team/slack", "slack"), ("fraud-team/webhook", "webhook")],
    "ml-platform": [("ml-platform/slack", "slack")],
    "sre": [("sre/slack", "slack"), ("sre/webhook", "webhook")],
    "demo": [("demo/console", "console")],
}


def told(labels: dict, *routes: RouteRule, owner: str = "fraud-team") -> list[str]:
    alert = {"severity": "warning", "model": "fraud-scorer", "check": "drift", "owner": owner, **labels}
    return [a.receiver for a in addressees(owner, alert, list(routes), lambda o: RECEIVERS.get(o, []))]


def test_the_first_matching_route_is_taken_unless_it_says_continue():
    critical = RouteRule({"severity": "critical"}, also=("sre",))
    fraud = RouteRule({"model": "fraud-*"}, also=("ml-platform",))
    assert told({"severity": "critical"}, critical, fraud) == [
        "fraud-team/slack",
        "fraud-team/webhook",
        "sre/slack",
        "sre/webhook",
    ]
    assert told({"severity": "warning"}, critical, fraud) == ["fraud-team/slack", "fraud-team/webhook", "ml-platform/slack"]
    go_on = RouteRule({"severity": "critical"}, also=("sre",), continue_=True)
    assert told({"severity": "critical"}, go_on, fraud)[-1] == "ml-platform/slack"
    assert told({}, RouteRule({"model": "churn"}, also=("sre",))) == ["fraud-team/slack", "fraud-team/webhook"]


def test_a_routes_own_routes_refine_it_and_inherit_what_they_do_not_set():
    child = RouteRule({"severity": "critical"}, also=("sre/webhook",))  # only sre's pager, on top of the parent's
    parent = RouteRule(
        {"model": "fraud-scorer"}, also=("ml-platform",), via=("slack",), repeat=timedelta(hours=1), routes=(child,)
    )
    # The child is taken: its also adds to its parent's, but via: [slack] (inherited) keeps pagers out.
    assert told({"severity": "critical"}, parent) == ["fraud-team/slack", "ml-platform/slack"]
    [plan] = plans({"severity": "critical", "model": "fraud-scorer"}, [parent])
    assert (plan.also, plan.repeat) == (("ml-platform", "sre/webhook"), timedelta(hours=1))
    # No child matches: the parent itself is taken.
    assert told({"severity": "info"}, parent) == ["fraud-team/slack", "ml-platform/slack"]
    paging = RouteRule({"model": "fraud-scorer"}, routes=(RouteRule({"severity": "critical"}, also=("sre/webhook",)),))
    assert told({"severity": "critical"}, paging) == ["fraud-team/slack", "fraud-team/webhook", "sre/webhook"]


def test_via_keeps_pagers_out_of_warnings_but_the_console_stands_in_for_an_owner_with_nothing_else():
    warnings_to_slack = RouteRule({"severity": "warning"}, via=("slack",))
    assert told({"severity": "warning"}, warnings_to_slack) == ["fraud-team/slack"]
    assert told({"severity": "critical"}, warnings_to_slack) == ["fraud-team/slack", "fraud-team/webhook"]
    assert told({"severity": "warning"}, warnings_to_slack, owner="demo") == ["demo/console"]


def test_a_via_that_leaves_an_owner_no_receiver_tells_all_of_its_receivers_rather_than_no_one():
    pages_only = RouteRule({"severity": "critical"}, via=("webhook",))
    alert = {"severity": "critical", "model": "m", "check": "c", "owner": "ml-platform"}
    told = addressees("ml-platform", alert, [pages_only], lambda o: RECEIVERS[o])
    assert told == [Addressee("ml-platform/slack", unfiltered=True)]  # the Teller logs that it was so


def test_a_muted_route_tells_no_one_but_a_route_after_a_continue_still_does():
    staging = RouteRule({"model": "*-staging"}, mute=True)
    assert told({"model": "fraud-staging"}, staging) == []
    assert told({"model": "fraud-scorer"}, staging) == ["fraud-team/slack", "fraud-team/webhook"]
    info_muted = RouteRule({}, routes=(RouteRule({"severity": "info"}, mute=True),), also=("ml-platform",))
    assert told({"severity": "info"}, info_muted) == []
    unmuted = RouteRule({"severity": "info"}, mute=True, routes=(RouteRule({"tier": "gold"}, mute=False),))
    assert told({"severity": "info", "tier": "gold"}, unmuted) == ["fraud-team/slack", "fraud-team/webhook"]
    muted_then_sre = (RouteRule({"severity": "info"}, mute=True, continue_=True), RouteRule({}, also=("sre/slack",)))
    assert told({"severity": "info"}, *muted_then_sre) == ["fraud-team/slack", "fraud-team/webhook", "sre/slack"]


def test_routes_match_the_check_files_labels_and_patterns():
    gold = RouteRule({"tier": "gold", "check": "drift*"}, also=("sre/slack",))
    assert told({"tier": "gold"}, gold)[-1] == "sre/slack"
    assert told({"tier": "silver"}, gold) == ["fraud-team/slack", "fraud-team/webhook"]
    assert told({}, gold) == ["fraud-team/slack", "fraud-team/webhook"]  # no such label: no match


def test_group_by_gives_each_receiver_the_groups_key_and_wait():
    by_model = RouteRule({}, group_by=("model", "tier"), group_wait=timedelta(seconds=30), repeat=timedelta(hours=1))
    alert = {"severity": "critical", "model": "fraud-scorer", "check": "drift", "owner": "fraud-team"}
    first, *_ = addressees("fraud-team", alert, [by_model], lambda o: RECEIVERS[o])
    assert first == Addressee(
        "fraud-team/slack",
        group='{"model":"fraud-scorer","tier":""}',
        group_wait=timedelta(seconds=30),
        repeat=timedelta(hours=1),
    )


def test_bundling_groups_firing_alike_and_summarises_past_the_room_left():
    a, b = '{"model":"a"}', '{"model":"b"}'
    due = [Due(1, "firing", a), Due(2, "resolved", a), Due(3, "firing", a), Due(4, "repeat"), Due(5, "firing", b)]
    # An update or a resolution goes alone, at once, outside the cap: it edits its message in place.
    assert lots(due, room=10) == ([[2], [1, 3], [4], [5]], [])
    assert lots(due, room=2) == ([[2], [1, 3], [4, 5]], [])  # the last of the room tells the rest
    assert lots(due, room=1) == ([[2], [1, 3, 4, 5]], [])
    assert lots(due, room=0) == ([[2]], [1, 3, 4, 5])  # the minute is full: the news waits
    assert lots([], room=0) == ([], [])


# -- the config -----------------------------------------------------------------------------------


def write_config(tmp_path, routes: list, owners: dict | None = None) -> str:
    (tmp_path / "checks").mkdir(exist_ok=True)
    owners = owners or {"fraud-team": {"slack": "#fraud"}, "sre": {"slack": "#sre", "webhook": "https://pager.example/hook"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"owners": owners, "routes": routes}, sort_keys=False))
    return str(path)


@pytest.mark.parametrize(
    "routes, expected",
    [
        ([{"match": {}, "routes": [{"match": {"severity": "critical"}, "also": ["sre", "sr"]}]}], ":14:7: routes[0].routes[0].also[1]: unknown owner 'sr' (did you mean 'sre'?)"),
        ([{"also": ["fraud-team/webhook"]}], "routes[0].also[0]: fraud-team has no webhook receiver; it has: slack"),
        ([{"match": {"severity": "critical"}}], "routes[0]: this route changes nothing: give it also, via, mute, group_by, repeat or routes"),
        ([{"mute": True, "also": ["sre"]}], "routes[0].mute: a muted route tells no one: drop its also, or mute: true"),
        ([{"group_by": ["feature"]}], "a check's features are one incident, told as one message: group_by cannot split them"),
        ([{"via": ["webhook"], "also": ["fraud-team"]}], "routes[0].also[0]: fraud-team has no receiver this route's via (webhook) lets through: it would never be told here"),
        ([{"mute": True, "routes": [{"match": {"severity": "critical"}, "also": ["sre"]}]}], "routes[0].routes[0].also: a route above mutes this one, so its also is never told: give it mute: false, or drop the also"),
        ([{"match": {"owner": "fraud-tem"}, "also": ["sre"]}], "routes[0].match.owner: no owner 'fraud-tem' (did you mean 'fraud-team'?): this route would match no alert"),
        ([{"group_wait": "1m", "also": ["sre"]}], "routes[0].group_wait: group_wait is how long a group waits: give the route group_by"),
        ([{"group_by": ["model"], "group_wait": "1h"}], "routes[0].group_wait: a group waits at most 5m for the rest of its alerts"),
        ([{"via": []}], "routes[0].via: add at least one item"),
        ([{"via": ["pager"]}], "routes[0].via[0]: 'pager' is not allowed; expected one of 'slack', 'webhook', 'email' or 'console'"),
    ],
    ids=["unknown owner in a child", "no such receiver", "does nothing", "muted with also", "group by feature", "via lets none through", "muted above", "unknown owner matched", "group_wait alone", "group_wait too long", "via empty", "unknown kind"],
)  # fmt: skip
def test_the_config_refuses_a_route_that_cannot_work(tmp_path, routes, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, routes))
    assert expected in str(caught.value)


def test_a_check_file_label_cannot_shadow_a_built_in_one(tmp_path):
    config = write_project(tmp_path, live=live_frame(100))
    model = tmp_path / "checks" / "fraud-scorer.yaml"
    data = yaml.safe_load(model.read_text())
    data["labels"] = {"tier": "gold", "severity": "low"}
    model.write_text(yaml.safe_dump(data, sort_keys=False))
    [issue] = Project.load(config).checks.issues
    assert "labels.severity: 'severity' is a label every alert has already: call yours something else" in str(issue)


# -- end to end -----------------------------------------------------------------------------------


def latency_checks(count: int, severity: str = "critical") -> list[dict]:
    """``count`` latency checks that fire at once on the factory's rows (their p99 is well above 1 ms)."""
    return [
        {"name": f"latency-{i}", "kind": "latency", "every": "1m", "window": "1h", "alert": [{"when": "p99_ms > 1", "severity": severity}]}
        for i in range(1, count + 1)
    ]  # fmt: skip


def pipeline(tmp_path, engine, slack, *, checks, routes=None, owners=None, labels=None, notifiers=None, clock=None) -> Pipeline:
    config = write_project(
        tmp_path, live=live_frame(600), checks=checks, routes=routes, database_url=engine.url.render_as_string(hide_password=False),
        owners=owners or {"fraud-team": {"slack": "#fraud-alerts"}, "ml-platform": {"slack": "#ml-platform"}},
        slack={"token": TOKEN, "base_url": slack.url}, notifiers=notifiers,
    )  # fmt: skip
    if labels:
        model = tmp_path / "checks" / "fraud-scorer.yaml"
        model.write_text(yaml.safe_dump({**yaml.safe_load(model.read_text()), "labels": labels}, sort_keys=False))
    project = Project.load(config)
    clock = clock or FixedClock(T0)
    per_minute = project.config.notifiers.per_minute
    outbox = Outbox(engine, Receivers(project.config), clock, per_minute=per_minute)
    return Pipeline(project, engine, clock, Evaluator(engine, project.config, clock), outbox)


def texts(slack: FakeSlackAPI, channel: str) -> list[str]:
    return [c.body["text"] for c in slack.calls("chat.postMessage") if c.ok and c.body["channel"] == channel]


def test_the_check_files_labels_route_and_a_muted_route_records_without_sending(tmp_path, sqlite_engine, slack):
    routes = [
        {"match": {"labels": {"tier": "gold"}, "check": "latency-1"}, "also": ["ml-platform"]},
        {"match": {"check": "latency-2"}, "mute": True},
    ]
    p = pipeline(tmp_path, sqlite_engine, slack, checks=latency_checks(2), routes=routes, labels={"tier": "gold"})
    p.evaluate("latency-1")
    p.evaluate("latency-2")
    assert p.deliver() == 2
    assert [n.receiver for n in p.notifications()] == ["fraud-team/slack", "ml-platform/slack"]
    assert {a.check: a.state for a in p.alerts()} == {"latency-1": "firing", "latency-2": "firing"}  # recorded, both
    assert len(texts(slack, "#fraud-alerts")) == len(texts(slack, "#ml-platform")) == 1


def test_a_firing_that_joins_a_waiting_group_goes_with_it_at_the_end_of_its_wait(tmp_path, sqlite_engine, slack):
    routes = [{"match": {"model": "fraud-scorer"}, "group_by": ["model"]}]  # group_wait: 30s by default
    p = pipeline(tmp_path, sqlite_engine, slack, checks=latency_checks(3), routes=routes)
    p.evaluate("latency-1")
    p.clock.advance(timedelta(seconds=20))
    p.evaluate("latency-2")
    assert p.deliver() == 0  # the group waits 30s from its first message for the rest
    p.clock.advance(timedelta(seconds=10))
    assert p.deliver() == 2  # latency-2 joined the group's wait: one message for both
    assert len(texts(slack, "#fraud-alerts")) == 1
    p.evaluate("latency-3")  # the group went: a new one waits anew
    assert p.deliver() == 0
    p.clock.advance(timedelta(seconds=30))
    assert p.deliver() == 1
    assert texts(slack, "#fraud-alerts")[-1].startswith("[FIRING critical] fraud-scorer / latency-3")


def test_two_checks_due_together_in_one_group_are_one_message_worst_first(tmp_path, sqlite_engine, slack, pager):
    owners = {"fraud-team": {"slack": "#fraud-alerts", "webhook": pager.url}}
    routes = [{"match": {"model": "fraud-scorer"}, "group_by": ["model"], "group_wait": "1m"}]
    checks = [*latency_checks(1, "warning"), *latency_checks(2)[1:]]
    p = pipeline(tmp_path, sqlite_engine, slack, checks=checks, routes=routes, owners=owners)
    p.evaluate("latency-1")
    p.evaluate("latency-2")
    assert p.deliver() == 2  # both pages at once: a pager is never bundled nor kept waiting
    assert [e["event_action"] for e in pager.events()] == ["trigger", "trigger"]
    assert texts(slack, "#fraud-alerts") == []
    p.clock.advance(timedelta(minutes=1))
    assert p.deliver() == 2  # two notifications, one message
    [text] = texts(slack, "#fraud-alerts")
    assert text.startswith("[FIRING critical] fraud-scorer / latency-2: p99_ms = ")
    assert text.splitlines()[0].endswith(" and 1 more alert")
    assert "\nand 1 more alert:\n[FIRING warning] fraud-scorer / latency-1: p99_ms = " in text
    by_receiver = {n.alert_id: n for n in p.notifications() if n.receiver == "fraud-team/slack"}
    assert {n.status for n in by_receiver.values()} == {"sent"}
    assert len({n.bundle for n in by_receiver.values()}) == 1
    # Each one's resolution is its own message (an edit in place would overwrite the other's).
    live_frame(600, end=p.clock.now(), latency_scale=0.01, seed=2).to_parquet(p.project.base_dir / "data" / "live-0001.parquet")
    p.evaluate("latency-1")
    assert p.deliver() == 2  # Slack and the pager
    assert texts(slack, "#fraud-alerts")[-1].startswith("[RESOLVED] fraud-scorer / latency-1")
    assert [e["event_action"] for e in pager.events()][-1] == "resolve"


def test_past_its_cap_a_channel_gets_one_summary_of_the_rest(tmp_path, sqlite_engine, slack):
    p = pipeline(tmp_path, sqlite_engine, slack, checks=latency_checks(7), notifiers={"per_minute": 4})
    for i in range(1, 8):
        p.evaluate(f"latency-{i}")
    assert p.deliver() == 7
    sent = texts(slack, "#fraud-alerts")
    assert len(sent) == 4  # three alone, then one for the other four
    assert [t.split(":")[0] for t in sent[:3]] == [f"[FIRING critical] fraud-scorer / latency-{i}" for i in (1, 2, 3)]
    assert sent[3].splitlines()[0].endswith(" and 3 more alerts")
    assert sent[3].count("\n[FIRING critical] fraud-scorer / latency-") == 3
    # The minute is full: a resolution still goes at once, editing its message in place...
    live_frame(600, end=p.clock.now(), latency_scale=0.01, seed=2).to_parquet(p.project.base_dir / "data" / "live-0001.parquet")
    p.clock.advance(timedelta(seconds=10))
    p.evaluate("latency-1")
    assert p.deliver() == 1
    [resolved] = [c for c in slack.calls("chat.update") if c.ok]
    assert resolved.body["text"].startswith("[RESOLVED] fraud-scorer / latency-1")
    # ... while news waits until the minute has room, and then leads its own message.
    live_frame(600, end=p.clock.now()).to_parquet(p.project.base_dir / "data" / "live-0001.parquet")
    p.evaluate("latency-1")
    assert p.deliver() == 0
    p.clock.advance(timedelta(seconds=50))
    assert p.deliver() == 1
    assert texts(slack, "#fraud-alerts")[-1].startswith("[FIRING critical] fraud-scorer / latency-1")


def test_a_summary_of_a_large_outage_fits_slacks_limits(tmp_path, sqlite_engine, slack):
    long_named = [{**check, "name": f"{check['name']}-{'of-the-fraud-scorer-endpoint-' * 3}"} for check in latency_checks(60)]
    p = pipeline(tmp_path, sqlite_engine, slack, checks=long_named, notifiers={"per_minute": 1})
    for check in long_named:
        p.evaluate(check["name"])
    assert p.deliver() == 60  # one message, taken by a Slack that enforces Block Kit's limits
    [call] = [c for c in slack.calls("chat.postMessage") if c.ok]
    assert call.body["text"].splitlines()[0].endswith(" and 59 more alerts")
    sections = [b["text"]["text"] for b in call.body["blocks"] if b["type"] == "section"]
    assert sum(len(t) for t in sections) > 3000  # more than one section could hold
    assert max(len(t) for t in sections) <= 3000 and len(call.body["blocks"]) <= 50


def test_a_stale_claims_recovery_settles_a_bundle_whole(tmp_path, sqlite_engine, monkeypatch):
    """Members are claimed one after another: a lease ending between two claims must not split the bundle."""
    clock = FixedClock(T0)
    slack = FakeSlackAPI(TOKEN, now=lambda: clock.now().timestamp()).start()
    try:
        p = pipeline(tmp_path, sqlite_engine, slack, checks=[*latency_checks(1, "warning"), *latency_checks(2)[1:]],
                     notifiers={"per_minute": 1}, clock=clock)  # fmt: skip
        p.evaluate("latency-1")
        p.evaluate("latency-2")
        claim = p.outbox._claim

        def slow_claim(notification_id):  # each claim its own transaction, some milliseconds apart
            clock.advance(timedelta(milliseconds=5))
            return claim(notification_id)

        def database_gone(row, delivery):  # the bundle went out; recording it failed (the process lives on)
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

        monkeypatch.setattr(p.outbox, "_claim", slow_claim)
        monkeypatch.setattr(p.outbox, "_record", database_gone)
        with pytest.raises(sa.exc.OperationalError):
            p.deliver()
        monkeypatch.undo()
        first_claim = min(n.time for n in p.notifications())
        clock.set(first_claim + p.outbox.lease + timedelta(milliseconds=2))  # one member's lease is over, not all
        assert p.outbox.recover_stale() == 0
        clock.advance(timedelta(seconds=1))
        assert p.outbox.recover_stale() == 2
        p.deliver()
        assert len(texts(slack, "#fraud-alerts")) == 1
        assert {n.status for n in p.notifications()} == {"sent"}
    finally:
        slack.stop()


def test_a_routes_repeat_is_its_own(tmp_path, sqlite_engine, slack):
    routes = [{"match": {"check": "latency-1"}, "repeat": "1h"}]
    p = pipeline(tmp_path, sqlite_engine, slack, checks=latency_checks(2), routes=routes)
    p.evaluate("latency-1")
    p.evaluate("latency-2")
    assert p.deliver() == 2
    p.clock.advance(timedelta(hours=1))
    assert owe_repeats(sqlite_engine, timedelta(hours=4), p.clock.now()) == 1  # latency-1's; latency-2 waits 4h
    assert p.deliver() == 1
    [repeat] = [c.body["text"] for c in slack.calls("chat.postMessage") if c.ok and c.body.get("thread_ts")]
    assert repeat.startswith("[STILL FIRING critical] fraud-scorer / latency-1") and "told every 1h until acknowledged" in repeat
    p.clock.advance(timedelta(hours=3))
    assert owe_repeats(sqlite_engine, timedelta(hours=4), p.clock.now()) == 2


@pytest.mark.parametrize("crash", ["before the send", "after the send"])
def test_a_crash_in_a_bundled_delivery_sends_it_once(tmp_path, sqlite_engine, crash, monkeypatch):
    clock = FixedClock(T0)
    slack = FakeSlackAPI(TOKEN, now=lambda: clock.now().timestamp()).start()
    try:
        p = pipeline(tmp_path, sqlite_engine, slack, checks=latency_checks(3), notifiers={"per_minute": 1}, clock=clock)
        for i in (1, 2, 3):
            p.evaluate(f"latency-{i}")

        class Killed(BaseException):
            pass

        def die(*args, **kwargs):
            raise Killed

        monkeypatch.setattr(p.outbox, "_send" if crash == "before the send" else "_record", die)
        with pytest.raises(Killed):
            p.deliver()
        assert {n.status for n in p.notifications()} == {"sending"}
        assert len({n.bundle for n in p.notifications()}) == 1
        restarted = p.restart()
        assert restarted.outbox.recover() == 3
        restarted.deliver()
        assert {n.status for n in restarted.notifications()} == {"sent"}
        [text] = texts(slack, "#fraud-alerts")
        assert text.splitlines()[0].endswith(" and 2 more alerts")
    finally:
        slack.stop()
