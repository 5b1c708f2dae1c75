"""Each scheduled run once across the replicas: a lease row per job, taken under PostgreSQL's row lock.

Every replica schedules every check, and when a run of one comes due it asks for it here. The run is
its replica's only if the job's row is not locked by another (``SELECT ... FOR UPDATE SKIP LOCKED``: no
waiting, the other is taking it) and its ``next_due`` has come; taking it moves ``next_due`` to this
run's due time plus the interval (the fleet's grid, not each replica's). The replica that took a run is the first whose own
schedule reaches the next one, so a check stays with one replica while it lives, and a dead replica's
checks are taken by the next replica whose schedule comes round: within one interval.

A run due up to a slack before ``next_due`` (a tenth of the interval, at most 5 s) goes ahead on a replica whose schedule is a
little early against the one that took the last run (clocks a little apart, a scheduler's rounding).
A check edited under a reload carries a new fingerprint (``spec``), and runs at once whatever was due.
On SQLite (one daemon) the lock is the database's own, and every run is taken.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.storage.tables import CheckLease, table
from monitor.storage.upsert import insert_missing

SLACK_AT_MOST = timedelta(seconds=5)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def slack(every: timedelta) -> timedelta:
    """How much earlier than ``next_due`` a run may still be taken."""
    return min(every / 10, SLACK_AT_MOST)


def take(engine: Engine, job: str, now: datetime, every: timedelta, holder: str, spec: str | None = None) -> bool:
    """Whether the run of ``job`` the scheduler of ``holder`` found due at ``now`` is its to do (and if so,
    it is taken)."""
    leases = table(CheckLease)
    with engine.begin() as conn:
        insert_missing(conn, leases, [{"job": job, "next_due": _NEVER, "holder": None, "taken": None, "spec": None}], ["job"])
        row = conn.execute(
            sa.select(leases.c.next_due, leases.c.spec).where(leases.c.job == job).with_for_update(skip_locked=True)
        ).first()
        if row is None:  # another replica holds the row this moment: it is taking this run
            return False
        same = row.spec == spec
        if same and row.next_due - slack(every) > now:
            return False
        # The fleet's own grid, whichever replica takes each run: the next is an interval after the last
        # was due, not after this one started (a late start does not push the next one back). After a
        # gap (every replica down, an edited check) the grid starts again from now.
        next_due = row.next_due + every if same else now + every
        if next_due <= now:
            next_due = now + every
        conn.execute(sa.update(leases).where(leases.c.job == job).values(next_due=next_due, holder=holder, taken=now, spec=spec))
    return True


def last_taken(engine: Engine) -> dict[str, datetime]:
    """When each job's last run was taken, by any replica."""
    leases = table(CheckLease)
    with engine.connect() as conn:
        return {job: taken for job, taken in conn.execute(sa.select(leases.c.job, leases.c.taken)) if taken is not None}


def forget(engine: Engine, jobs: list[str]) -> None:
    """Drop the leases of jobs no longer scheduled (a check removed from its file)."""
    if jobs:
        leases = table(CheckLease)
        with engine.begin() as conn:
            conn.execute(sa.delete(leases).where(leases.c.job.in_(jobs)))
