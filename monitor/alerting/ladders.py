"""Severity ladders: the rules of one check on one metric, the same way round, are one alert.

``drift_share > 0.3`` (warning) and ``drift_share > 0.5`` (critical) on one check are rungs of one
ladder: one episode per feature, whose severity is the highest rung that holds, changed in place as
the value climbs or falls, and resolved only when no rung holds (each rung's hysteresis too). A rule
alone is a ladder of one, so every rule is judged the same way.

Rules are rungs of one ladder when they name the same metric, compare the same way (``>``/``>=``
or ``<``/``<=``) and are judged over the same windows: an SLO's page (1h and 5m) and ticket (6h and
30m) stay two alerts, as the SRE workbook means them. ``==`` and ``!=`` rules stand alone. A ladder
is known by its first rung, the least severe (file order among equals): its key is that rule's key,
so adding a critical rung above a warning rule keeps the warning's open episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.alerting.conditions import ABOVE, BELOW
from monitor.alerting.episodes import RuleKey, Rung
from monitor.alerting.rules import SEVERITY_RANK, Observation, RuleSpec


@dataclass(frozen=True)
class Ladder:
    rules: tuple[RuleSpec, ...]  # least severe first

    @property
    def lead(self) -> RuleSpec:
        return self.rules[0]

    @property
    def key(self) -> str:
        return self.lead.key

    @property
    def identity(self) -> RuleKey:
        """What its episodes are known by (monitor/alerting/episodes.py, ``orphaned``)."""
        conditions = frozenset(rule.when.canonical for rule in self.rules)
        return RuleKey(self.key, conditions, frozenset(rule.key for rule in self.rules[1:]))


def ladders(rules: Iterable[RuleSpec]) -> list[Ladder]:
    """The check's rules as ladders, in the order of their first rule."""
    groups: dict[tuple, list[RuleSpec]] = {}
    for i, rule in enumerate(rules):
        op = rule.when.op
        way = "above" if op in ABOVE else "below" if op in BELOW else f"alone-{i}"
        groups.setdefault((rule.when.metric, way, rule.windows), []).append(rule)
    return [Ladder(tuple(sorted(group, key=lambda r: SEVERITY_RANK[r.severity]))) for group in groups.values()]


@dataclass(frozen=True)
class Judged:
    """A ladder judged on one feature's value in one run: the observation of each rung (in rung order)."""

    ladder: Ladder
    feature: str
    observations: tuple[Observation, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.ladder.key, self.feature)

    @property
    def rungs(self) -> list[Rung]:
        return [Rung(o.rule.severity, o.breached, o.hold, o.cleared) for o in self.observations]

    def shown(self, severity: str) -> Observation:
        """The observation an alert of this severity shows: its most severe rung of it (the lead's when
        none was judged, as after an episode resolved on a value only the lead was judged on)."""
        of = [o for o in self.observations if o.rule.severity == severity]
        return of[-1] if of else self.observations[0]


def judge_ladders(check_ladders: Sequence[Ladder], observations: Iterable[Observation]) -> list[Judged]:
    """Each ladder with the observations of its rungs, per feature, in ladder order."""
    found: dict[tuple[str, str], list[Observation]] = {}
    for observation in observations:
        found.setdefault((observation.rule.key, observation.feature), []).append(observation)
    out = []
    for ladder in check_ladders:
        features = dict.fromkeys(f for rule in ladder.rules for (key, f) in found if key == rule.key)
        for feature in features:
            seen = [o for rule in ladder.rules for o in found.get((rule.key, feature), [])]
            out.append(Judged(ladder, feature, tuple(seen)))
    return out
