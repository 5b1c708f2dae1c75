"""Which notifications due to one receiver go out together, as one message: a pure decision.

A person reads a Slack channel or a mailbox, and a flood there hides what matters, so two things
bundle the notifications that are *news* (a firing, a repeat) into one message, the worst firing
one's, listing the others' subjects:

- a route's ``group_by``: the firing notifications due together with the same group key (set by
  the route, ``{"model":"fraud-scorer"}``) are one message;
- the receiver's cap per minute (``notifiers.per_minute``): with ``room`` messages left in its minute
  and more due, all but one of the room go as they would, and the rest as one summary ("and 12 more
  alerts"); with no room, they wait for the minute to have room.

An update or a resolution always goes alone, at once and outside the cap: it edits its incident's
message in place (in Slack), and a summary led by "RESOLVED" would hide the news under it. A pager
is never bundled (the outbox does not ask): it opens one incident per ``dedup_key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Due:
    id: int
    event: str
    group_key: str | None = None


NEWS = ("firing", "repeat")
"""The events a cap counts and a bundle holds: each would be a new message in the channel."""


def lots(due: Sequence[Due], room: int) -> tuple[list[list[int]], list[int]]:
    """The messages ``due`` (in the order owed) go out as now, each a list of notification ids, and the
    ids that wait because the receiver has no room left this minute."""
    alone = [[n.id] for n in due if n.event not in NEWS]
    units: dict[object, list[int]] = {}
    for n in due:
        if n.event in NEWS:
            grouped = n.event == "firing" and n.group_key is not None
            units.setdefault(n.group_key if grouped else -n.id, []).append(n.id)
    news = list(units.values())
    if len(news) <= room:
        return alone + news, []
    if room < 1:
        return alone, [i for unit in news for i in unit]
    return alone + [*news[: room - 1], [i for unit in news[room - 1 :] for i in unit]], []
