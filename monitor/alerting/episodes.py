"""The alert state machine: ``ok -> pending -> firing -> resolved``, one episode per rule and feature.

``advance`` is a pure function of the open episode (if any), whether the condition holds now, the
time, and how long it must hold (``for:``). It says the next state and whether anyone must be told.
An episode that goes back to ``ok`` from ``pending`` never fired, so nobody is told.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

State = Literal["ok", "pending", "firing", "resolved"]
Event = Literal["firing", "resolved"]


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


def advance(episode: OpenEpisode | None, breached: bool, now: datetime, hold: timedelta) -> Step | None:
    """The next step of an episode, or None when there is none and nothing happened."""
    if episode is None:
        if not breached:
            return None
        return Step("firing", "firing") if hold <= timedelta(0) else Step("pending")
    if episode.state == "pending":
        if not breached:
            return Step("ok")
        return Step("firing", "firing") if now - episode.started >= hold else Step("pending")
    return Step("firing") if breached else Step("resolved", "resolved")
