"""Who is told about an alert: its owner, then the owners of every route whose labels match.

A pure decision over labels: which *owners* hear of an alert. Which receivers an owner has (a Slack
channel, a pager, e-mail) and how each is reached is the notifiers' business (monitor/notifiers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

# One route as the config gives it: the labels an alert must have, and the owners told too.
RouteRule = tuple[Mapping[str, str], Sequence[str]]


def owners_for(owner: str, labels: Mapping[str, str], routes: Iterable[RouteRule]) -> list[str]:
    """Owners in order, each once: the alert's own first, then each matching route's ``also``."""
    out = [owner]
    for match, also in routes:
        if all(labels.get(key) == value for key, value in match.items()):
            out.extend(also)
    return list(dict.fromkeys(out))
