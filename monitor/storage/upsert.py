"""``INSERT ... ON CONFLICT DO UPDATE`` for the two databases we run on, with SQLAlchemy's own constructs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Write ``rows``; a row whose ``keys`` exist already replaces the other columns."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"upsert is not written for {conn.dialect.name}")
    statement = insert(table)
    columns = [c for c in rows[0] if c not in keys]
    statement = statement.on_conflict_do_update(index_elements=list(keys), set_={c: statement.excluded[c] for c in columns})
    conn.execute(statement, list(rows))
