"""Alerting, pure: the episode state machine (a rule alone and a severity ladder), rules over a check's
values, and who is told."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerting.episodes import OpenEpisode, Rung, Step, advance
from monitor.alerting.routing import addressees
from monitor.alerting.rules import MetricValue, RuleSpec, observe
from monitor.config.models import DaemonConfig
from monitor.notifiers.registry import Receivers

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
ZERO = timedelta(0)


# -- advance --------------------------------------------------------------------------------------

PENDING = OpenEpisode("pending", T0, "warning")
FIRING = OpenEpisode("firing", T0, "warning")
W = "warning"

ADVANCE_CASES = [
    # id,                                 episode, breached, now,         hold,   expected
    ("ok stays ok", None, False, T0, 30 * M, None),
    ("ok stays ok, for 0", None, False, T0, ZERO, None),
    ("ok -> pending with for", None, True, T0, 30 * M, Step("pending", severity=W)),
    ("ok -> firing at once with for 0", None, True, T0, ZERO, Step("firing", "firing", W)),
    ("pending stays pending at +10m", PENDING, True, T0 + 10 * M, 30 * M, Step("pending", severity=W)),
    (
        "pending stays pending just before",
        PENDING,
        True,
        T0 + 30 * M - timedelta(seconds=1),
        30 * M,
        Step("pending", severity=W),
    ),
    ("pending -> firing when for elapsed", PENDING, True, T0 + 30 * M, 30 * M, Step("firing", "firing", W)),
    ("pending -> firing later on", PENDING, True, T0 + 3 * 60 * M, 30 * M, Step("firing", "firing", W)),
    ("pending -> ok, nobody told", PENDING, False, T0 + 10 * M, 30 * M, Step("ok")),
    ("pending -> ok after for, nobody told", PENDING, False, T0 + 60 * M, 30 * M, Step("ok")),
    ("firing stays firing, no re-notify", FIRING, True, T0 + 15 * M, 30 * M, Step("firing", severity=W)),
    ("firing stays firing, for 0", FIRING, True, T0 + 15 * M, ZERO, Step("firing", severity=W)),
    ("firing -> resolved notifies", FIRING, False, T0 + 15 * M, 30 * M, Step("resolved", "resolved", W)),
    ("firing -> resolved, for 0", FIRING, False, T0 + 15 * M, ZERO, Step("resolved", "resolved", W)),
]


def one(breached: bool, hold: timedelta, cleared: bool | None = None) -> list[Rung]:
    """A rule alone: a ladder of one rung."""
    return [Rung(W, breached, hold, not breached if cleared is None else cleared)]


@pytest.mark.parametrize(
    "episode, breached, now, hold, expected", [c[1:] for c in ADVANCE_CASES], ids=[c[0] for c in ADVANCE_CASES]
)
def test_advance(episode, breached, now, hold, expected):
    assert advance(episode, one(breached, hold), now) == expected


def test_hysteresis_keeps_a_firing_episode_until_its_rung_clears():
    assert advance(FIRING, one(False, ZERO, cleared=False), T0) == Step("firing", severity=W)
    assert advance(FIRING, one(False, ZERO, cleared=True), T0) == Step("resolved", "resolved", W)
    # A pending one ends at once: it never fired.
    assert advance(PENDING, one(False, 30 * M, cleared=False), T0) == Step("ok")


def ladder(value: float, critical_cleared: bool | None = None, *, warn_for: timedelta = ZERO) -> list[Rung]:
    """``> 0.3`` warning (for ``warn_for``) and ``> 0.5`` critical, judged on ``value``."""
    critical = value > 0.5
    return [
        Rung("warning", value > 0.3, warn_for, value <= 0.3),
        Rung("critical", critical, ZERO, not critical if critical_cleared is None else critical_cleared),
    ]


def test_a_severity_ladder_is_one_episode_that_climbs_falls_and_resolves_when_no_rung_holds():
    steps, episode = [], None
    for value in (0.1, 0.4, 0.6, 0.7, 0.45, 0.2, 0.1):
        step = advance(episode, ladder(value), T0)
        steps.append(None if step is None else (step.state, step.notify, step.severity, step.changed))
        if step is not None:
            episode = OpenEpisode(step.state, T0, step.severity) if step.is_open else None
    assert steps == [
        None,
        ("firing", "firing", "warning", False),
        ("firing", None, "critical", True),  # told as an update, in place
        ("firing", None, "critical", False),
        ("firing", None, "warning", True),
        ("resolved", "resolved", "warning", False),  # once no rung holds
        None,
    ]


def test_a_rung_without_for_fires_at_its_severity_while_a_lower_one_waits():
    assert advance(None, ladder(0.6, warn_for=30 * M), T0) == Step("firing", "firing", "critical")
    assert advance(None, ladder(0.4, warn_for=30 * M), T0) == Step("pending", severity="warning")


def test_a_rung_with_hysteresis_keeps_its_severity_until_it_clears():
    critical = OpenEpisode("firing", T0, "critical")
    # 0.45: the critical rung no longer breaches, but its margin is not passed yet: still critical.
    assert advance(critical, ladder(0.45, critical_cleared=False), T0) == Step("firing", severity="critical")
    assert advance(critical, ladder(0.45, critical_cleared=True), T0) == Step("firing", severity="warning", changed=True)
    # A warning episode is not lifted by a critical rung that is merely not cleared.
    assert advance(FIRING, ladder(0.45, critical_cleared=False), T0) == Step("firing", severity="warning")


@pytest.mark.parametrize("state, is_open", [("ok", False), ("pending", True), ("firing", True), ("resolved", False)])
def test_step_is_open(state, is_open):
    assert Step(state).is_open is is_open


def _run(timeline: list[tuple[timedelta, bool]], hold: timedelta) -> list[tuple[str, str | None]]:
    """Drive one rule through ``(offset from T0, breached)`` evaluations, keeping the episode as the
    evaluator does; the (state, notify) after each, '-' when nothing happened."""
    episode, out = None, []
    for offset, breached in timeline:
        now = T0 + offset
        step = advance(episode, one(breached, hold), now)
        if step is None:
            out.append(("-", None))
            continue
        out.append((step.state, step.notify))
        episode = OpenEpisode(step.state, episode.started if episode else now, step.severity) if step.is_open else None
    return out


def test_a_whole_episode_notifies_once_firing_and_once_resolved():
    timeline = [
        (ZERO, False),
        (15 * M, True),
        (30 * M, True),
        (45 * M, True),
        (60 * M, True),
        (75 * M, True),
        (90 * M, False),
        (105 * M, False),
    ]
    steps = _run(timeline, 30 * M)
    assert steps == [
        ("-", None),
        ("pending", None),
        ("pending", None),
        ("firing", "firing"),
        ("firing", None),
        ("firing", None),
        ("resolved", "resolved"),
        ("-", None),
    ]
    assert [n for _, n in steps if n] == ["firing", "resolved"]


def test_a_blip_shorter_than_for_notifies_nobody():
    steps = _run([(ZERO, True), (10 * M, True), (20 * M, False), (30 * M, True), (50 * M, True)], 30 * M)
    assert steps == [("pending", None), ("pending", None), ("ok", None), ("pending", None), ("pending", None)]
    assert not any(n for _, n in steps)


# -- observe --------------------------------------------------------------------------------------


def rule(**kw) -> RuleSpec:
    return RuleSpec.model_validate(kw)


DRIFT_VALUES = [
    MetricValue("drift_share", 2 / 3),
    MetricValue("drifted_count", 2.0),
    MetricValue("drift_score", 0.31, "amount"),
    MetricValue("drifted", 1.0, "amount"),
    MetricValue("drift_score", 0.25, "country"),
    MetricValue("drifted", 1.0, "country"),
    MetricValue("drift_score", 0.02, "account_age_days"),
    MetricValue("drifted", 0.0, "account_age_days"),
]


def test_a_data_set_rule_gives_one_observation():
    share = rule(when="drift_share > 0.3", severity="critical")
    [obs] = observe([share], DRIFT_VALUES, ZERO)
    assert obs.rule is share
    assert obs.feature == ""
    assert obs.value == pytest.approx(2 / 3)
    assert obs.breached is True
    assert obs.hold == ZERO
    assert obs.key == ("drift_share > 0.3", "")


def test_a_per_feature_rule_gives_one_observation_per_feature():
    drifted = rule(when="drifted == 1")
    observations = observe([drifted], DRIFT_VALUES, 30 * M)
    assert [(o.feature, o.value, o.breached) for o in observations] == [
        ("amount", 1.0, True),
        ("country", 1.0, True),
        ("account_age_days", 0.0, False),
    ]
    assert {o.key for o in observations} == {("drifted == 1.0", f) for f in ("amount", "country", "account_age_days")}
    assert all(o.hold == 30 * M for o in observations)


def test_several_rules_and_a_rule_with_no_values():
    rules = [rule(when="drift_share > 0.5"), rule(when="drift_score >= 0.25"), rule(when="p99_ms > 250")]
    observations = observe(rules, DRIFT_VALUES, ZERO)
    assert [(o.rule.when.metric, o.feature, o.breached) for o in observations] == [
        ("drift_share", "", True),
        ("drift_score", "amount", True),
        ("drift_score", "country", True),
        ("drift_score", "account_age_days", False),
    ]


@pytest.mark.parametrize(
    "rule_for, check_for, hold",
    [
        (None, ZERO, ZERO),
        (None, 30 * M, 30 * M),
        ("10m", 30 * M, 10 * M),
        ("1h", ZERO, 60 * M),
        ("90s", 5 * M, timedelta(seconds=90)),
    ],
)
def test_rule_for_overrides_check_for(rule_for, check_for, hold):
    spec = {"when": "drift_share > 0.3"} | ({"for": rule_for} if rule_for else {})
    [obs] = observe([rule(**spec)], DRIFT_VALUES, check_for)
    assert obs.hold == hold


def test_a_missing_value_is_neither_a_breach_nor_a_recovery():
    """roc_auc is NaN for a window whose labels are all one class: no observation, so no episode moves."""
    values = [MetricValue("p99_ms", math.nan), MetricValue("p50_ms", 20.0)]
    assert observe([rule(when="p99_ms < 100"), rule(when="p50_ms < 100")], values, ZERO) == [
        observe([rule(when="p50_ms < 100")], [MetricValue("p50_ms", 20.0)], ZERO)[0]
    ]


# -- routing --------------------------------------------------------------------------------------


def config(token: str = "xoxb-test", routes: list | None = None) -> DaemonConfig:
    return DaemonConfig.model_validate(
        {
            "notifiers": {"slack": {"token": token}},
            "owners": {
                "fraud-team": {"slack": "#fraud-alerts", "mention": ["@dana"]},
                "oncall": {"slack": "#oncall"},
                "ml-platform": {},  # no Slack channel: console
            },
            "routes": routes or [],
        }
    )


def labels(severity: str = "warning", owner: str = "fraud-team") -> dict[str, str]:
    return {"severity": severity, "model": "fraud-scorer", "check": "feature-drift", "owner": owner}


ROUTES = [
    {"match": {"severity": "critical"}, "also": ["oncall"], "continue": True},
    {"match": {"severity": "critical", "model": "fraud-scorer"}, "also": ["ml-platform", "fraud-team"]},
    {"match": {"model": "churn-model"}, "also": ["ml-platform"]},
]

ROUTING_CASES = [
    # id,                               token,       routes, owner,         severity,   expected
    ("owner's channel", "xoxb-test", [], "fraud-team", "warning", ["fraud-team/slack"]),
    ("owner without a channel", "xoxb-test", [], "ml-platform", "warning", ["ml-platform/console"]),
    ("unknown owner", "xoxb-test", [], "nobody", "critical", ["nobody/console"]),
    ("no route matches", "xoxb-test", ROUTES, "fraud-team", "warning", ["fraud-team/slack"]),
    (
        "critical: routes, each once",
        "xoxb-test",
        ROUTES,
        "fraud-team",
        "critical",
        ["fraud-team/slack", "oncall/slack", "ml-platform/console"],
    ),
    ("no Slack token: console", "", [], "fraud-team", "warning", ["fraud-team/console"]),
    (
        "no Slack token, routed: console",
        "",
        ROUTES,
        "fraud-team",
        "critical",
        ["fraud-team/console", "oncall/console", "ml-platform/console"],
    ),
]


@pytest.mark.parametrize(
    "token, routes, owner, severity, expected", [c[1:] for c in ROUTING_CASES], ids=[c[0] for c in ROUTING_CASES]
)
def test_receivers_for(token, routes, owner, severity, expected):
    assert receivers_for(owner, labels(severity, owner), config(token, routes)) == expected


def test_default_config_sends_to_the_console():
    assert receivers_for("fraud-team", labels("critical"), DaemonConfig()) == ["fraud-team/console"]


def test_a_receiver_is_named_by_owner_and_its_target_stays_in_memory():
    receivers = Receivers(config("xoxb-test", []))
    (slack,) = receivers.of("fraud-team")
    assert (slack.name, slack.kind, slack.target) == ("fraud-team/slack", "slack", "#fraud-alerts")
    assert receivers.resolve("fraud-team/slack") == slack
    assert receivers.resolve("gone-team/slack") is None


def receivers_for(owner: str, alert_labels: dict[str, str], daemon_config: DaemonConfig) -> list[str]:
    """What the evaluator enqueues: the receivers the routing tree gives, each once."""
    receivers = Receivers(daemon_config)
    routes = [route.rule() for route in daemon_config.routes]
    told = addressees(owner, alert_labels, routes, lambda o: [(r.name, r.kind) for r in receivers.of(o)])
    return [a.receiver for a in told]
