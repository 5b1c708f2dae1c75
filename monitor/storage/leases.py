"""Each scheduled run once across the replicas: a lease row per job, taken under PostgreSQL's row lock.

Every replica schedules every check, and when a run of one comes due it asks for it here. The run is
its replica's only if the job's row is not locked by another (``SELECT ... FOR UPDATE SKIP LOCKED``: no
waiting, the other is taking it) and its ``next_due`` has come; taking it moves ``next_due`` one
interval along the fleet's grid (from the last due time, not from this start, so a late start does
not push the next one back). A replica told "not yet" is told when (``Answer.next_due``), and moves its
own schedule onto the fleet's: then every replica's schedule comes round at the same moments, a
restarted replica does not wait a whole interval for its first run, and a dead replica's checks are
taken at their next due time by whichever replica locks the row first.

A run due up to a slack before ``next_due`` (a tenth of the interval, at most 5 s) goes ahead, for
schedules a little apart. Times are the database's on PostgreSQL (hosts' clocks may differ), the
caller's on SQLite. A check edited under a reload runs at once on the replica that reloaded it first
(``fresh``, with a new fingerprint in ``spec``); replicas that reload it later, or not yet, keep to the
grid. On SQLite (one daemon) the lock is the database's own, and the grid is the daemon's.

``recorded`` is when the last recorded run of a check began, whichever replica ran it: what the
schedule watch reads (a lease taken is not a run recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.clock import SystemClock
from monitor.storage.replicas import database_now
from monitor.storage.tables import CheckLease, table
from monitor.storage.upsert import insert_missing

SLACK_AT_MOST = timedelta(seconds=5)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def slack(every: timedelta) -> timedelta:
    """How much earlier than ``next_due`` a run may still be taken."""
    return min(every / 10, SLACK_AT_MOST)


@dataclass(frozen=True)
class Answer:
    """Whether the run is the asking replica's; if not, when the next is due (None: another replica
    holds the row this moment, taking it)."""

    taken: bool
    next_due: datetime | None = None


def take(
    engine: Engine, job: str, every: timedelta, holder: str, spec: str | None = None, *,
    fresh: bool = False, now: datetime | None = None,
) -> Answer:  # fmt: skip
    """Ask for the run of ``job`` due now for ``holder``; ``now`` is the database's (PostgreSQL's clock)
    unless given. ``fresh``: the first run of a check this replica just (re)loaded as ``spec``."""
    leases = table(CheckLease)
    with engine.begin() as conn:
        at = now if now is not None else database_now(conn, SystemClock())
        insert_missing(conn, leases, [{"job": job, "next_due": _NEVER, "spec": None}], ["job"])
        row = conn.execute(
            sa.select(leases.c.next_due, leases.c.spec).where(leases.c.job == job).with_for_update(skip_locked=True)
        ).first()
        if row is None:  # another replica holds the row this moment: it is taking this run
            return Answer(False)
        edited = fresh and row.spec != spec
        if not edited and row.next_due - slack(every) > at:
            return Answer(False, row.next_due)
        next_due = at + every if edited else row.next_due + every
        if next_due <= at:  # after a gap (every replica down) the grid starts again from now
            next_due = at + every
        conn.execute(sa.update(leases).where(leases.c.job == job).values(next_due=next_due, holder=holder, taken=at, spec=spec))
    return Answer(True)


def note_recorded(engine: Engine, job: str, started: datetime) -> None:
    """A run of ``job`` that began at ``started`` is recorded (the schedule watch reads it)."""
    leases = table(CheckLease)
    with engine.begin() as conn:
        conn.execute(
            sa.update(leases)
            .where(leases.c.job == job, sa.or_(leases.c.recorded.is_(None), leases.c.recorded < started))
            .values(recorded=started)
        )


def last_recorded(engine: Engine) -> dict[str, datetime]:
    """When each job's last recorded run began, on any replica."""
    leases = table(CheckLease)
    with engine.connect() as conn:
        return {job: at for job, at in conn.execute(sa.select(leases.c.job, leases.c.recorded)) if at is not None}


def forget(engine: Engine, jobs: list[str]) -> None:
    """Drop the leases of jobs no longer scheduled (a check removed from its file)."""
    if jobs:
        leases = table(CheckLease)
        with engine.begin() as conn:
            conn.execute(sa.delete(leases).where(leases.c.job.in_(jobs)))
