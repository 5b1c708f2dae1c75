"""``INSERT ... ON CONFLICT DO UPDATE`` for the two databases we run on, with SQLAlchemy's own constructs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Write ``rows``; a row whose ``keys`` exist already replaces the other columns."""
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]
    statement: sa.Executable
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(table)
        statement = pg.on_conflict_do_update(index_elements=list(keys), set_={c: pg.excluded[c] for c in columns})
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        lite = sqlite.insert(table)
        statement = lite.on_conflict_do_update(index_elements=list(keys), set_={c: lite.excluded[c] for c in columns})
    else:
        raise NotImplementedError(f"upsert is not written for {conn.dialect.name}")
    conn.execute(statement, list(rows))
