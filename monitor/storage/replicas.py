"""The daemons that share one database, each with a row it beats every few seconds.

Replicas on PostgreSQL share the checks (monitor/storage/leases.py) and the outbox; what one replica
leaves behind when it dies (a delivery claimed, not recorded) must be settled by another, and what a
live one has in hand must be left to it. A replica is gone when its row has not been beaten for
``GONE_AFTER`` (its machine lost), or at once when it ran on this machine, in this process namespace,
and its process no longer runs (``kill -9`` and a restart: systemd, a container's restart, where the
new process may even have the old one's pid). ``monitor check`` beats a row too while it delivers, so
that a daemon on the same SQLite file leaves its claims alone, as it does another replica's.

Every time here is the database's (PostgreSQL's ``now()``), not the host's: replicas on hosts whose
clocks are apart still agree on who beat when. On SQLite (one machine) it is the daemon's clock.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

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


def this_machine() -> str:
    """Where a pid means one process: the host name, the kernel's boot and the pid namespace. Two
    containers that share a host name (host networking) still differ in their namespace, so neither
    takes the other's pid for one of its own."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux: the host name alone, and no pid is checked (see Replicas.live)
        return socket.gethostname()[:200]
    return f"{socket.gethostname()[:200]} (boot {boot}, pid namespace {namespace})"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def database_now(conn: sa.Connection, clock: Clock) -> datetime:
    """The time every replica agrees on: PostgreSQL's; on SQLite, ``clock``'s (one machine)."""
    if conn.dialect.name == "postgresql":
        return conn.execute(sa.select(sa.func.now())).scalar_one()
    return clock.now()


class Replicas:
    """This replica's row, and which others live."""

    def __init__(self, engine: Engine, clock: Clock, replica_id: str | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.id = replica_id or new_id()
        self.host = this_machine()
        self.pid = os.getpid()
        self._started = clock.now()

    def beat(self) -> None:
        """Say this replica lives (its row made again if another took it for gone meanwhile)."""
        replicas = table(Replica)
        with self.engine.begin() as conn:
            now = database_now(conn, self.clock)
            upsert(
                conn,
                replicas,
                [{"id": self.id, "host": self.host, "pid": self.pid, "started": self._started, "seen": now}],
                ["id"],
            )
            conn.execute(sa.delete(replicas).where(replicas.c.seen < now - FORGET_AFTER))

    @contextmanager
    def beating(self) -> Iterator[None]:
        """Beat now and then every ``BEAT_EVERY`` on a thread of its own while the block runs: never held
        up by slow checks, or a delivery waiting out a Retry-After. A beat that fails is tried at the next."""
        self.beat()
        stop = threading.Event()

        def beat_on() -> None:
            while not stop.wait(BEAT_EVERY.total_seconds()):
                try:
                    self.beat()
                except sa.exc.SQLAlchemyError:  # the database is down: health says so elsewhere
                    continue

        thread = threading.Thread(target=beat_on, name="replica", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def leave(self) -> None:
        """At a clean stop: this replica is gone at once, not after ``GONE_AFTER``."""
        replicas = table(Replica)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(replicas).where(replicas.c.id == self.id))

    def live(self) -> set[str]:
        """The replicas alive now, this one among them."""
        replicas = table(Replica)
        with self.engine.connect() as conn:
            since = database_now(conn, self.clock) - GONE_AFTER
            rows = conn.execute(sa.select(replicas.c.id, replicas.c.host, replicas.c.pid).where(replicas.c.seen >= since)).all()
        alive = {self.id}
        checkable = "pid namespace" in self.host  # a pid read where it means the same process
        for replica_id, host, pid in rows:
            if checkable and host == self.host and (pid == self.pid or not _running(pid)):
                continue  # this machine's, and its process is gone (the pid may be this one's, reused)
            alive.add(replica_id)
        return alive
