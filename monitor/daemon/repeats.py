"""Repeats: an incident still firing that nobody acknowledged is told again every ``notifiers.repeat``
(or its route's ``repeat``).

Each receiver that was told of a firing incident is owed a ``repeat`` notification once its last
message of it is ``repeat`` old (4 hours by default) and nothing of it is still on its way there: the
last message's facts, as "STILL FIRING", in the thread of its Slack message, as a new trigger with the
same ``dedup_key`` to a pager, as a mail in its thread. ``monitor alerts ack ID`` on any episode of the
incident stops them; a change of the incident (an update, its resolution) is told as ever.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.config.durations import format_duration
from monitor.notifiers.message import AlertMessage
from monitor.notifiers.outbox import HELD, UNFINISHED
from monitor.storage.tables import Alert, Notification

TOLD = ("firing", "updated", "repeat")
ON_ITS_WAY = (*UNFINISHED, HELD)  # still to go: a repeat would overtake it


def owe_repeats(engine: Engine, every: timedelta, now: datetime) -> int:
    """Queue the repeats that are due; returns how many."""
    owed = 0
    with Session(engine) as session:
        firing = session.scalars(
            sa.select(Alert).where(Alert.state == "firing", Alert.incident_id.is_not(None)).order_by(Alert.id)
        ).all()
        incidents: dict[int, list[Alert]] = {}
        for alert in firing:
            incidents.setdefault(alert.incident_id or alert.id, []).append(alert)
        for incident, members in incidents.items():
            if any(a.acknowledged is not None for a in members):
                continue
            # Their states alone, every minute; the payload only of what is repeated.
            rows = session.execute(
                sa.select(
                    Notification.id, Notification.receiver, Notification.status, Notification.event, Notification.created,
                    Notification.repeat_s,
                )
                .where(Notification.alert_id == incident)
                .order_by(Notification.id)
            ).all()  # fmt: skip
            last: dict[str, tuple[int, datetime, float | None]] = {}
            tried: dict[str, datetime] = {}  # the last repeat owed, whatever became of it
            busy: set[str] = set()
            for row_id, receiver, status, event, created, repeat_s in rows:
                if status in ON_ITS_WAY:
                    busy.add(receiver)
                if status == "sent" and event in TOLD:
                    last[receiver] = (row_id, created, repeat_s)
                if event == "repeat":
                    tried[receiver] = created
            for receiver, (row_id, created, repeat_s) in last.items():
                its_every = timedelta(seconds=repeat_s) if repeat_s is not None else every  # its route's repeat
                # A repeat that failed (an archived channel) waits its interval too: not one a minute.
                since = max(created, tried.get(receiver, created))
                if receiver in busy or now - since < its_every:
                    continue
                try:
                    told = AlertMessage.from_dict(session.get_one(Notification, row_id).payload)
                except TypeError:  # written by another version: nothing to repeat from
                    continue
                since = min(a.started for a in members)
                still = (
                    f"still firing since {since:%Y-%m-%d %H:%M} UTC ({format_duration(_minutes(now - since))}), "
                    f"told every {format_duration(its_every)} until acknowledged: monitor alerts ack {incident}"
                )
                message = dataclasses.replace(told, event="repeat", late=None, details=[*told.details, still])
                session.add(Notification.pending(incident, "repeat", receiver, message.to_dict(), now, repeat_s=repeat_s))
                owed += 1
        session.commit()
    return owed


def _minutes(delta: timedelta) -> timedelta:
    return timedelta(minutes=int(delta.total_seconds() // 60))
