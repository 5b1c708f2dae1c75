"""Rules applied to one evaluation's values: which (rule, feature) pairs hold their condition now.

A rule on a data-set metric (``drift_share > 0.3``) gives one observation; a rule on a per-feature
metric (``drifted == 1``) gives one per feature, each its own episode.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from monitor.checks.base import MetricValue, RuleSpec


@dataclass(frozen=True)
class Observation:
    rule: RuleSpec
    feature: str
    value: float
    breached: bool
    hold: timedelta

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.when.text, self.feature)


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
