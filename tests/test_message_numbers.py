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


def test_a_threshold_made_from_a_baseline_says_what_it_was_made_of():
    relative = message(rule="p95_ms > 1.5x baseline", metric="p95_ms", value=412.0, threshold=375.0, anchor="baseline",
                       anchor_value=250.0, factor=1.5, baseline="7d", severity="warning")  # fmt: skip
    assert relative.subject == "[FIRING warning] fraud-scorer / quality: p95_ms = 412"
    assert relative.lines()[0] == (
        "rule: p95_ms > 1.5x baseline (threshold 375 = 1.5x baseline 250, the median of the last 7d), severity warning"
    )


def test_a_threshold_made_from_the_reference_shows_the_reference_and_the_offset():
    reference = message(rule="missing_share > reference + 0.05", metric="missing_share", value=0.11, threshold=0.1,
                        anchor="reference", anchor_value=0.05, offset=0.05, feature="amount")  # fmt: skip
    assert reference.subject == "[FIRING critical] fraud-scorer / quality / amount: missing_share = 0.11"
    assert reference.lines()[0] == (
        "rule: missing_share > reference + 0.05 (threshold 0.1 = reference 0.05 + 0.05), severity critical"
    )
    below = message(rule="missing_share > 2x reference - 0.01", metric="missing_share", value=0.11, threshold=0.09,
                    anchor="reference", anchor_value=0.05, factor=2.0, offset=-0.01)  # fmt: skip
    assert "(threshold 0.09 = 2x reference 0.05 - 0.01)" in below.lines()[0]


def test_a_computed_threshold_does_not_lend_the_value_its_digits():
    """1.5 x 96.1965 has no written precision: the value is shown to the threshold as it is shown."""
    assert format_number(199.76318, 1.5 * 96.19653) == "199.8"
    relative = message(rule="p95_ms > 1.5x baseline", metric="p95_ms", value=199.76318, threshold=1.5 * 96.19653,
                       anchor="baseline", anchor_value=96.19653, factor=1.5, baseline="1h")  # fmt: skip
    assert relative.subject.endswith("p95_ms = 199.8")
    assert "(threshold 144.3 = 1.5x baseline 96.2, the median of the last 1h)" in relative.lines()[0]


@pytest.mark.parametrize(
    "hysteresis, line",
    [
        ({"resolve_when": "roc_auc > 0.98"}, "resolves when roc_auc > 0.98"),
        ({"margin": 0.02}, "resolves when roc_auc >= 0.9833 (0.02 back past the threshold)"),
    ],
)
def test_a_firing_message_says_when_a_rule_with_hysteresis_resolves(hysteresis, line):
    assert line in message(**hysteresis).lines()
    assert not any(text.startswith("resolves when") for text in message(event="resolved", **hysteresis).lines())
    assert not any(text.startswith("resolves when") for text in message().lines())


def test_a_message_stored_before_these_fields_still_reads():
    stored = message().to_dict()
    for key in ("anchor", "anchor_value", "band", "factor", "offset", "baseline", "resolve_when", "margin"):
        del stored[key]
    assert AlertMessage.from_dict(stored).lines() == message().lines()


def test_a_class_name_from_the_data_cannot_fake_a_line_of_the_alert():
    faked = message(feature="fraud\n[RESOLVED] fraud-scorer / quality: all clear", rule="class_share > reference range")
    assert "\n" not in faked.subject
    assert faked.subject.startswith("[FIRING critical] fraud-scorer / quality / fraud\\u000a[RESOLVED]")
    assert faked.text().splitlines()[0] == faked.subject


def test_a_rule_on_the_reference_range_says_which_edge_and_the_range():
    firing = message(rule="missing_share > reference range", metric="missing_share", value=0.28, threshold=0.136,
                     band=[0.0, 0.136])  # fmt: skip
    assert "rule: missing_share > reference range (threshold 0.136, the top of its reference range 0 to 0.136)" in firing.text()
