"""The daemons that share one database, each with a row it beats every few seconds.

Replicas on PostgreSQL share the checks (monitor/storage/leases.py) and the outbox; what one replica
leaves behind when it dies (a delivery claimed, not recorded) must be settled by another, and what a
live one has in hand must be left to it. A replica is gone when its row has not been beaten for
``GONE_AFTER`` (its machine lost), or at once when it ran on this host and its process no longer runs
(``kill -9`` and a restart: systemd, a container's restart, where the new process may even have the
old one's pid). ``monitor check`` beats a row too while it delivers, so that a daemon on the same
SQLite file leaves its claims alone, as it does another replica's.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.clock import Clock
from monitor.storage.tables import Replica, table
from monitor.storage.upsert import upsert

BEAT_EVERY = timedelta(seconds=5)
GONE_AFTER = timedelta(seconds=30)  # six beats missed
FORGET_AFTER = timedelta(days=1)  # a gone replica's row is kept this long, for the curious


def new_id() -> str:
    """An id no other process, here or on another host, has: the host, the pid and a random part."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


class Replicas:
    """This replica's row, and which others live."""

    def __init__(self, engine: Engine, clock: Clock, replica_id: str | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.id = replica_id or new_id()
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self._started = clock.now()

    def beat(self) -> None:
        """Say this replica lives (its row made again if another took it for gone meanwhile)."""
        now = self.clock.now()
        row = {"id": self.id, "host": self.host, "pid": self.pid, "started": self._started, "seen": now}
        with self.engine.begin() as conn:
            upsert(conn, table(Replica), [row], ["id"])
            replicas = table(Replica)
            conn.execute(sa.delete(replicas).where(replicas.c.seen < now - FORGET_AFTER))

    def leave(self) -> None:
        """At a clean stop: this replica is gone at once, not after ``GONE_AFTER``."""
        replicas = table(Replica)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(replicas).where(replicas.c.id == self.id))

    def live(self) -> set[str]:
        """The replicas alive now, this one among them."""
        replicas = table(Replica)
        since: datetime = self.clock.now() - GONE_AFTER
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(replicas.c.id, replicas.c.host, replicas.c.pid).where(replicas.c.seen >= since)).all()
        alive = {self.id}
        for replica_id, host, pid in rows:
            if host == self.host and (pid == self.pid or not _running(pid)):
                continue  # this host's, and its process is gone (the pid may be this one's, reused)
            alive.add(replica_id)
        return alive
