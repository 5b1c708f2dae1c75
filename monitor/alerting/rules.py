"""Rules and the values they judge: which (rule, feature) pairs hold their condition now.

A check produces :class:`MetricValue` rows; a rule (:class:`RuleSpec`, one ``alert:`` item of a check
file) names one metric. A rule on a data-set metric (``drift_share > 0.3``) gives one observation; a
rule on a per-feature metric (``drifted == 1``) gives one per feature, each its own episode.

A rule is known by its :attr:`RuleSpec.key`: the ``id:`` the file gives it, else its condition in
canonical form, so an edit of spacing keeps the rule and an edit of the threshold without an ``id``
makes a new one (the old one's open episode is then closed, see :func:`orphaned`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, WithJsonSchema

from monitor.alerting.conditions import Condition
from monitor.config.types import Name, StrictModel, Wait

Severity = Literal["info", "warning", "critical"]
ConditionText = Annotated[Condition, PlainValidator(Condition.parse), WithJsonSchema({"type": "string"})]


@dataclass(frozen=True)
class MetricValue:
    """One number a check produced; ``feature`` is empty for a data-set level value."""

    metric: str
    value: float
    feature: str = ""


class RuleSpec(StrictModel):
    id: Name | None = None  # keeps the rule (and its open alert) when its condition is edited
    when: ConditionText
    severity: Severity = "warning"
    for_: Wait | None = Field(
        None, alias="for", description="how long the condition must hold (0s: fire at once); the check's `for` otherwise"
    )

    @property
    def key(self) -> str:
        """What an episode belongs to. An id has no spaces and a condition always has, so they never meet."""
        return self.id if self.id else self.when.canonical


def canonical_condition(text: str) -> str:
    """The canonical form of a stored condition text, or the text itself if it no longer parses."""
    try:
        return Condition.parse(text).canonical
    except ValueError:
        return text


@dataclass(frozen=True)
class Observation:
    rule: RuleSpec
    feature: str
    value: float
    breached: bool
    hold: timedelta

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.key, self.feature)


def observe(rules: Iterable[RuleSpec], values: Iterable[MetricValue], check_hold: timedelta) -> list[Observation]:
    """One observation per rule and matching value; ``hold`` is the rule's ``for``, else the check's."""
    by_metric: dict[str, list[MetricValue]] = {}
    for value in values:
        by_metric.setdefault(value.metric, []).append(value)
    out = []
    for rule in rules:
        hold = rule.for_ if rule.for_ is not None else check_hold
        for value in by_metric.get(rule.when.metric, []):
            if value.value is None or math.isnan(value.value):
                continue  # no value is neither a breach nor a recovery (roc_auc of a one-class window)
            out.append(Observation(rule, value.feature, value.value, rule.when.holds(value.value), hold))
    return out
