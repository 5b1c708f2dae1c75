"""Source kind ``sql``: a prediction-log table in any database SQLAlchemy can reach.

The window is one parameterised query. Table and column names come from the check file, so they are
checked against an identifier pattern when the file is loaded and against the table's real columns
when the source is first read; SQLAlchemy quotes them. No user text is ever pasted into SQL.

Read with ``schema=True`` (a ``data_quality`` check), the table's columns are looked up on every read,
so that a column dropped or added since is seen: a declared feature the table lacks is then missing
values, and the frame's ``attrs[SCHEMA]`` names the table's undeclared columns.
:meth:`SqlSource.newest` is one query, ``max(timestamp)`` below a bound parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any, Literal
from urllib.parse import quote, unquote

from monitor.config.types import DatabaseUrl, TableName
from monitor.sources.base import SCHEMA, Schema, SourceContext, SourceError, SourceKind, SourceSpec, to_utc

_engines: dict[str, object] = {}
_engines_lock = Lock()


class SqlSpec(SourceSpec):
    kind: Literal["sql"]
    url: DatabaseUrl
    table: TableName


def _sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names (a ``file:`` URI's path, without its options); None for another
    database, or SQLite in memory."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database or ""
    return unquote(database.removeprefix("file:").partition("?")[0]) if database.startswith("file:") else database


def _read_only(url: str) -> Any:
    """The URL to open: a SQLite file read-only, so that a source that is not there is an error that says
    so, never a new empty database beside the check file (a source is only ever read)."""
    import os

    import sqlalchemy as sa

    parsed, file = sa.make_url(url), _sqlite_file(url)
    if file is None:
        return parsed
    if "uri" in parsed.query and (parsed.database or "").startswith("file:"):  # a URI of the user's own
        return parsed if "mode" in parsed.query else parsed.update_query_dict({"mode": "ro"})  # read-only unless told
    # A path, whatever ``uri`` says (sqlite would read a path with options as a file's name).
    path = "file:" + quote(os.path.abspath(file))
    return parsed.difference_update_query(["uri"]).set(database=path).update_query_dict({"mode": "ro", "uri": "true"})


def _engine(url: str):
    import sqlalchemy as sa

    with _engines_lock:
        if url not in _engines:
            try:
                _engines[url] = sa.create_engine(_read_only(url), pool_pre_ping=True)
            except ImportError as exc:  # the URL names a driver this environment lacks: no run can work until installed
                scheme = sa.make_url(url).drivername
                raise SourceError(f"the driver of {scheme}:// is not installed ({exc}): install it, or change url") from exc
        return _engines[url]


class SqlSource:
    def __init__(self, spec: SqlSpec, context: SourceContext | None = None) -> None:
        self.spec = spec
        self._query = None
        self._newest: Any = None  # the query of newest()
        self._aware = False  # whether the timestamp column is a timestamp *with* time zone

    def _columns(self) -> dict:
        """The table's columns and their types, looked up now."""
        import sqlalchemy as sa

        schema, _, name = self.spec.table.rpartition(".")
        try:
            return {c["name"]: c["type"] for c in sa.inspect(_engine(self.spec.url)).get_columns(name, schema=schema or None)}
        except sa.exc.NoSuchTableError as exc:
            raise SourceError(f"table {self.spec.table} does not exist") from exc

    def _build_query(self, present: dict | None = None, *, absent: tuple[str, ...] = ()):
        """The window's query over the declared columns the table has (``present``, looked up when not
        given); a missing column other than a feature in ``absent`` is an error."""
        import sqlalchemy as sa

        schema, _, name = self.spec.table.rpartition(".")
        present = self._columns() if present is None else present
        missing = [c for c in self.spec.columns() if c not in present and c not in absent]
        if missing:
            raise SourceError(f"table {self.spec.table}: missing column(s) {', '.join(missing)}")
        self._aware = bool(getattr(present[self.spec.timestamp], "timezone", False))
        columns = [c for c in self.spec.columns() if c in present]
        table = sa.table(name, *(sa.column(c) for c in columns), schema=schema or None)
        ts = table.c[self.spec.timestamp]
        return sa.select(*(table.c[c] for c in columns)).where(ts >= sa.bindparam("start"), ts < sa.bindparam("end"))

    def _bounds(self, **times: datetime) -> dict[str, datetime]:
        # A timestamptz column gets aware bounds: naive ones would be read in the session's
        # TimeZone, which need not be UTC. Naive columns hold UTC and get naive UTC bounds.
        if self._aware:
            return {key: t.astimezone(UTC) for key, t in times.items()}
        return {key: t.astimezone(UTC).replace(tzinfo=None) for key, t in times.items()}

    def _failed(self, exc: Exception) -> SourceError:
        file = _sqlite_file(self.spec.url)
        if file is not None and not Path(file).is_file():
            return SourceError(f"no SQLite database at {file} (url): create it, or change url")
        return SourceError(
            f"cannot read table {self.spec.table}: {type(exc).__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"
        )

    def read(self, start: datetime, end: datetime, *, schema: bool = False):
        import pandas as pd
        import sqlalchemy as sa

        found: Schema | None = None
        try:
            if schema:  # looked up on every read: a column dropped since the last one must show
                present = self._columns()
                absent = tuple(f for f in self.spec.features if f not in present)
                found = Schema(frozenset(present) - set(self.spec.columns()), absent)
                query = self._build_query(present, absent=found.absent)
            else:
                if self._query is None:
                    self._query = self._build_query()
                query = self._query
            with _engine(self.spec.url).connect() as conn:
                raw = pd.read_sql(query, conn, params=self._bounds(start=start, end=end))
        except sa.exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc
        if found is None:
            return self.spec.to_frame(raw)
        for feature in found.absent:
            raw[feature] = None
        out = self.spec.to_frame(raw)
        out.attrs[SCHEMA] = found
        return out

    def newest(self, before: datetime) -> datetime | None:
        """``max(timestamp)`` of the rows before ``before``: one parameterised query."""
        import pandas as pd
        import sqlalchemy as sa

        try:
            if self._newest is None:
                present = self._columns()  # only the timestamp is needed here
                if self.spec.timestamp not in present:
                    raise SourceError(f"table {self.spec.table}: missing column(s) {self.spec.timestamp}")
                self._aware = bool(getattr(present[self.spec.timestamp], "timezone", False))
                schema, _, name = self.spec.table.rpartition(".")
                ts = sa.table(name, sa.column(self.spec.timestamp), schema=schema or None).c[self.spec.timestamp]
                self._newest = sa.select(sa.func.max(ts)).where(ts < sa.bindparam("before"))
            with _engine(self.spec.url).connect() as conn:
                newest = conn.execute(self._newest, self._bounds(before=before)).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc
        if newest is None:
            return None
        stamp = to_utc(pd.Series([newest])).iloc[0]
        return None if pd.isna(stamp) else stamp.to_pydatetime()


KIND = SourceKind("sql", SqlSpec, SqlSource)
