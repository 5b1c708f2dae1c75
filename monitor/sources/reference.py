"""The reference data set a model's live rows are compared with, read once and shared.

A reference is loaded from a Parquet, CSV or JSON-lines file and kept in memory as long as the file
does not change; every check of the model, and every evaluation, reuses the same object. Later, what
a check prepares from it once (sorted values, category codes, bins) belongs here too.

The reference also decides what type each feature is (:meth:`Reference.column_type`), and
:func:`as_type` puts a column, live or reference, into that type, so that both sides of a comparison
hold the same kind of values whatever format they were read from (see "One type per feature" in
docs/decisions.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from monitor.config.types import StrictModel
from monitor.sources.base import SourceError, SourceSpec
from monitor.sources.files import FORMATS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class ReferenceSpec(StrictModel):
    path: str


T = TypeVar("T")
ColumnType = Literal["number", "boolean", "string"]
# How each type is named to a person (a message, the evidence): "string" is the ingest API's word.
TYPE_NAMES: dict[str, str] = {"number": "number", "boolean": "boolean", "string": "text"}
_NUMERIC_KINDS = {"integer", "floating", "mixed-integer-float", "decimal"}  # pandas.api.types.infer_dtype


@dataclass(frozen=True)
class Reference:
    path: Path
    frame: pd.DataFrame
    # The column of true labels, as the model's source names its label role (see for_source): a file
    # shared by two models is one Reference, and each model sees it with its own label column.
    label: str | None = None
    # The column of the model's predictions, as the source names its prediction role (None without one);
    # unlike ``label`` it is named even when the reference lacks it, so that a check can say so.
    prediction: str | None = None
    # The column of the rows' times, as the source names its timestamp (None when the reference has none):
    # a calibrated threshold cuts the reference into windows in time order by it.
    timestamp: str | None = None
    # what is worked out once per column and shared by every evaluation: its type, its values typed (by
    # column and type), its values as read, as objects (data_quality's missing values)
    _types: dict[str, ColumnType] = field(default_factory=dict, repr=False, compare=False)
    _typed: dict[tuple[str, ColumnType], Typed] = field(default_factory=dict, repr=False, compare=False)
    _objects: dict[str, pd.Series] = field(default_factory=dict, repr=False, compare=False)
    # what a check kind works out of a column for itself (drift's sorted values), by the kind's own key
    _worked_out: dict[tuple, Any] = field(default_factory=dict, repr=False, compare=False)

    def for_source(self, source: SourceSpec | None) -> Reference:
        """This reference as a model with ``source`` reads it: its label column is the source's label
        column, when the reference has one of that name. The frame and what is worked out of it are shared."""
        label = source.label if source is not None and source.label in self.frame.columns else None
        prediction = source.prediction if source is not None else None
        timestamp = source.timestamp if source is not None and source.timestamp in self.frame.columns else None
        return replace(self, label=label, prediction=prediction, timestamp=timestamp, _types=self._types, _typed=self._typed,
                       _objects=self._objects, _worked_out=self._worked_out)  # fmt: skip

    def column_type(self, name: str) -> ColumnType:
        """``number``, ``boolean`` or ``string``: what a live value of this column should be.

        Read from the values, not only the dtype: a boolean column with nulls is ``object`` in pandas
        (from Parquet) and an integer column with nulls is ``float64``; neither changes its type.
        """
        if name not in self._types:
            self._types[name] = _column_type(self.frame[name])
        return self._types[name]

    def typed(self, name: str) -> Typed:
        """The reference's own column in its type (see :func:`as_type`), worked out once."""
        return self.typed_as(name, self.column_type(name))

    def typed_as(self, name: str, kind: ColumnType) -> Typed:
        """The reference's column in the type ``kind``, which need not be its own (whole numbers read
        as class labels, say), worked out once."""
        if (name, kind) not in self._typed:
            self._typed[(name, kind)] = as_type(self.frame[name], kind)
        return self._typed[(name, kind)]

    def worked_out(self, key: tuple, make: Callable[[], T]) -> T:
        """What ``make`` works out of this reference, made once per reference file version and kept
        under ``key`` (which names the kind and the column): every evaluation of every check reuses it."""
        if key not in self._worked_out:
            self._worked_out[key] = make()
        return self._worked_out[key]

    def timeline(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows' positions in time order by :attr:`timestamp`, and their times so sorted
        (``datetime64[ns]``, UTC; rows without a time left out), worked out once; None when the
        reference has no timestamp column, or no row a time."""
        if self.timestamp is None:
            return None
        column = self.timestamp

        def timeline() -> tuple[np.ndarray, np.ndarray] | None:
            import numpy as np

            from monitor.sources.base import to_utc

            stamps = to_utc(self.frame[column]).to_numpy(dtype="datetime64[ns]")
            known = np.flatnonzero(~np.isnat(stamps))
            if not known.size:
                return None
            order = known[np.argsort(stamps[known], kind="stable")]
            return order, stamps[order]

        return self.worked_out(("timeline", column), timeline)

    def objects(self, name: str) -> pd.Series:
        """The column as read, as objects and indexed from 0, made once (not copied on every run)."""
        if name not in self._objects:
            self._objects[name] = self.frame[name].reset_index(drop=True).astype(object)
        return self._objects[name]


def read_type(column: pd.Series) -> ColumnType:
    """The type a column's values have, read as a reference's are (see :meth:`Reference.column_type`)."""
    return _column_type(column)


def _column_type(column: pd.Series) -> ColumnType:
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_numeric_dtype(column):
        return "number"
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind == "boolean":
        return "boolean"
    return "number" if kind in _NUMERIC_KINDS else "string"


@dataclass(frozen=True)
class Typed:
    """A column in one type, and what had to be left out to get there (each now a missing value).

    ``values`` is ``float64`` for numbers, and ``object`` holding ``True``/``False`` for booleans and
    ``str`` for text, with ``None`` (NaN for numbers) where a value is missing.
    """

    values: pd.Series
    missing: int  # missing as read (None, NaN, NaT)
    not_finite: int  # inf and -inf in a number column
    wrong_type: int  # values that are not of the type (text in a number column, 2 in a boolean one)
    examples: tuple[str, ...] = ()  # a few of the wrong-typed values, as written

    @property
    def usable(self) -> int:
        return len(self.values) - self.missing - self.not_finite - self.wrong_type


def as_type(column: pd.Series, kind: ColumnType) -> Typed:
    """``column`` as ``kind``, converting what is the same value in another form and leaving out the rest.

    - ``number``: any number (integers, floats, decimals; true/false as 1/0). Text is never parsed:
      ``"12.5"`` in a number column is a wrong type, as is ``"abc"``. inf and -inf are left out.
    - ``boolean``: true/false, and the numbers 1 and 0 (how SQLite stores a boolean, and what pandas
      makes of JSON ``true``/``null``). Anything else is a wrong type.
    - ``string``: text as it is; a number becomes its text, a whole one without a decimal point (a
      category sent as 80331, or read as 80331.0 from a CSV column with gaps, is ``"80331"``); true
      and false become ``"True"`` and ``"False"``. Lists and mappings are a wrong type.
    """
    import numpy as np
    import pandas as pd

    column = column.reset_index(drop=True)
    absent = column.isna().to_numpy()
    missing = int(absent.sum())
    if kind == "number" and pd.api.types.is_numeric_dtype(column):  # includes bool, Int64, boolean
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        infinite = np.isinf(values)
        values[infinite] = np.nan
        return Typed(pd.Series(values, dtype="float64"), missing, int(infinite.sum()), 0)
    if kind == "boolean" and pd.api.types.is_bool_dtype(column):
        values = pd.Series([None if a else bool(v) for v, a in zip(column, absent, strict=True)], dtype=object)
        return Typed(values, missing, 0, 0)
    if kind == "string" and pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        return Typed(column.astype(object).where(~absent, None), missing, 0, 0)
    convert = {"number": _as_number, "boolean": _as_boolean, "string": _as_text}[kind]
    out: list[Any] = []
    not_finite = wrong = 0
    examples: list[str] = []
    for value, is_absent in zip(column, absent, strict=True):
        if is_absent:
            out.append(None)
            continue
        converted = convert(value)
        if converted is _INFINITE:
            not_finite += 1
            converted = None
        elif converted is _WRONG:
            wrong += 1
            if len(examples) < 3 and repr(value) not in examples:
                examples.append(repr(value))
            converted = None
        out.append(converted)
    values = pd.Series(out, dtype="float64") if kind == "number" else pd.Series(out, dtype=object)
    return Typed(values, missing, not_finite, wrong, tuple(examples))


_WRONG, _INFINITE = object(), object()


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, float, Decimal, np.integer, np.floating)) and not isinstance(value, bool)


def _as_number(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if not _is_number(value):
        return _WRONG
    number = float(value)
    return number if math.isfinite(number) else _INFINITE


def _as_boolean(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_number(value) and value in (0, 1):
        return bool(value)
    return _WRONG


def _as_text(value: Any) -> Any:
    import numpy as np

    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if _is_number(value):
        number = float(value)
        return str(int(number)) if math.isfinite(number) and number.is_integer() else str(number)
    if isinstance(value, (list, tuple, dict, set)):
        return _WRONG
    return str(value)


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
                    # JSON's own types, not pandas' guesses: with dtype=True a boolean column with
                    # nulls becomes 1.0/NaN (so a number) and text of digits becomes integers.
                    frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
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
