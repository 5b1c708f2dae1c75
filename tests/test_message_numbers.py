"""A value is never printed with fewer digits than its threshold, nor so few that the two read alike."""

from __future__ import annotations

import pytest

from monitor.notifiers.message import AlertMessage, format_number


@pytest.mark.parametrize(
    "value, threshold, shown",
    [
        (0.95999, 0.9633, "0.9600"),  # was "0.96" against "0.9633"
        (0.96, 0.9633, "0.9600"),
        (0.9633, 0.9633, "0.9633"),
        (0.30004, 0.3, "0.30004"),  # close to its threshold: as many digits as tell them apart
        (0.6667, 0.3, "0.6667"),
        (312.0, 250, "312"),
        (250.25, 250, "250.2"),
        (12_345.6, 10_000, "12,346"),
        (1e-9, 0.05, "1e-09"),
    ],
)
def test_a_value_against_its_threshold(value, threshold, shown):
    assert format_number(value, threshold) == shown


def test_without_a_threshold_four_significant_digits():
    assert [format_number(v) for v in (0.3, 250.0, 0.123456, 12_345.6, None)] == ["0.3", "250", "0.1235", "12,346", "n/a"]


def message(**fields) -> AlertMessage:
    """A firing message of a quality check; ``fields`` change what the test is about."""
    base = dict(
        alert_id=1, event="firing", model="fraud-scorer", check="quality", kind="performance", owner="fraud-team",
        severity="critical", rule="roc_auc < 0.9633", metric="roc_auc", value=0.95999, threshold=0.9633,
        started="2026-12-02T06:00:00+00:00", window="1h", window_start="2026-12-02T05:00:00+00:00",
        window_end="2026-12-02T06:00:00+00:00", sample_size=500,
    )  # fmt: skip
    return AlertMessage(**(base | fields))


def test_the_subject_shows_the_value_as_precisely_as_the_threshold():
    firing = message()
    assert firing.subject == "[FIRING critical] fraud-scorer / quality: roc_auc = 0.9600"
    assert firing.lines()[0] == "rule: roc_auc < 0.9633 (threshold 0.9633), severity critical"


def test_a_message_names_the_features_that_were_not_checked():
    reason = "0 usable value(s) in 500 row(s), 30 needed (min_rows): 500 missing"
    skipped = message(rule="skipped_features > 0", metric="skipped_features", value=1.0, threshold=0.0,
                      skipped_features=[{"feature": "country", "reason": reason}])  # fmt: skip
    assert f"not checked: country: {reason}" in skipped.lines()
