"""Incidents: the episodes of one check (and model version) that fire together are told as one.

A drift past its threshold on nine features, with a per-feature rule and a data-set rule, is ten
episodes (each its own row, for dashboards), but one incident: one message per receiver when it opens,
one when it changes (an episode joins, a ladder changes severity, an episode resolves while others
still fire), one when its last episode resolves. ``incident_changes`` is that decision, pure: given
the check's episodes as one run left them, which incident each newly firing episode joins, and what
each incident whose episodes changed owes: ``firing``, ``updated`` or ``resolved``, with the
episodes it lists worst first (severity, then data-set level before a feature, then how far past
its threshold).

An incident is known by the id of the episode that opened it; the others carry that id
(``alerts.incident_id``). A check has at most one open incident: an episode that fires while the
check has one (or one whose last episodes resolve in the same run) joins it, and one that fires
while it has none opens a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.alerting.rules import SEVERITY_RANK


@dataclass(frozen=True)
class EpisodeNow:
    """One episode of the check as this run left it."""

    alert_id: int
    incident_id: int | None
    state: str  # pending, firing, resolved, ok
    severity: str
    feature: str
    value: float
    threshold: float
    change: str | None = None  # what this run did to it that is told: firing, updated, resolved
    judged: bool = True  # this run judged it (it has an observation to show)


@dataclass(frozen=True)
class IncidentChange:
    incident_id: int
    event: str  # firing, updated, resolved
    headline: int  # the episode the message is about: the worst firing one (the worst resolved, at the end)
    firing: tuple[int, ...]  # the incident's firing episodes, worst first
    resolved: tuple[int, ...]  # its episodes this run resolved, worst first
    joined: tuple[int, ...]  # the episodes this run fired, which now carry incident_id


def worst_first(episodes: Sequence[EpisodeNow]) -> list[EpisodeNow]:
    def how_bad(e: EpisodeNow) -> tuple[int, bool, float]:
        past = abs(e.value - e.threshold) / max(abs(e.threshold), 1e-12)
        return (-SEVERITY_RANK.get(e.severity, -1), e.feature != "", -past)

    return sorted(episodes, key=how_bad)


def incident_changes(episodes: Sequence[EpisodeNow]) -> list[IncidentChange]:
    """What each incident of the check owes after a run, in incident order; none when nothing is told."""
    newly = [e for e in episodes if e.change == "firing" and e.incident_id is None]
    members: dict[int, list[EpisodeNow]] = {}
    for e in episodes:
        if e.incident_id is not None and (e.state == "firing" or e.change):
            members.setdefault(e.incident_id, []).append(e)
    opened: int | None = None  # the incident this run opened
    if newly:
        # One whose last episodes resolve in this very run is still open: the check never stopped
        # breaching, so a feature recovering as another drifts is an update, not a resolve and a new page.
        still_open = sorted(
            i for i, group in members.items() if any(e.state == "firing" or e.change == "resolved" for e in group)
        )
        if still_open:
            members[still_open[0]].extend(newly)
        else:
            opened = ([e for e in worst_first(newly) if e.judged] or newly)[0].alert_id
            members[opened] = list(newly)
    out = []
    for incident_id in sorted(members):
        group = members[incident_id]
        if not any(e.change for e in group):
            continue
        firing = worst_first([e for e in group if e.state == "firing"])
        resolved = worst_first([e for e in group if e.change == "resolved"])
        event = "firing" if incident_id == opened else "updated" if firing else "resolved"
        shown = [e for e in (firing or resolved) if e.judged] or firing or resolved
        out.append(
            IncidentChange(
                incident_id,
                event,
                shown[0].alert_id,
                tuple(e.alert_id for e in firing),
                tuple(e.alert_id for e in resolved),
                tuple(e.alert_id for e in group if e in newly),
            )
        )
    return out
