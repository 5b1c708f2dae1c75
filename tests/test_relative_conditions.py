"""Conditions on the reference and on a baseline, and hysteresis, in the pure core: the grammar (what it
reads, what it refuses and what it says), canonical forms (a rule's identity), how ``observe`` judges
values against references and baselines, and how ``advance`` keeps a firing episode until it clears.
Also the history read that baselines come from, on SQLite and PostgreSQL, and ``monitor validate``
accepting ``reference`` on a kind that computes one."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from factories import T0, write_project
from sqlalchemy.orm import Session

from monitor.alerting.conditions import Condition, ConditionError
from monitor.alerting.episodes import OpenEpisode, Rung, advance
from monitor.alerting.rules import (
    Baseline,
    Margin,
    MetricValue,
    RuleSpec,
    baselines_wanted,
    observe,
    waiting_for_baseline,
)
from monitor.checks import CHECKS
from monitor.config.errors import ConfigError
from monitor.config.loader import load_model_file
from monitor.storage import history
from monitor.storage.tables import Metric

ZERO = timedelta(0)
WEEK = timedelta(days=7)

# -- the grammar -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, anchor, factor, offset, canonical",
    [
        ("missing_share > reference + 0.05", "reference", 1.0, 0.05, "missing_share > reference + 0.05"),
        ("missing_share > reference - 0.05", "reference", 1.0, -0.05, "missing_share > reference - 0.05"),
        ("missing_share>reference+0.05", "reference", 1.0, 0.05, "missing_share > reference + 0.05"),
        ("missing_share > reference", "reference", 1.0, 0.0, "missing_share > reference"),
        ("missing_share > reference + 5%", "reference", 1.0, 0.05, "missing_share > reference + 0.05"),
        ("missing_share >= 2x reference", "reference", 2.0, 0.0, "missing_share >= 2.0x reference"),
        ("missing_share > 2x reference + 1%", "reference", 2.0, 0.01, "missing_share > 2.0x reference + 0.01"),
        ("p95_ms > 1.5x baseline", "baseline", 1.5, 0.0, "p95_ms > 1.5x baseline"),
        ("p95_ms > 1.5 x baseline", "baseline", 1.5, 0.0, "p95_ms > 1.5x baseline"),
        ("p95_ms > 1.50x baseline", "baseline", 1.5, 0.0, "p95_ms > 1.5x baseline"),
        ("p95_ms > 1x baseline + 0", "baseline", 1.0, 0.0, "p95_ms > baseline"),
        ("rows < 0.5x baseline", "baseline", 0.5, 0.0, "rows < 0.5x baseline"),
        ("p95_ms > baseline + 50", "baseline", 1.0, 50.0, "p95_ms > baseline + 50.0"),
        ("  p95_ms  <=  .5x  baseline  ", "baseline", 0.5, 0.0, "p95_ms <= 0.5x baseline"),
    ],
)
def test_a_condition_on_an_anchor_reads(text, anchor, factor, offset, canonical):
    condition = Condition.parse(text)
    assert (condition.anchor, condition.factor) == (anchor, factor)
    assert condition.threshold == pytest.approx(offset)
    assert condition.canonical == canonical
    assert Condition.parse(canonical).canonical == canonical, "the canonical form reads as itself"


def test_a_plain_condition_keeps_its_canonical_form():
    """Stored episodes are keyed by it: it must not change with the grammar."""
    assert [Condition.parse(t).canonical for t in ("p99_ms>250", "availability < 99%", "x != -1")] == [
        "p99_ms > 250.0",
        "availability < 0.99",
        "x != -1.0",
    ]
    assert Condition.parse("p99_ms > 250").anchor is None


@pytest.mark.parametrize(
    "text, anchor, expected",
    [
        ("x > reference + 0.05", 0.05, 0.10),
        ("x > reference - 0.05", 0.30, 0.25),
        ("x > 2x reference", 0.05, 0.10),
        ("x > 1.5x baseline", 250.0, 375.0),
        ("x > 1.5x baseline + 10", 250.0, 385.0),
        ("x > 0.3", None, 0.3),
        ("x > reference", None, None),  # no reference: no limit
        ("x > baseline", math.nan, None),
    ],
)
def test_the_limit_of_a_condition(text, anchor, expected):
    limit = Condition.parse(text).limit(anchor)
    assert limit == (pytest.approx(expected) if expected is not None else None)


def test_without_its_anchor_a_condition_never_holds():
    condition = Condition.parse("x > reference + 0.05")
    assert condition.holds(0.5, 0.1) is True
    assert condition.holds(0.5) is False
    assert condition.holds(math.nan, 0.1) is False


ANCHOR_HELP = (
    "compare with the reference as 'metric OP reference', 'metric OP reference + 0.05', 'metric OP 2x reference', "
    "'metric OP reference range' or 'metric outside reference', and with the metric's own past as 'metric OP 1.5x "
    "baseline', with OP one of > >= < <="
)


@pytest.mark.parametrize(
    "text, message",
    [
        ("p95_ms > 1.5 baseline", f"cannot read condition 'p95_ms > 1.5 baseline': {ANCHOR_HELP}"),
        ("p95_ms > baseline * 1.5", f"cannot read condition 'p95_ms > baseline * 1.5': {ANCHOR_HELP}"),
        ("p95_ms > 150% baseline", f"cannot read condition 'p95_ms > 150% baseline': {ANCHOR_HELP}"),
        ("p95_ms > 1.5X baseline", f"cannot read condition 'p95_ms > 1.5X baseline': {ANCHOR_HELP}"),
        ("x > reference + -0.05", f"cannot read condition 'x > reference + -0.05': {ANCHOR_HELP}"),
        ("x > reference + baseline", f"cannot read condition 'x > reference + baseline': {ANCHOR_HELP}"),
        ("x > reference +", f"cannot read condition 'x > reference +': {ANCHOR_HELP}"),
        ("x > the reference", f"cannot read condition 'x > the reference': {ANCHOR_HELP}"),
        ("x > 0x baseline", "the factor of 'x > 0x baseline' must be more than 0: write for example 'x > 1.5x baseline'"),
        ("x < -2x reference", "the factor of 'x < -2x reference' must be more than 0: write for example 'x < 1.5x reference'"),
        ("x == reference", "cannot read condition 'x == reference': '==' compares with a number only; compare with the reference by > >= < <="),
        ("x != 2x baseline", "cannot read condition 'x != 2x baseline': '!=' compares with a number only; compare with the baseline by > >= < <="),
        ("x > 1e999x baseline", "the factor of 'x > 1e999x baseline' is too large to be a number: write a finite one"),
        ("x > reference + 1e999", "the offset of 'x > reference + 1e999' is too large to be a number: write a finite one"),
    ],
)  # fmt: skip
def test_a_condition_on_an_anchor_that_does_not_read_says_what_to_write(text, message):
    with pytest.raises(ConditionError) as caught:
        Condition.parse(text)
    assert str(caught.value) == message


def test_a_metric_named_like_an_anchor_is_still_a_metric():
    assert Condition.parse("baseline_rows > 3").metric == "baseline_rows"
    assert "write 'metric OP number'" in _refusal("baseline_rows > three")


def _refusal(text: str) -> str:
    with pytest.raises(ConditionError) as caught:
        Condition.parse(text)
    return str(caught.value)


# -- rules: keys, margin, identity ---------------------------------------------------------------------------


def rule(**kw) -> RuleSpec:
    return RuleSpec.model_validate(kw)


@pytest.mark.parametrize(
    "written, value, percent", [(0.05, 0.05, False), ("0.05", 0.05, False), ("5%", 0.05, True), (" 1.5 % ", 0.015, True), (20, 20.0, False)]
)  # fmt: skip
def test_a_margin_reads_a_number_or_a_percentage(written, value, percent):
    margin = rule(when="x > 1", margin=written).margin
    assert margin == Margin(pytest.approx(value), percent)


@pytest.mark.parametrize(
    "written, message",
    [
        ("a little", "expected a margin such as 0.05"),
        (True, "expected a margin such as 0.05"),
        ([0.05], "expected a margin such as 0.05"),
        (-0.05, "write more than 0, got -0.05"),
        (0, "write more than 0, got 0"),
        ("1e999", "a margin must be a finite number"),
    ],
)
def test_a_margin_that_is_not_one_is_refused(written, message):
    with pytest.raises(ValueError, match=message):
        rule(when="x > 1", margin=written)


def test_hysteresis_and_the_baseline_are_not_part_of_a_rules_identity():
    """Tuning when an episode resolves, or how its baseline is measured, keeps the episode."""
    plain = rule(when="p95_ms > 1.5x baseline")
    tuned = [
        rule(when="p95_ms > 1.5x baseline", margin=20),
        rule(when="p95_ms > 1.5x baseline", resolve_when="p95_ms < 1.2x baseline"),
        rule(when="p95_ms>1.5 x baseline", baseline="1d", baseline_min_points=5),
    ]
    assert {r.key for r in tuned} == {plain.key} == {"p95_ms > 1.5x baseline"}
    assert rule(when="p95_ms > 2x baseline").key != plain.key  # the condition itself is


def test_defaults_of_a_baseline():
    assert (rule(when="x > 2x baseline").baseline_period, rule(when="x > 2x baseline").min_points) == (WEEK, 10)
    assert baselines_wanted([rule(when="x > 2x baseline"), rule(when="y > 1", resolve_when="y < baseline", baseline="1d"), rule(when="z > 1")]) == {
        ("x", WEEK),
        ("y", timedelta(days=1)),
    }  # fmt: skip


# -- observe: references --------------------------------------------------------------------------------------


def test_a_reference_rule_compares_each_value_with_its_own_reference():
    values = [
        MetricValue("missing_share", 0.11, "amount", reference=0.05),  # 0.11 > 0.10
        MetricValue("missing_share", 0.11, "country", reference=0.08),  # 0.11 <= 0.13
        MetricValue("missing_share", 0.90, "account_age_days"),  # no reference: not judged
    ]
    observations = observe([rule(when="missing_share > reference + 0.05")], values, ZERO)
    assert [(o.feature, o.breached, o.anchor, round(o.threshold, 6)) for o in observations] == [
        ("amount", True, 0.05, 0.10),
        ("country", False, 0.08, 0.13),
    ]


# -- observe: baselines ---------------------------------------------------------------------------------------


def test_a_baseline_rule_waits_until_its_baseline_has_enough_values():
    latency = rule(when="p95_ms > 1.5x baseline", baseline="1d")
    values = [MetricValue("p95_ms", 412.0)]
    key = ("p95_ms", "", timedelta(days=1))

    assert observe([latency], values, ZERO) == []
    [waiting] = waiting_for_baseline([latency], values)
    assert (waiting.points, waiting.needed) == (0, 10)
    assert (
        waiting.reason == "rule 'p95_ms > 1.5x baseline' waits for its baseline: 0 value(s) of p95_ms in the last 1d, 10 needed"
    )

    nine = {key: Baseline.of([250.0] * 9)}
    assert observe([latency], values, ZERO, nine) == [] and waiting_for_baseline([latency], values, nine)[0].points == 9

    ten = {key: Baseline.of([240.0] * 5 + [260.0] * 5)}
    [observation] = observe([latency], values, ZERO, ten)
    assert (observation.anchor, observation.threshold, observation.breached) == (250.0, 375.0, True)
    assert waiting_for_baseline([latency], values, ten) == []


def test_a_baseline_is_a_median_of_the_finite_values():
    assert Baseline.of([1.0, 100.0, 3.0, math.nan, 2.0]) == Baseline(4, 2.5)
    assert Baseline.of([]) == Baseline(0, None)


def test_a_per_feature_baseline_is_each_features_own():
    scores = rule(when="drift_score > 2x baseline", baseline_min_points=3)
    values = [MetricValue("drift_score", 0.3, "amount"), MetricValue("drift_score", 0.3, "country")]
    baselines = {
        ("drift_score", "amount", WEEK): Baseline.of([0.1, 0.1, 0.1]),
        ("drift_score", "country", WEEK): Baseline.of([0.2, 0.2]),
    }
    assert [(o.feature, o.breached) for o in observe([scores], values, ZERO, baselines)] == [("amount", True)]
    assert [(w.feature, w.points, w.needed) for w in waiting_for_baseline([scores], values, baselines)] == [("country", 2, 3)]


# -- observe and advance: hysteresis ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when, margin, value, breached, cleared",
    [
        ("x > 0.3", None, 0.25, False, True),  # no hysteresis: cleared as soon as it does not hold
        ("x > 0.3", 0.05, 0.31, True, False),
        ("x > 0.3", 0.05, 0.29, False, False),  # below the threshold, not yet 0.05 below it
        ("x > 0.3", 0.05, 0.25, False, True),  # x <= 0.25
        ("x >= 0.3", 0.05, 0.25, False, False),  # >=: cleared only once x < 0.25
        ("x >= 0.3", 0.05, 0.249, False, True),
        ("x < 0.9", 0.05, 0.92, False, False),
        ("x < 0.9", 0.05, 0.95, False, True),  # x >= 0.95
        ("x <= 0.9", 0.05, 0.95, False, False),  # <=: cleared only once x > 0.95
        ("availability < 99%", "0.5%", 0.994, False, False),
        ("availability < 99%", "0.5%", 0.996, False, True),
    ],
)
def test_a_margin_clears_only_that_far_back_past_the_threshold(when, margin, value, breached, cleared):
    spec = {"when": when} | ({"margin": margin} if margin is not None else {})
    [observation] = observe([rule(**spec)], [MetricValue("x" if when.startswith("x") else "availability", value)], ZERO)
    assert (observation.breached, observation.cleared) == (breached, cleared)


@pytest.mark.parametrize(
    "value, breached, cleared", [(0.31, True, False), (0.29, False, False), (0.2, False, False), (0.19, False, True)]
)
def test_resolve_when_clears_only_when_it_holds(value, breached, cleared):
    [observation] = observe([rule(when="drift_share > 0.3", resolve_when="drift_share < 0.2")], [MetricValue("drift_share", value)], ZERO)  # fmt: skip
    assert (observation.breached, observation.cleared) == (breached, cleared)


def test_a_resolve_when_that_overlaps_the_condition_never_clears_a_breach():
    """validate refuses such a pair when it can tell; when it cannot (other anchors), a value that still
    breaches is never a recovery."""
    [observation] = observe([rule(when="x > baseline", resolve_when="x < 0.5")], [MetricValue("x", 0.4)], ZERO, {("x", "", WEEK): Baseline.of([0.1] * 10)})  # fmt: skip
    assert (observation.breached, observation.cleared) == (True, False)


def test_a_resolve_when_on_a_baseline_uses_the_rules_baseline():
    flapping = rule(when="p95_ms > 1.5x baseline", resolve_when="p95_ms < 1.2x baseline", baseline="1d")
    baselines = {("p95_ms", "", timedelta(days=1)): Baseline.of([100.0] * 10)}
    judged = [observe([flapping], [MetricValue("p95_ms", v)], ZERO, baselines)[0] for v in (160.0, 130.0, 110.0)]
    assert [(o.breached, o.cleared) for o in judged] == [(True, False), (False, False), (False, True)]


T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_value_flapping_around_its_threshold_is_one_episode():
    """The pure loop the evaluator runs: observe, then advance the open episode."""
    hysteresis = rule(when="drift_share > 0.3", resolve_when="drift_share < 0.2")
    episode, told = None, []
    for minutes, share in enumerate([0.31, 0.29, 0.32, 0.28, 0.33, 0.15]):
        [o] = observe([hysteresis], [MetricValue("drift_share", share)], ZERO)
        now = T + timedelta(minutes=15 * minutes)
        step = advance(episode, [Rung(o.rule.severity, o.breached, o.hold, o.cleared)], now)
        assert step is not None
        told += [(share, step.notify)] if step.notify else []
        episode = OpenEpisode("firing" if step.state == "firing" else "pending", episode.started if episode else now, step.severity) if step.is_open else None  # fmt: skip
    assert told == [(0.31, "firing"), (0.15, "resolved")]


# -- the history a baseline is read from -------------------------------------------------------------------------


def test_history_reads_one_metric_of_one_check_over_a_period(engine):
    def metric(minutes: int, value: float, *, check: str = "latency", name: str = "p95_ms", feature: str = "") -> Metric:
        at = T0 + timedelta(minutes=minutes)
        return Metric(time=at, model="m", check=check, metric=name, feature=feature, value=value, window_start=at, window_end=at, sample_size=1)  # fmt: skip

    with Session(engine) as session:
        session.add_all(
            [
                metric(-61, 1.0),  # before the period
                metric(-60, 2.0),  # its first instant
                metric(-30, 3.0),
                metric(-1, 4.0),
                metric(0, 5.0),  # the run being judged: not its own baseline
                metric(-30, 9.0, check="other"),
                metric(-30, 9.0, name="p99_ms"),
                metric(-30, 6.0, name="drift_score", feature="amount"),
                metric(-20, 7.0, name="drift_score", feature="country"),
            ]
        )
        session.commit()
    period = history.CheckPeriod("m", "latency", T0 - timedelta(hours=1), T0)
    with engine.connect() as conn:
        assert history.values(conn, period, "p95_ms", "") == [4.0, 3.0, 2.0]
        assert history.values(conn, period, "p95_ms", "", limit=2) == [4.0, 3.0]  # the newest
        assert history.values(conn, period, "p95_ms", "amount") == []
        assert history.values_by_feature(conn, period, "drift_score") == {"country": [7.0], "amount": [6.0]}
        assert history.values(conn, replace(period, model="other-model"), "p95_ms", "") == []


# -- validate --------------------------------------------------------------------------------------------------------


def latency_file(tmp_path, *rules: dict):
    checks = [{"name": "latency", "kind": "latency", "every": "5m", "window": "10m", "alert": list(rules)}]
    write_project(tmp_path, checks=checks)
    return tmp_path / "checks" / "fraud-scorer.yaml"


def test_validate_accepts_every_new_form(tmp_path):
    path = latency_file(
        tmp_path,
        {"when": "p95_ms > 1.5x baseline", "baseline": "1d", "baseline_min_points": 20},
        {"when": "p99_ms > 2x baseline", "resolve_when": "p99_ms < 1.2x baseline", "severity": "critical"},
        {"when": "p50_ms > 300", "margin": 50},
        {"when": "max_ms > 1000", "resolve_when": "max_ms <= 1000"},
    )
    model = load_model_file(path, base_dir=tmp_path)
    assert [r.baseline_period for r in model.checks[0].alert[:2]] == [timedelta(days=1), WEEK]


def test_validate_accepts_reference_on_a_metric_whose_kind_computes_one(tmp_path, monkeypatch):
    path = latency_file(tmp_path, {"when": "p95_ms > reference + 10"})
    with pytest.raises(ConfigError, match="a latency check computes no reference value of 'p95_ms'"):
        load_model_file(path, base_dir=tmp_path)

    monkeypatch.setitem(CHECKS, "latency", replace(CHECKS["latency"], reference_metrics=frozenset({"p95_ms", "p99_ms"})))
    assert load_model_file(path, base_dir=tmp_path).checks[0].alert[0].when.anchor == "reference"
    latency_file(tmp_path, {"when": "p50_ms > reference"})
    with pytest.raises(ConfigError) as caught:
        load_model_file(path, base_dir=tmp_path)
    assert "computes no reference value of 'p50_ms' (it has one of p95_ms, p99_ms)" in str(caught.value)
