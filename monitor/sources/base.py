"""What every source shares: the column roles it maps, the plug-in interface, and the frame it returns.

A source reads the rows of one time window into a pandas DataFrame. Feature columns keep their own
names; the other roles are renamed to the reserved names below (a feature may not start with '@'),
so a check asks for ``frame[LATENCY]`` whatever the column was called at the source.
"""

from __future__ import annotations

import math
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
SCHEMA = "schema"
"""The key, in the ``attrs`` of a frame read with ``schema=True``, of its :class:`Schema`."""


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

        columns = {role: raw[column] for role, column in self.roles().items()}
        columns.update((feature, raw[feature]) for feature in self.features)
        columns[TS] = to_utc(columns[TS])
        # Built at once: a column at a time, pandas copied the frame's blocks for every one.
        out = pd.DataFrame(columns, index=raw.index, copy=False)
        out.index = pd.RangeIndex(len(out))
        return out


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


VERSION_CHARS = 100
"""A model version is stored in at most 100 characters (the ``model_version`` columns); a longer one is cut."""


def version_names(column: pd.Series) -> pd.Series:
    """Each row's model version (the ``VERSION`` column) as text, a whole number as one (``2``, not
    ``2.0``: an integer column with gaps is read as floats), None where the row has none."""
    import pandas as pd

    def name(value: object) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)[:VERSION_CHARS] or None

    return column.map(name).astype(object)


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


@dataclass(frozen=True)
class Schema:
    """The columns a source found in the data of a window, for a check of schema changes (``data_quality``).

    ``undeclared`` are the columns the data has (in any file read, the table, the features posted) that
    the source does not declare, as a role or a feature; ``absent`` the declared features some of the
    data lacks (a file without the column, a table without it), which the frame holds as missing
    values instead of the read failing.
    """

    undeclared: frozenset[str]
    absent: tuple[str, ...] = ()


class Source(Protocol):
    def read(self, start: datetime, end: datetime, *, schema: bool = False) -> pd.DataFrame:
        """Rows with ``start <= timestamp < end``, in the role layout above; raises SourceError.

        With ``schema``, a declared feature the data lacks is read as missing values rather than being
        an error, and ``attrs[SCHEMA]`` holds the :class:`Schema` found (the other roles stay required)."""

    def newest(self, before: datetime) -> datetime | None:
        """The timestamp of the newest row with ``timestamp < before``, whenever it was written (no
        window); None when the source has no such row. Raises SourceError."""


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
