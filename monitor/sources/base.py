"""What every source shares: the column roles it maps, the plug-in interface, and the frame it returns.

A source reads the rows of one time window into a pandas DataFrame. Feature columns keep their own
names; the other roles are renamed to the reserved names below (a feature may not start with '@'),
so a check asks for ``frame[LATENCY]`` whatever the column was called at the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import Field

from monitor.config.types import Identifier, StrictModel

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from monitor.ingest.sketch import LatencySketch

ID = "@id"
TS = "@ts"
PREDICTION = "@prediction"
LATENCY = "@latency_ms"
LABEL = "@label"
PROBABILITY = "@probability"  # the model's score for the positive class, beside its decision in PREDICTION
VERSION = "@model_version"
SKIPPED_FILES = "skipped_files"
"""The key, in a read frame's ``attrs`` and in the run's evidence, of the files a source left out: ``{path: reason}``."""


class SourceSpec(StrictModel):
    """The column mapping every source kind has; each kind adds where to read from."""

    kind: str
    timestamp: Identifier
    id: Identifier
    features: list[Identifier] = Field(min_length=1)
    prediction: Identifier | None = None
    latency: Identifier | None = None
    label: Identifier | None = None
    probability: Identifier | None = None
    model_version: Identifier | None = None

    def roles(self) -> dict[str, str]:
        """Reserved role name -> column name at the source, for the roles this model declares."""
        mapping = {
            ID: self.id,
            TS: self.timestamp,
            PREDICTION: self.prediction,
            LATENCY: self.latency,
            LABEL: self.label,
            PROBABILITY: self.probability,
            VERSION: self.model_version,
        }
        return {role: column for role, column in mapping.items() if column}

    def columns(self) -> list[str]:
        """Every column to read, each once, in a stable order."""
        return list(dict.fromkeys([*self.roles().values(), *self.features]))

    def to_frame(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Rename a frame read at the source into the roles checks use, timestamps in UTC."""
        import pandas as pd

        out = pd.DataFrame(index=raw.index)
        for role, column in self.roles().items():
            out[role] = raw[column]
        for feature in self.features:
            out[feature] = raw[feature]
        out[TS] = to_utc(out[TS])
        return out.reset_index(drop=True)


def to_utc(column: pd.Series) -> pd.Series:
    """Timestamps as UTC; naive ones are taken to be UTC already; numbers are epoch seconds."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return pd.to_datetime(column, unit="s", utc=True, errors="coerce")
    if not pd.api.types.is_datetime64_any_dtype(column):
        # Text or datetime objects may carry different offsets (a DST change within a file): each is
        # converted on its own; with utc=False pandas turned all but the first offset into NaT.
        return pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
    stamps = column
    if getattr(stamps.dt, "tz", None) is None:
        return stamps.dt.tz_localize("UTC")
    return stamps.dt.tz_convert("UTC")


class SourceError(Exception):
    """A source that cannot be read now (missing column, unreadable file, database down): the reason."""


@dataclass(frozen=True)
class SourceContext:
    """What a source may need besides its spec: whose rows, and the daemon's own database."""

    model: str
    engine: Engine | None = None


@dataclass(frozen=True)
class Summary:
    """Exact figures over every row of a window, for a source whose frame is only a sample of them."""

    rows: int
    latency: LatencySketch


class Source(Protocol):
    def read(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Rows with ``start <= timestamp < end``, in the role layout above; raises SourceError."""


@runtime_checkable
class SampledSource(Source, Protocol):
    """A source whose frame is only a sample of the window's rows (``ingest``): it also gives the
    exact count and latency over all of them."""

    def summary(self, start: datetime, end: datetime) -> Summary:
        """Exact figures over every row with ``start <= timestamp < end``."""


@dataclass(frozen=True)
class SourceKind:
    kind: str
    spec: type[SourceSpec]
    open: Callable[[Any, SourceContext], Source]  # the kind's own spec class
    # Rows that exist only since the daemon first watched the model (posted to its API), so a window
    # reaching back before then is not missing traffic, only unwatched time.
    rows_since_daemon: bool = False
