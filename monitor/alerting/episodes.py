"""The alert state machine: ``ok -> pending -> firing -> resolved``, one episode per ladder and feature.

``advance`` is a pure function of the open episode (if any), each rung of its ladder judged now
(whether it holds, whether with hysteresis it lets a firing episode resolve, how long it must hold:
``for:``; monitor/alerting/ladders.py), and the time. It says the next state, the severity, and
whether anyone must be told.
An episode that goes back to ``ok`` from ``pending`` never fired, so nobody is told.
``orphaned`` finds the open episodes that no rule can move any more (a rule edited away).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from monitor.alerting.rules import SEVERITY_RANK

State = Literal["ok", "pending", "firing", "resolved"]
Event = Literal["firing", "resolved"]


def open_state(state: str) -> Literal["pending", "firing"]:
    """A stored state read as an open one (the query asked only for open episodes)."""
    if state not in ("pending", "firing"):
        raise ValueError(f"not an open state: {state!r}")
    return "pending" if state == "pending" else "firing"


@dataclass(frozen=True)
class OpenEpisode:
    state: Literal["pending", "firing"]
    started: datetime
    severity: str = ""  # what a firing episode was last told as (a ladder's rung)


@dataclass(frozen=True)
class Step:
    state: State
    notify: Event | None = None
    severity: str = ""  # the episode's severity now: the highest rung that holds
    # A firing episode whose severity moved to another rung (up or down): told as an update.
    changed: bool = False

    @property
    def is_open(self) -> bool:
        return self.state in ("pending", "firing")


@dataclass(frozen=True)
class Rung:
    """One rule of a ladder judged on a value: its severity, whether it holds, how long it must hold
    (``for:``) and whether, as far as it goes, a firing episode may resolve (``cleared``: it does not
    hold and, with hysteresis, the value is back past its resolve condition or margin)."""

    severity: str
    breached: bool
    hold: timedelta
    cleared: bool


def _highest(rungs: Iterable[Rung]) -> str:
    return max((r.severity for r in rungs), key=lambda s: SEVERITY_RANK.get(s, -1))


def advance(episode: OpenEpisode | None, rungs: Sequence[Rung], now: datetime) -> Step | None:
    """The next step of an episode of a ladder (a rule alone is a ladder of one), or None when there is
    none and nothing happened.

    A breach opens an episode, pending until a breached rung has held for its ``for`` (at once with
    none), then firing at the highest such rung. While firing, its severity is the highest rung that
    holds: a breached one, or one at or below the episode's severity that has not cleared (hysteresis
    keeps a firing episode at its rung while the value is not yet back past it); it resolves when no
    rung holds. A pending one ends as soon as no rung is breached: it never fired, so there is nothing
    to hold on to, and nobody is told."""
    breached = [r for r in rungs if r.breached]
    if episode is None or episode.state == "pending":
        if not breached:
            return Step("ok") if episode is not None else None
        since = episode.started if episode is not None else now
        ready = [r for r in breached if now - since >= r.hold]
        if ready:
            return Step("firing", "firing", _highest(ready))
        return Step("pending", severity=_highest(breached))
    rank = SEVERITY_RANK.get(episode.severity, max(SEVERITY_RANK.values()))
    holding = [r for r in rungs if r.breached or (not r.cleared and SEVERITY_RANK.get(r.severity, -1) <= rank)]
    if not holding:
        return Step("resolved", "resolved", episode.severity)
    severity = _highest(holding)
    return Step("firing", severity=severity, changed=bool(episode.severity) and severity != episode.severity)


@dataclass(frozen=True)
class OpenKey:
    """What an open episode belongs to, as stored: its rule's key, and its condition in canonical form."""

    alert_id: int
    check: str
    rule_key: str
    condition: str
    feature: str


@dataclass(frozen=True)
class RuleKey:
    """A loaded ladder as episodes know it: its key (its lead rule's id, else condition), the
    conditions of its rungs, and the keys of its other rungs."""

    key: str
    conditions: frozenset[str]
    rungs: frozenset[str] = frozenset()


def belongs(episode_key: str, episode_condition: str, rule: RuleKey) -> bool:
    """Whether an open episode is this ladder's: by key, or by an unchanged condition of one of its rungs
    when only the id was added or removed (so that naming a rule neither closes nor re-fires its alert)."""
    return episode_key == rule.key or episode_condition in rule.conditions


def orphaned(
    episodes: Iterable[OpenKey], rules: Mapping[str, Collection[RuleKey]], features: Collection[str]
) -> list[tuple[int, str]]:
    """``(alert id, why)`` for each open episode that no rule of the loaded file can ever move again.

    ``rules`` maps each check of the file to its rules; ``features`` are the model's features. An
    episode whose check or rule is gone, or whose feature the model no longer has, would stay open
    for ever: it is closed, and the reason says which of these it was.
    """
    out = []
    for episode in episodes:
        if episode.check not in rules:
            out.append((episode.alert_id, f"check {episode.check!r} removed"))
        elif not any(belongs(episode.rule_key, episode.condition, rule) for rule in rules[episode.check]):
            ladder = next((rule for rule in rules[episode.check] if episode.rule_key in rule.rungs), None)
            out.append(
                (episode.alert_id, f"the rule is now a rung of the severity ladder of {ladder.key!r}, one alert")
                if ladder is not None
                else (episode.alert_id, "rule removed or its condition changed")
            )
        elif episode.feature and episode.feature not in features:
            out.append((episode.alert_id, f"feature {episode.feature!r} removed"))
    return out
