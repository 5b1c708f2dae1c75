"""Who is told about an alert, and how: the owner's receivers, refined by the routing tree.

A pure decision over labels (``severity``, ``model``, ``check``, ``owner`` and the check file's own
``labels``). As in Alertmanager, routes are tried in order and the first that matches is taken; a
route with ``continue`` lets the next ones be tried too; a route's own ``routes`` are tried when it
matches, and the deepest match decides, each level inheriting what it does not set. Every route taken
is a *plan*: the alert's owner's receivers, with the ``also`` owners (or single ``owner/kind``
receivers) of every route on its path, kept to the receiver kinds of ``via``; a plan that ``mute``\\s
tells no one. No route taken: the owner's receivers alone. A plan that is not muted always tells someone: when its ``via`` leaves it no
receiver (``via: [webhook]`` for an owner without one), it tells them all, and says so.

Which receivers an owner has (a Slack channel, a pager, e-mail) and how each is reached is the
notifiers' business: this module is handed them as ``(name, kind)`` pairs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase

BUILT_IN_LABELS = ("severity", "model", "check", "owner")
"""Every alert has these; a check file's own ``labels`` add more, but cannot be called these."""


@dataclass(frozen=True)
class RouteRule:
    """One route as the config gives it. ``None`` settings are inherited from the route above."""

    match: Mapping[str, str]  # label -> value, or a pattern with * and ?; {} matches every alert
    also: tuple[str, ...] = ()  # owners, or receivers written owner/kind, told too
    via: tuple[str, ...] | None = None  # receiver kinds told (slack, webhook, email, console); None: all
    mute: bool | None = None  # tell no one: the alert is recorded, not sent
    continue_: bool = False  # after this route matched, try the next ones too
    group_by: tuple[str, ...] | None = None  # labels whose equal values make firing messages one
    group_wait: timedelta | None = None  # how long a firing message waits for others of its group
    repeat: timedelta | None = None  # how often a firing incident nobody acknowledged is told again
    routes: tuple[RouteRule, ...] = ()


@dataclass(frozen=True)
class Plan:
    """One way an alert is told: a taken route's settings, those above it filled in."""

    also: tuple[str, ...] = ()
    via: tuple[str, ...] | None = None
    mute: bool = False
    group_by: tuple[str, ...] | None = None
    group_wait: timedelta | None = None
    repeat: timedelta | None = None


@dataclass(frozen=True)
class Addressee:
    """A receiver told of an alert, and how (from the first plan that names it)."""

    receiver: str
    unfiltered: bool = False  # its route's `via` left the plan no receiver: the owner's are told instead
    group: str | None = None  # the group key, '{"model":"fraud-scorer"}': firing messages alike in it go as one
    group_wait: timedelta | None = None
    repeat: timedelta | None = None


def matches(match: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` has every label of ``match``, each equal to (or fitting the pattern of) its value."""
    return all(key in labels and fnmatchcase(labels[key], pattern) for key, pattern in match.items())


def plans(labels: Mapping[str, str], routes: Sequence[RouteRule]) -> list[Plan]:
    """The plans of the routes an alert with ``labels`` takes; the owner's alone when it takes none."""
    return _walk(routes, labels, Plan()) or [Plan()]


def _walk(routes: Sequence[RouteRule], labels: Mapping[str, str], above: Plan) -> list[Plan]:
    taken: list[Plan] = []
    for route in routes:
        if not matches(route.match, labels):
            continue
        here = Plan(
            also=(*above.also, *route.also),
            via=route.via if route.via is not None else above.via,
            mute=route.mute if route.mute is not None else above.mute,
            group_by=route.group_by if route.group_by is not None else above.group_by,
            group_wait=route.group_wait if route.group_wait is not None else above.group_wait,
            repeat=route.repeat if route.repeat is not None else above.repeat,
        )
        taken.extend(_walk(route.routes, labels, here) or [here])
        if not route.continue_:
            break
    return taken


def addressees(
    owner: str,
    labels: Mapping[str, str],
    routes: Sequence[RouteRule],
    receivers_of: Callable[[str], Sequence[tuple[str, str]]],
) -> list[Addressee]:
    """The receivers told of an alert, each once, in order: the owner's first, then each plan's ``also``.

    ``receivers_of(owner)`` gives an owner's receivers as ``(name, kind)``; an ``also`` item written
    ``owner/kind`` is that one receiver of the owner's.
    """
    told: dict[str, Addressee] = {}
    for plan in plans(labels, routes):
        if plan.mute:
            continue
        group = None
        if plan.group_by is not None:
            # JSON, so that no label value (it may hold ',' or '=') makes two groups' keys one.
            group = json.dumps({name: labels.get(name, "") for name in plan.group_by}, separators=(",", ":"))
        found = _receivers(owner, plan, receivers_of)
        unfiltered = not found and plan.via is not None
        if unfiltered:  # `via: [webhook]` for an owner without one: told as if there were no via, not lost
            found = _receivers(owner, dataclasses.replace(plan, via=None), receivers_of)
        for name in found:
            told.setdefault(name, Addressee(name, unfiltered, group, plan.group_wait, plan.repeat))
    return list(told.values())


def _receivers(owner: str, plan: Plan, receivers_of: Callable[[str], Sequence[tuple[str, str]]]) -> list[str]:
    out = []
    for also in (owner, *plan.also):
        whose, _, kind = also.partition("/")
        for name, its_kind in receivers_of(whose):
            if kind and its_kind != kind:
                continue
            # The console stands in for an owner with no receiver that can be reached (no Slack
            # token, in the demo): `via: [slack]` must not leave that owner unheard.
            if plan.via is not None and its_kind not in plan.via and its_kind != "console":
                continue
            out.append(name)
    return out
