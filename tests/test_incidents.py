"""One message per incident: the episodes of one check that fire together are told as one.

- Pure: which incident a newly firing episode joins, what each incident owes (firing, updated,
  resolved), and the episodes it lists, worst first.
- End to end (the real evaluator and outbox, slack-sdk, the Slack Web API on loopback): a drift with a
  data-set rule and a per-feature rule is ten... here three episodes, and one Slack message per state
  change of the check, posted once and updated in place; its text lists the other episodes.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from monitor.alerting.incidents import EpisodeNow, incident_changes
from monitor.notifiers.message import AlertMessage
from monitor.storage.tables import Alert, Notification
from tests.test_severity_ladder import Ladder


def episode(alert_id, state="firing", *, incident=None, severity="warning", feature="", value=1.0, threshold=0.5, change=None):
    return EpisodeNow(alert_id, incident, state, severity, feature, value, threshold, change)


# -- pure -------------------------------------------------------------------------------------------
def test_episodes_firing_together_open_one_incident_known_by_the_worst():
    nine = [episode(i, feature=f"f{i}", value=0.5 + i / 100, change="firing") for i in range(1, 10)]
    data_set = episode(20, severity="critical", value=0.6, change="firing")
    [change] = incident_changes([*nine, data_set])
    assert (change.incident_id, change.event, change.headline) == (20, "firing", 20)
    # Worst first: the critical one, then the features by how far past the threshold each is.
    assert change.firing == (20, 9, 8, 7, 6, 5, 4, 3, 2, 1)
    assert set(change.joined) == set(change.firing) and change.resolved == ()


def test_an_episode_firing_while_the_check_has_an_incident_joins_it():
    open_one = episode(5, incident=5)
    [change] = incident_changes([open_one, episode(6, feature="amount", change="firing")])
    assert (change.incident_id, change.event, change.joined, change.firing) == (5, "updated", (6,), (5, 6))


def test_an_incident_resolves_with_its_last_episode_and_updates_before():
    first, second = episode(5, incident=5), episode(6, incident=5, feature="amount")
    [update] = incident_changes([first, episode(6, "resolved", incident=5, feature="amount", change="resolved")])
    assert (update.event, update.firing, update.resolved) == ("updated", (5,), (6,))
    [end] = incident_changes([episode(5, "resolved", incident=5, change="resolved"), episode(6, "resolved", incident=5)])
    assert (end.event, end.headline, end.firing, end.resolved) == ("resolved", 5, (), (5,))
    assert incident_changes([first, second]) == []  # nothing changed: nothing to tell


def test_an_episode_firing_in_the_run_that_resolves_the_incidents_last_one_continues_the_incident():
    """The check never stopped breaching: one update (no resolve and a new page)."""
    changes = incident_changes([episode(5, "resolved", incident=5, change="resolved"), episode(7, change="firing")])
    [change] = changes
    assert (change.incident_id, change.event, change.firing, change.resolved, change.joined) == (5, "updated", (7,), (5,), (7,))


def test_an_episode_firing_after_the_incident_resolved_opens_a_new_one():
    changes = incident_changes([episode(5, "resolved", incident=5), episode(7, change="firing")])
    assert [(c.incident_id, c.event) for c in changes] == [(7, "firing")]


# -- end to end ---------------------------------------------------------------------------------------


PER_FEATURE = {"when": "drifted == 1", "severity": "warning"}
DATA_SET = {"when": "drift_share > 0.3", "severity": "critical"}


def test_a_drift_with_data_set_and_per_feature_rules_is_one_message_per_state_change(tmp_path, sqlite_engine, slack):
    check = Ladder(tmp_path, sqlite_engine, slack, PER_FEATURE, DATA_SET)
    assert [check.run(drifted) for drifted in (2, 1, 0)] == ["breach", "breach", "ok"]

    with Session(sqlite_engine) as session:
        alerts = list(session.scalars(sa.select(Alert).order_by(Alert.id)))
        told = list(session.scalars(sa.select(Notification).order_by(Notification.id)))
    assert sorted((a.rule, a.feature) for a in alerts) == [
        ("drift_share > 0.3", ""),
        ("drifted == 1", "amount"),
        ("drifted == 1", "country"),
    ]
    [incident] = {a.incident_id for a in alerts}
    assert incident == next(a.id for a in alerts if a.feature == "")  # the critical one opened it
    # The owner's channel, and the platform's (critical): firing, updated (country back), resolved.
    assert [(n.receiver, n.event) for n in told] == [
        ("fraud-team/slack", "firing"),
        ("ml-platform/slack", "firing"),
        ("fraud-team/slack", "updated"),
        ("ml-platform/slack", "updated"),
        ("fraud-team/slack", "resolved"),
        ("ml-platform/slack", "resolved"),
    ]
    assert {n.alert_id for n in told} == {incident} and {n.status for n in told} == {"sent"}
    assert len(slack.calls("chat.postMessage")) == 2 and len(slack.calls("chat.update")) == 4

    firing = AlertMessage.from_dict(told[0].payload)
    assert firing.subject == "[FIRING critical] fraud-scorer / feature-drift: drift_share = 0.6667 (+2 more)"
    lines = firing.lines()
    assert "also firing: drifted == 1 [amount], 1 (warning)" in lines
    assert "also firing: drifted == 1 [country], 1 (warning)" in lines
    updated = AlertMessage.from_dict(told[2].payload)
    assert updated.subject == "[UPDATED critical] fraud-scorer / feature-drift: drift_share = 0.3333 (+1 more)"
    assert "resolved: drifted == 1 [country], 0 (warning)" in updated.lines()
    [message] = slack.messages("#fraud-alerts")
    assert message.text.startswith("[RESOLVED] fraud-scorer / feature-drift: drift_share = 0")


def test_closing_one_episode_of_an_incident_by_hand_updates_it_and_the_last_resolves_it(tmp_path, sqlite_engine, slack):
    from monitor.daemon.closing import close_episode

    check = Ladder(tmp_path, sqlite_engine, slack, PER_FEATURE, DATA_SET)
    check.run(2)
    alerts = check.alerts()
    feature = next(a for a in alerts if a.feature == "amount")
    close_episode(sqlite_engine, feature.id, "closed by dana: known issue", check.clock.now())
    check.outbox.deliver_due()
    update = check.notifications()[-1]
    assert (update.event, update.alert_id) == ("updated", alerts[0].incident_id)
    lines = AlertMessage.from_dict(update.payload).lines()
    assert "closed: drifted == 1 [amount]: closed by dana: known issue" in lines
    for alert in check.alerts():
        if alert.state == "firing":
            close_episode(sqlite_engine, alert.id, "closed by dana", check.clock.now())
    check.outbox.deliver_due()
    assert [n.event for n in check.notifications()][-2:] == ["resolved", "resolved"]
    assert {n.status for n in check.notifications()} == {"sent"}
