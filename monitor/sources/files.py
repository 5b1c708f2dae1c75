"""Source kind ``files``: a glob of Parquet, CSV or JSON-lines files written by a batch-scoring job.

Only the declared columns are read from Parquet and CSV (JSON lines are parsed whole, then cut down
to them). Parquet files are filtered on the timestamp column by pyarrow,
which skips whole row groups outside the window using their statistics (on the calling thread: the
daemon's parallel runs are its threads and processes, and arrow's own threads per small read cost more
CPU than they save); CSV and JSON lines are read
in chunks and filtered as they stream, so memory follows the window, not the file. The time span of
each file is remembered (keyed by its :func:`signature`), so a file wholly outside the
window is not opened again: a directory that grows by a file a minute costs what the window holds.

A file that cannot be read (corrupt, or still being written) is left out and named with its reason in
the frame's ``attrs[SKIPPED_FILES]``, which the run's evidence carries: one bad file must not silence the
check over all the others. When no file of the glob can be read, that is the run's error.

Read with ``schema=True`` (a ``data_quality`` check), a file that lacks a declared feature gives that
feature as missing values, and the frame's ``attrs[SCHEMA]`` names the undeclared columns of the files
read and the features some of them lack. :meth:`FilesSource.newest` is the newest row's timestamp over
every file (not a file's modification time), from the remembered spans where they answer it.
"""

from __future__ import annotations

import glob
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from monitor.sources.base import SCHEMA, SKIPPED_FILES, TS, Schema, SourceContext, SourceError, SourceKind, SourceSpec, to_utc
from monitor.sources.window_cache import WindowCache

log = logging.getLogger(__name__)

_CHUNK_ROWS = 200_000
_READS = WindowCache()  # one per process: two models over the same files share their reads
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class FilesSpec(SourceSpec):
    kind: Literal["files"]
    path: str


