"""``INSERT ... ON CONFLICT`` for the two databases we run on, with SQLAlchemy's own constructs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def _insert(conn: sa.Connection, table: sa.Table):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise NotImplementedError(f"upsert is not written for {conn.dialect.name}")


def upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Write ``rows``; a row whose ``keys`` exist already replaces the other columns."""
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]
    insert = _insert(conn, table)
    conn.execute(
        insert.on_conflict_do_update(index_elements=list(keys), set_={c: insert.excluded[c] for c in columns}), list(rows)
    )


def insert_missing(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Write those of ``rows`` whose ``keys`` are not there yet; leave the others as they are."""
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))
