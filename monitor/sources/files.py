"""Source kind ``files``: a glob of Parquet, CSV or JSON-lines files written by a batch-scoring job.

Only the declared columns are read. Parquet files are filtered on the timestamp column by pyarrow,
which skips whole row groups outside the window using their statistics; CSV and JSON lines are read
in chunks and filtered as they stream, so memory follows the window, not the file.
"""

from __future__ import annotations

import glob
from datetime import datetime
from pathlib import Path
from typing import Literal

from monitor.sources.base import SourceError, SourceKind, SourceSpec, TS

_CHUNK_ROWS = 200_000
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class FilesSpec(SourceSpec):
    kind: Literal["files"]
    path: str


class FilesSource:
    def __init__(self, spec: FilesSpec) -> None:
        self.spec = spec

    def read(self, start: datetime, end: datetime):
        import pandas as pd

        paths = sorted(glob.glob(self.spec.path))
        frames = [self._read_file(Path(p), start, end) for p in paths if Path(p).suffix.lower() in FORMATS]
        frames = [f for f in frames if len(f)]
        if not frames:
            return self.spec.to_frame(pd.DataFrame({c: pd.Series(dtype=object) for c in self.spec.columns()}))
        return pd.concat(frames, ignore_index=True)

    def _read_file(self, path: Path, start: datetime, end: datetime):
        fmt = FORMATS[path.suffix.lower()]
        try:
            if fmt == "parquet":
                return self._read_parquet(path, start, end)
            return self._read_text(path, fmt, start, end)
        except SourceError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise SourceError(f"cannot read {path}: {exc}") from exc

    def _read_parquet(self, path: Path, start: datetime, end: datetime):
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        self._require(path, names)
        dataset = ds.dataset(str(path), format="parquet")
        field = ds.field(self.spec.timestamp)
        ts_type = dataset.schema.field(self.spec.timestamp).type
        if str(ts_type).startswith("timestamp"):
            import pyarrow as pa

            tz = getattr(ts_type, "tz", None)
            lo, hi = (start, end) if tz else (start.replace(tzinfo=None), end.replace(tzinfo=None))
            table = dataset.to_table(columns=self.spec.columns(),
                                     filter=(field >= pa.scalar(lo, ts_type)) & (field < pa.scalar(hi, ts_type)))
            return self.spec.to_frame(table.to_pandas())
        # Timestamps stored as text: filter after conversion.
        return self._in_window(self.spec.to_frame(dataset.to_table(columns=self.spec.columns()).to_pandas()), start, end)

    def _read_text(self, path: Path, fmt: str, start: datetime, end: datetime):
        import pandas as pd

        wanted = self.spec.columns()
        if fmt == "csv":
            header = pd.read_csv(path, nrows=0).columns
            self._require(path, set(header))
            chunks = pd.read_csv(path, usecols=wanted, chunksize=_CHUNK_ROWS)
        else:
            chunks = pd.read_json(path, lines=True, chunksize=_CHUNK_ROWS)
        parts = []
        for chunk in chunks:
            if fmt == "jsonl":
                self._require(path, set(chunk.columns))
                chunk = chunk[wanted]
            parts.append(self._in_window(self.spec.to_frame(chunk), start, end))
        return pd.concat(parts, ignore_index=True) if parts else self.spec.to_frame(pd.DataFrame(columns=wanted))

    def _require(self, path: Path, names: set[str]) -> None:
        missing = [c for c in self.spec.columns() if c not in names]
        if missing:
            raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(sorted(names))}")

    @staticmethod
    def _in_window(frame, start: datetime, end: datetime):
        return frame[(frame[TS] >= start) & (frame[TS] < end)]


KIND = SourceKind("files", FilesSpec, FilesSource)