class FilesSource:
    def __init__(self, spec: FilesSpec, context: SourceContext | None = None) -> None:
        self.spec = spec
        # path -> (mtime_ns, size, first timestamp, last timestamp) of files read before
        self._spans: dict[str, tuple[Signature, datetime, datetime]] = {}
        # What a read of a file gives, beside the file: the columns and roles read.
        self._layout = spec.model_dump_json(exclude={"path"})

    def read(self, start: datetime, end: datetime, *, schema: bool = False):
        import pandas as pd

        frames, skipped, read = [], {}, 0
        found: list[set[str]] | None = [] if schema else None  # each file's columns, when reading its schema
        for path in sorted(glob.glob(self.spec.path)):
            if Path(path).suffix.lower() not in FORMATS or self._outside(path, start, end):
                continue
            try:
                frame = self._read_file(Path(path), start, end, found)
            except _Unreadable as exc:
                skipped[path] = exc.reason
                log.warning("files source: %s (skipped: the run reads the other files)", exc)
                continue
            read += 1
            if len(frame):
                frames.append(frame)
        if skipped and not read:
            raise SourceError("; ".join(f"cannot read {path}: {reason}" for path, reason in skipped.items()))
        if frames:
            out = pd.concat(frames, ignore_index=True)
        else:
            out = self.spec.to_frame(pd.DataFrame({c: pd.Series(dtype=object) for c in self.spec.columns()}))
        if skipped:
            out.attrs[SKIPPED_FILES] = skipped
        if found is not None:
            absent = tuple(f for f in self.spec.features if any(f not in names for names in found))
            out.attrs[SCHEMA] = Schema(frozenset().union(*found) - set(self.spec.columns()), absent)
        return out

    def newest(self, before: datetime) -> datetime | None:
        """The newest row's timestamp before ``before`` over every file of the glob; a file whose span is
        remembered and unchanged is not reopened. An unreadable file is left out (logged), unless all are."""
        newest: datetime | None = None
        skipped, read = {}, 0
        for path in sorted(glob.glob(self.spec.path)):
            if Path(path).suffix.lower() not in FORMATS:
                continue
            span = self._span(path)
            if span is not None and span[0] >= before:
                continue
            if span is not None and span[1] < before:
                candidate: datetime | None = span[1]
            else:
                try:
                    stamps = self._timestamps(Path(path))
                except _Unreadable as exc:
                    skipped[path] = exc.reason
                    log.warning("files source: %s (skipped: the newest row is of the other files)", exc)
                    continue
                stamps = stamps[stamps < before]
                candidate = _datetime(stamps.max()) if len(stamps) else None
            read += 1
            if candidate is not None and (newest is None or candidate > newest):
                newest = candidate
        if skipped and not read:
            raise SourceError("; ".join(f"cannot read {path}: {reason}" for path, reason in skipped.items()))
        return newest

    def _span(self, path: str) -> tuple[datetime, datetime] | None:
        """The first and last timestamp of a file read before, while it is unchanged."""
        span = self._spans.get(path)
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if span is None or signature(stat) != span[0]:
            return None
        return span[1], span[2]

    def _timestamps(self, path: Path):
        """Every timestamp of one file (its timestamp column alone), remembering its span."""
        import pandas as pd
        import pyarrow.parquet as pq

        fmt = FORMATS[path.suffix.lower()]
        column = self.spec.timestamp
        try:
            stat = os.stat(path)
            if fmt == "parquet":
                self._require_timestamp(path, set(pq.read_schema(path).names))
                stamps = to_utc(pq.read_table(path, columns=[column]).column(0).to_pandas())
            elif fmt == "csv":
                self._require_timestamp(path, set(pd.read_csv(path, nrows=0).columns))
                stamps = to_utc(pd.read_csv(path, usecols=[column])[column])
            else:
                parts = []
                for chunk in pd.read_json(path, lines=True, chunksize=_CHUNK_ROWS, dtype=False):
                    self._require_timestamp(path, set(chunk.columns))
                    parts.append(to_utc(chunk[column]))
                stamps = pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype="datetime64[ns, UTC]")
        except SourceError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise _Unreadable(path, str(exc)) from exc
        stamps = stamps.dropna()
        self._remember(path, stat, stamps)
        return stamps

    def _require_timestamp(self, path: Path, names: set[str]) -> None:
        if self.spec.timestamp not in names:
            raise SourceError(f"{path}: missing column(s) {self.spec.timestamp}; the file has {', '.join(sorted(names))}")

    def _outside(self, path: str, start: datetime, end: datetime) -> bool:
        span = self._spans.get(path)
        if span is None:
            return False
        try:
            stat = os.stat(path)
        except OSError:
            return True
        if signature(stat) != span[0]:
            return False
        return span[2] < start or span[1] >= end

    def _remember(self, path: Path, stat: os.stat_result, timestamps) -> None:
        stamps = timestamps.dropna()
        if len(stamps):
            self._spans[str(path)] = (signature(stat), _datetime(stamps.min()), _datetime(stamps.max()))

    def _read_file(self, path: Path, start: datetime, end: datetime, found: list[set[str]] | None = None):
        """One file's rows in the window, from a read of it moments ago while it is unchanged (the checks of
        a model due together read it once: ``window_cache.py``). With ``found`` (a read of the schema), a
        declared feature the file lacks is missing values, and the file's columns are appended to ``found``."""
        fmt = FORMATS[path.suffix.lower()]

        def read(lo: datetime, hi: datetime):
            names: list[set[str]] | None = [] if found is not None else None
            frame = self._read_parquet(path, lo, hi, names) if fmt == "parquet" else self._read_text(path, fmt, lo, hi, names)
            return frame, (names, self._spans.get(str(path)))

        try:
            stat = os.stat(path)
            key = (str(path), signature(stat), self._layout, found is not None)
            frame, (names, span) = _READS.read(key, start, end, _stamps, read)
        except SourceError:  # a missing column: the file is readable, the config or the job is wrong
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise _Unreadable(path, str(exc)) from exc
        if found is not None and names:
            found.extend(names)
        if span is not None:  # read by another source of the same files: its span is this one's
            self._spans[str(path)] = span
        return frame

    def _read_parquet(self, path: Path, start: datetime, end: datetime, found: list[set[str]] | None):
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        stat = os.stat(path)
        dataset = ds.dataset(str(path), format="parquet")
        # pandas' index columns are left out unless declared (an index named like the id column, say)
        names = set(dataset.schema.names) - (_pandas_index(dataset.schema) - set(self.spec.columns()))
        absent = self._require(path, names, found)
        columns = [c for c in self.spec.columns() if c not in absent]
        known = self._spans.get(str(path))
        if known is None or known[0] != signature(stat):
            self._remember(path, stat, to_utc(pq.read_table(path, columns=[self.spec.timestamp]).column(0).to_pandas()))
        field = ds.field(self.spec.timestamp)
        ts_type = dataset.schema.field(self.spec.timestamp).type
        if str(ts_type).startswith("timestamp"):
            import pyarrow as pa

            tz = getattr(ts_type, "tz", None)
            lo, hi = (start, end) if tz else (start.replace(tzinfo=None), end.replace(tzinfo=None))
            inside = (field >= pa.scalar(lo, ts_type)) & (field < pa.scalar(hi, ts_type))
            table = dataset.to_table(columns=columns, filter=inside, use_threads=False)
            return self._to_frame(table.to_pandas(use_threads=False), absent)
        # Timestamps stored as text: filter after conversion.
        table = dataset.to_table(columns=columns, use_threads=False)
        return self._in_window(self._to_frame(table.to_pandas(use_threads=False), absent), start, end)

    def _read_text(self, path: Path, fmt: str, start: datetime, end: datetime, found: list[set[str]] | None):
        import pandas as pd

        stat = os.stat(path)
        wanted = self.spec.columns()
        absent: list[str] = []
        if fmt == "csv":
            header = pd.read_csv(path, nrows=0).columns
            absent = self._require(path, set(header), found)
            chunks = pd.read_csv(path, usecols=[c for c in wanted if c not in absent], chunksize=_CHUNK_ROWS)
        else:
            # JSON's own types (dtype=False): pandas' guesses would make "12.5" a number, "80331" an
            # integer and a boolean column with nulls 1.0/NaN; the drift check types by the reference.
            chunks = pd.read_json(path, lines=True, chunksize=_CHUNK_ROWS, dtype=False)
        parts, stamps, keys = [], [], set()
        for chunk in chunks:
            if fmt == "jsonl":
                keys |= set(chunk.columns)
                absent = self._require(path, set(chunk.columns), None if found is None else [])
                chunk = chunk[[c for c in wanted if c not in absent]]
            frame = self._to_frame(chunk, absent)
            stamps.append(frame[TS].agg(["min", "max"]))
            parts.append(self._in_window(frame, start, end))
        if fmt == "jsonl" and found is not None and keys:  # an empty file tells no columns
            found.append(keys)
        if stamps:
            self._remember(path, stat, pd.concat(stamps))
        return pd.concat(parts, ignore_index=True) if parts else self.spec.to_frame(pd.DataFrame(columns=wanted))

    def _require(self, path: Path, names: set[str], found: list[set[str]] | None = None) -> list[str]:
        """The declared features the file lacks, which a read of the schema (``found`` given: the file's
        columns are appended to it) takes as missing values; any other missing column is an error."""
        missing = [c for c in self.spec.columns() if c not in names]
        absent = [c for c in missing if c in self.spec.features] if found is not None else []
        if len(missing) > len(absent):
            raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(sorted(names))}")
        if found is not None:
            found.append(names)
        return absent

    def _to_frame(self, raw, absent: list[str]):
        """``raw`` in the role layout, a feature the file lacks as missing values."""
        return self.spec.to_frame(raw.assign(**dict.fromkeys(absent)) if absent else raw)

    @staticmethod
    def _in_window(frame, start: datetime, end: datetime):
        return frame[(frame[TS] >= start) & (frame[TS] < end)]


Signature = tuple[int, int, int, int, int]


def signature(stat: os.stat_result) -> Signature:
    """What tells a file's versions apart: device, inode, size, and its modification and status-change
    times (the status-change time moves on every write and rename; ``cp -p`` cannot set it back)."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _stamps(frame):
    """A frame's row times in UTC, as ``datetime64[ns]`` (the window cache's terms)."""
    return frame[TS].to_numpy(dtype="datetime64[ns]")


def _datetime(stamp) -> datetime:
    """A pandas timestamp as a datetime, to the microsecond: nanoseconds are dropped, as a datetime has
    none (without pandas' warning, once per file). A span so cut still tells a window's rows apart, its
    bounds being whole microseconds."""
    return stamp.to_pydatetime(warn=False)


def _pandas_index(schema) -> set[str]:
    """The columns pandas wrote for a DataFrame's index (``__index_level_0__``, or the index's name):
    not the data's, so never a new column."""
    return {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}


class _Unreadable(SourceError):
    """One file that could not be read; the others of the glob still are."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.reason = reason


KIND = SourceKind("files", FilesSpec, FilesSource)
