"""The reference data set a model's live rows are compared with, read once and shared.

A reference is loaded from a Parquet, CSV or JSON-lines file and kept in memory as long as the file
does not change; every check of the model, and every evaluation, reuses the same object. Later, what
a check prepares from it once (sorted values, category codes, bins) belongs here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING

from monitor.config.types import StrictModel
from monitor.sources.base import SourceError
from monitor.sources.files import FORMATS

if TYPE_CHECKING:
    import pandas as pd


class ReferenceSpec(StrictModel):
    path: str


@dataclass(frozen=True)
class Reference:
    path: Path
    frame: pd.DataFrame

    def column_type(self, name: str) -> str:
        """``number``, ``boolean`` or ``string``: what a live value of this column should be."""
        import pandas as pd

        column = self.frame[name]
        if pd.api.types.is_bool_dtype(column):
            return "boolean"
        return "number" if pd.api.types.is_numeric_dtype(column) else "string"

    def numerical(self, features: list[str]) -> list[str]:
        return [f for f in features if self.column_type(f) == "number"]


_cache: dict[Path, tuple[float, Reference]] = {}
_lock = Lock()


def load_reference(path: str | Path, features: list[str]) -> Reference:
    """The reference at ``path``, from memory unless the file changed; SourceError if unusable."""
    import pandas as pd

    path = Path(path)
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise SourceError(f"reference {path}: {exc.strerror}") from exc
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            reference = cached[1]
        else:
            fmt = FORMATS.get(path.suffix.lower())
            try:
                if fmt == "parquet":
                    frame = pd.read_parquet(path)
                elif fmt == "csv":
                    frame = pd.read_csv(path)
                elif fmt == "jsonl":
                    frame = pd.read_json(path, lines=True)
                else:
                    raise SourceError(f"reference {path}: unknown format; use .parquet, .csv or .jsonl")
            except (OSError, ValueError) as exc:
                raise SourceError(f"reference {path}: {exc}") from exc
            reference = Reference(path, frame)
            _cache[path] = (mtime, reference)
    missing = [f for f in features if f not in reference.frame.columns]
    if missing:
        raise SourceError(f"reference {path}: missing feature column(s) {', '.join(missing)}")
    return reference
