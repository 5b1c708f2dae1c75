"""Source kind ``sql``: a prediction-log table in any database SQLAlchemy can reach.

The window is one parameterised query. Table and column names come from the check file, so they are
checked against an identifier pattern when the file is loaded and against the table's real columns
when the source is first read; SQLAlchemy quotes them. No user text is ever pasted into SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from threading import Lock
from typing import Literal

from monitor.config.types import DatabaseUrl, TableName
from monitor.sources.base import SourceContext, SourceError, SourceKind, SourceSpec

_engines: dict[str, object] = {}
_engines_lock = Lock()


class SqlSpec(SourceSpec):
    kind: Literal["sql"]
    url: DatabaseUrl
    table: TableName


def _engine(url: str):
    import sqlalchemy as sa

    with _engines_lock:
        if url not in _engines:
            try:
                _engines[url] = sa.create_engine(url, pool_pre_ping=True)
            except ImportError as exc:  # the URL names a driver this environment lacks: no run can work until installed
                scheme = sa.make_url(url).drivername
                raise SourceError(f"the driver of {scheme}:// is not installed ({exc}): install it, or change url") from exc
        return _engines[url]


class SqlSource:
    def __init__(self, spec: SqlSpec, context: SourceContext | None = None) -> None:
        self.spec = spec
        self._query = None
        self._aware = False  # whether the timestamp column is a timestamp *with* time zone

    def _build_query(self):
        import sqlalchemy as sa

        schema, _, name = self.spec.table.rpartition(".")
        engine = _engine(self.spec.url)
        try:
            present = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns(name, schema=schema or None)}
        except sa.exc.NoSuchTableError as exc:
            raise SourceError(f"table {self.spec.table} does not exist") from exc
        missing = [c for c in self.spec.columns() if c not in present]
        if missing:
            raise SourceError(f"table {self.spec.table}: missing column(s) {', '.join(missing)}")
        self._aware = bool(getattr(present[self.spec.timestamp], "timezone", False))
        table = sa.table(name, *(sa.column(c) for c in self.spec.columns()), schema=schema or None)
        ts = table.c[self.spec.timestamp]
        return sa.select(*(table.c[c] for c in self.spec.columns())).where(ts >= sa.bindparam("start"), ts < sa.bindparam("end"))

    def read(self, start: datetime, end: datetime):
        import pandas as pd
        import sqlalchemy as sa

        try:
            if self._query is None:
                self._query = self._build_query()
            with _engine(self.spec.url).connect() as conn:
                # A timestamptz column gets aware bounds: naive ones would be read in the session's
                # TimeZone, which need not be UTC. Naive columns hold UTC and get naive UTC bounds.
                if self._aware:
                    bounds = {"start": start.astimezone(UTC), "end": end.astimezone(UTC)}
                else:
                    bounds = {
                        "start": start.astimezone(UTC).replace(tzinfo=None),
                        "end": end.astimezone(UTC).replace(tzinfo=None),
                    }
                raw = pd.read_sql(self._query, conn, params=bounds)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"cannot read table {self.spec.table}: {type(exc).__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"
            ) from exc
        return self.spec.to_frame(raw)


KIND = SourceKind("sql", SqlSpec, SqlSource)
