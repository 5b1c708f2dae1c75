"""The alert state machine: ``ok -> pending -> firing -> resolved``, one episode per rule and feature.

``advance`` is a pure function of the open episode (if any), whether the condition holds now (and,
with hysteresis, whether a firing episode may resolve), the time, and how long it must hold
(``for:``). It says the next state and whether anyone must be told.
An episode that goes back to ``ok`` from ``pending`` never fired, so nobody is told.
``orphaned`` finds the open episodes that no rule can move any more (a rule edited away).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

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


@dataclass(frozen=True)
class Step:
    state: State
    notify: Event | None = None

    @property
    def is_open(self) -> bool:
        return self.state in ("pending", "firing")


def advance(
    episode: OpenEpisode | None, breached: bool, now: datetime, hold: timedelta, cleared: bool | None = None
) -> Step | None:
    """The next step of an episode, or None when there is none and nothing happened.

    ``cleared`` says whether a firing episode may resolve; it is ``not breached`` unless the rule has
    hysteresis (``resolve_when``, ``margin``), which keeps a firing episode firing while the condition
    no longer holds but the value is not yet back past the resolve condition or the margin. A pending one ends as soon as
    the condition no longer holds: it never fired, so there is nothing to hold on to."""
    if episode is None:
        if not breached:
            return None
        return Step("firing", "firing") if hold <= timedelta(0) else Step("pending")
    if episode.state == "pending":
        if not breached:
            return Step("ok")
        return Step("firing", "firing") if now - episode.started >= hold else Step("pending")
    if breached:
        return Step("firing")
    return Step("firing") if cleared is False else Step("resolved", "resolved")


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
    """A loaded rule as episodes know it: its key (its id, else its condition) and its condition."""

    key: str
    condition: str


def belongs(episode_key: str, episode_condition: str, rule: RuleKey) -> bool:
    """Whether an open episode is this rule's: by key, or by an unchanged condition when only the id was
    added or removed (so that naming a rule neither closes nor re-fires its alert)."""
    return episode_key == rule.key or episode_condition == rule.condition


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
            out.append((episode.alert_id, "rule removed or its condition changed"))
        elif episode.feature and episode.feature not in features:
            out.append((episode.alert_id, f"feature {episode.feature!r} removed"))
    return out
