"""The two little languages of a check file: alert conditions (``metric OP number[%]``) and durations."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from monitor.alerting.conditions import Condition, ConditionError
from monitor.config.durations import format_duration, parse_duration

# --- conditions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold"),
    [
        ("drift_share > 0.3", "drift_share", ">", 0.3),
        ("drift_share >= 0.3", "drift_share", ">=", 0.3),
        ("p99_ms < 250", "p99_ms", "<", 250.0),
        ("p99_ms <= 250", "p99_ms", "<=", 250.0),
        ("drifted_count == 0", "drifted_count", "==", 0.0),
        ("drifted_count != 0", "drifted_count", "!=", 0.0),
        ("delta > -0.5", "delta", ">", -0.5),
        ("delta < -3", "delta", "<", -3.0),
        ("delta > +2", "delta", ">", 2.0),
        ("x > .5", "x", ">", 0.5),
        ("x > 5.", "x", ">", 5.0),
        ("rows < 1e3", "rows", "<", 1000.0),
        ("rows < 2.5E-3", "rows", "<", 0.0025),
        ("rows > 1e+2", "rows", ">", 100.0),
        ("availability < 99%", "availability", "<", 0.99),
        ("availability < 99.9 %", "availability", "<", 0.999),
        ("error_rate > 0.5%", "error_rate", ">", 0.005),
        ("p99_ms>=250", "p99_ms", ">=", 250.0),
        ("   p99_ms   >=   250   ", "p99_ms", ">=", 250.0),
        ("\tp99_ms\t>\t250\t", "p99_ms", ">", 250.0),
        ("_private2 > 1", "_private2", ">", 1.0),
        # A duration, in the unit the metric's name ends with.
        ("age_s > 2h", "age_s", ">", 7200.0),
        ("age_s >= 1h30m", "age_s", ">=", 5400.0),
        ("p99_ms > 250ms", "p99_ms", ">", 250.0),
        ("p99_ms > 0.25s", "p99_ms", ">", 250.0),
    ],
)
def test_condition_grammar_reads(text, metric, op, threshold):
    condition = Condition.parse(text)
    assert condition.metric == metric
    assert condition.op == op
    assert condition.threshold == pytest.approx(threshold)


def test_condition_text_is_normalised_for_messages():
    assert str(Condition.parse("  drift_share   >   0.3 ")) == "drift_share > 0.3"
    assert Condition.parse("availability < 99%").text == "availability < 99%"


@pytest.mark.parametrize(
    ("text", "value", "breached"),
    [
        ("drift_share > 0.3", 0.31, True),
        ("drift_share > 0.3", 0.3, False),
        ("drift_share >= 0.3", 0.3, True),
        ("drift_share >= 0.3", 0.29, False),
        ("p99_ms < 250", 249.9, True),
        ("p99_ms < 250", 250, False),
        ("p99_ms <= 250", 250, True),
        ("p99_ms <= 250", 251, False),
        ("drifted_count == 0", 0, True),
        ("drifted_count == 0", 1, False),
        ("drifted_count != 0", 2, True),
        ("drifted_count != 0", 0, False),
        ("delta < -0.5", -0.6, True),
        ("delta < -0.5", -0.4, False),
        ("availability < 99%", 0.985, True),
        ("availability < 99%", 0.995, False),
        ("availability < 99%", 98.0, False),  # the percentage is a fraction: 98 is not below 0.99
    ],
)
def test_condition_holds_when_the_value_breaches(text, value, breached):
    assert Condition.parse(text).holds(value) is breached


@pytest.mark.parametrize("text", ["x > 1", "x >= 1", "x < 1", "x <= 1", "x == 1", "x != 1"])
@pytest.mark.parametrize("missing", [math.nan, float("nan"), None])
def test_no_data_never_breaches(text, missing):
    assert Condition.parse(text).holds(missing) is False


@pytest.mark.parametrize(
    "text",
    [
        "drift_share >",  # no threshold
        "> 3",  # no metric
        "drift_share => 3",  # not an operator
        "drift_share = 3",  # not an operator
        "drift_share <> 3",  # not an operator
        "__import__('os')",  # code is never run
        "__import__('os').system('true') > 1",
        "a > b",  # the threshold must be a number
        "drift_share > 0.3 and p99_ms > 1",
        "drift_share > 0.3 # comment",
        "drift-share > 0.3",  # not a metric name
        "9lives > 1",
        "x > 1e",
        "x > 5%%",
        "x > nan",
        "x > inf",
        "",
        "   ",
    ],
)
def test_condition_rejections_explain_what_to_write(text):
    with pytest.raises(ConditionError) as caught:
        Condition.parse(text)
    message = str(caught.value)
    assert repr(text) in message, "the message quotes what was written"
    assert "metric OP number" in message
    assert "> >= < <= == !=" in message, "the message lists the operators"
    assert "drift_share > 0.3" in message, "the message gives an example"


def test_a_duration_threshold_is_the_same_rule_as_its_number():
    assert Condition.parse("age_s > 2h").canonical == Condition.parse("age_s > 7200").canonical


@pytest.mark.parametrize("text", ["drift_share > 1h", "rows < 5m", "error_rate > 2s"])
def test_a_duration_on_a_metric_that_is_not_a_time_says_so(text):
    with pytest.raises(ConditionError, match=r"a duration is a threshold only of a time in seconds or milliseconds"):
        Condition.parse(text)


@pytest.mark.parametrize("value", [3, 0.5, None, ["x > 1"], {"x": 1}])
def test_condition_that_is_not_text_is_rejected(value):
    with pytest.raises(ConditionError, match="expected a condition such as 'drift_share > 0.3'"):
        Condition.parse(value)


@pytest.mark.parametrize("text", ["accuracy < 1e999", "p99_ms > 2e308", "availability < 1e400%"])
def test_a_threshold_too_large_to_be_a_number_is_refused(text):
    with pytest.raises(ConditionError, match="too large to be a number: write a finite one"):
        Condition.parse(text)


def test_condition_error_is_a_value_error():
    """pydantic turns a ValueError into a validation issue at the line of the `when`."""
    assert issubclass(ConditionError, ValueError)


# --- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("250ms", timedelta(milliseconds=250)),
        ("1s500ms", timedelta(milliseconds=1500)),
        ("1.5h", timedelta(minutes=90)),
        (" 15m ", timedelta(minutes=15)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_durations_read(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("15x", "bad duration '15x': write a number and a unit (ms, s, m, h, d, w)"),
        ("15", "duration '15' has no unit: write for example 15s or 15m"),
        (15, "duration 15 has no unit: write for example 15s or 15m"),
        ("-1m", "duration '-1m' is negative: a duration is a length of time, such as 1m"),
        ("0s", "duration '0s' must be longer than zero"),
        ("0m0s", "must be longer than zero"),
        ("", "bad duration ''"),
        ("m", "bad duration 'm'"),
        ("15 minutes", "bad duration '15 minutes'"),
        ("1H", "bad duration '1H'"),
        (["15m"], "expected a duration such as 30s, 15m, 1h or 7d"),
        ({"minutes": 15}, "expected a duration such as 30s, 15m, 1h or 7d"),
        (None, "expected a duration such as 30s, 15m, 1h or 7d"),
        (True, "expected a duration such as 30s, 15m, 1h or 7d"),
        (1.5, "expected a duration such as 30s, 15m, 1h or 7d"),
    ],
)
def test_bad_durations_say_what_to_write(value, fragment):
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=15), "15m"),
        (timedelta(hours=1), "1h"),
        (timedelta(days=7), "7d"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4), "1d2h3m4s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(milliseconds=600), "600ms"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(0), "0ms"),
    ],
)
def test_format_duration_is_short_and_exact(delta, text):
    assert format_duration(delta) == text


@pytest.mark.parametrize("text", ["30s", "15m", "1h", "7d", "1h30m", "250ms", "90s", "1500ms", "1w", "36h", "2d3h4m5s"])
def test_format_duration_round_trips(text):
    delta = parse_duration(text)
    assert parse_duration(format_duration(delta)) == delta
    # and the formatted form is a fixed point
    assert format_duration(parse_duration(format_duration(delta))) == format_duration(delta)
