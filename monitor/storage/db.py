"""Connecting to the database and bringing its schema to the head revision.

SQLite (the embedded default) runs in WAL mode with a busy timeout, so a dashboard can read while the
daemon writes; PostgreSQL is used as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.storage.tables import Installation

_PACKAGED = Path(__file__).parent / "migrations"  # inside a wheel
_CHECKOUT = Path(__file__).resolve().parents[2] / "alembic"  # in a source checkout


def migrations_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def create_engine(url: str, *, create_folder: bool = True) -> Engine:
    """An engine for ``url``; for a SQLite file, its folder is created (unless not ``create_folder``: a
    reader that must leave the disk as it found it) and WAL is switched on."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if create_folder and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: row values (features of real people) never reach an error message or log.
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _lock_key(name: str) -> int:
    """The 64-bit key of a PostgreSQL advisory lock named ``name`` (stable across processes and versions)."""
    return int.from_bytes(hashlib.blake2b(f"monitor:{name}".encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def one_at_a_time(engine: Engine, name: str) -> Iterator[None]:
    """On PostgreSQL, the block runs in one replica at a time (an advisory lock called ``name``, held on a
    connection of its own and freed by the server if this process dies); on SQLite, one daemon holds
    the file already."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _lock_key(name)})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(name)})
            conn.commit()


def _migrate(engine: Engine, direction: str, revision: str) -> None:
    """Run Alembic on a connection of ``engine`` (env.py then needs no URL, so none is handed over).

    On PostgreSQL under an advisory lock held to the end of the transaction: replicas starting together
    migrate one after another, and the later ones find the schema at head already."""
    from alembic.config import Config

    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("migrations")})
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` (idempotent)."""
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    _migrate(engine, "downgrade", revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(migrations_dir())).get_current_head()
    assert head is not None, "no migrations found"
    return head


def existing_revision(engine: Engine) -> str | None:
    """The schema revision, or None for an empty database or a SQLite file that does not exist yet
    (which is not created: a read-only command must leave a fresh folder as it found it)."""
    url = engine.url
    missing_file = (
        url.get_backend_name() == "sqlite"
        and url.database
        and url.database != ":memory:"
        and not Path(url.database).expanduser().exists()
    )
    return None if missing_file else current_revision(engine)


def not_at_head(engine: Engine, current: str | None = None) -> str | None:
    """Why a command that must not migrate cannot use this database, or None when its schema is at head."""
    head = head_revision()
    current = current if current is not None else existing_revision(engine)
    if current == head:
        return None
    return (
        f"{engine.url.render_as_string(hide_password=True)}: the database is at revision "
        f"{current or 'none (empty database)'}, not at head ({head}): run `monitor db upgrade` first"
    )


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def installation_id(engine: Engine) -> str:
    """The id this database was made with (the one row of ``installation``, migration 0004)."""
    with engine.connect() as connection:
        ids = connection.scalars(sa.select(Installation.id)).all()
    if len(ids) != 1:
        # Picking one of several (or making one up) could match another database's messages again.
        raise RuntimeError(f"the installation table must hold exactly one row, it holds {len(ids)}: see docs/database.md")
    return ids[0]


class SqliteInUse(Exception):
    """Another daemon holds the SQLite database file: SQLite is for one daemon at a time."""


class SqliteLock:
    """The one daemon of a SQLite database file: an exclusive lock (``flock``) on ``FILE.lock`` beside it,
    which holds the daemon's pid for the message, and one on the database file itself, so that a second
    path to the same file (a hard link, another mount) is refused as well; both held while the daemon
    runs and released by the kernel when its process ends, ``kill -9`` too. (``flock`` locks do not
    touch SQLite's own ``fcntl`` locks; the database file's handle is closed only after the engine is
    disposed, as closing a file drops this process's ``fcntl`` locks on it.)

    Two daemons on one SQLite file would each schedule every check and each send every notification;
    PostgreSQL is where replicas share the work (docs/operations.md). A database in memory has no file
    and no second daemon."""

    def __init__(self, engine: Engine) -> None:
        self.path: Path | None = None
        self._file: IO[str] | None = None
        self._database: IO[bytes] | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            self.path = Path(url.database).resolve()

    def acquire(self) -> None:
        """Raises SqliteInUse naming the file (and the other daemon's pid) when another daemon holds it."""
        import fcntl
        import os

        if self.path is None or self._file is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the daemon's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise SqliteInUse(
                f"another monitor daemon{by} uses the SQLite database {self.path}: SQLite takes one daemon; "
                "stop that one, or run several on PostgreSQL"
            ) from None
        database = open(self.path, "ab")  # noqa: SIM115 - held open for the daemon's life; an empty file is a new database
        try:
            fcntl.flock(database.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            database.close()
            handle.close()
            raise SqliteInUse(
                f"another monitor daemon uses the SQLite database {self.path} (by another path to the same file): "
                "SQLite takes one daemon; stop that one, or run several on PostgreSQL"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file, self._database = handle, database

    def release(self) -> None:
        """After the engine is disposed (see the class's note)."""
        for held in (self._database, self._file):
            if held is not None:
                held.close()  # closing the file releases the lock
        self._file = self._database = None
