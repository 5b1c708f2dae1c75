"""Silences, pure: which of them holds a message back now.

A silence is of one model, one check of it or any (``check`` None), and labels that must all match
(``matchers``: ``severity``, ``feature``, ``owner``, ``rule``, ``model_version``), from ``starts`` to
``ends``. A message it matches while it lasts is recorded and not sent; what happens at its end (sent
then, or dropped when the alert ended meanwhile) is the outbox's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

LABELS = ("severity", "feature", "owner", "rule", "model_version")
"""What ``--match`` may name, beside the model and the check."""


@dataclass(frozen=True)
class SilenceRule:
    id: int
    model: str
    check: str | None
    starts: datetime
    ends: datetime
    reason: str
    matchers: Mapping[str, str] = field(default_factory=dict)

    def holds(self, labels: Mapping[str, str], now: datetime) -> bool:
        if not self.starts <= now < self.ends:
            return False
        if labels.get("model") != self.model or (self.check is not None and labels.get("check") != self.check):
            return False
        return all(str(labels.get(name, "")) == value for name, value in self.matchers.items())


def holding(silences: Iterable[SilenceRule], labels: Mapping[str, str], now: datetime) -> SilenceRule | None:
    """The silence that holds a message with these labels back now, the one that lasts longest; None."""
    found = [s for s in silences if s.holds(labels, now)]
    return max(found, key=lambda s: s.ends) if found else None
