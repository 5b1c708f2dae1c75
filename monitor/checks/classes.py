"""The classes of a classification model: how a label or a decision is matched to one.

A value is a class by its text (:func:`class_key`), whole numbers as integers, so ``1``, ``1.0``,
``"1"`` and ``true`` are one class. The ``performance`` check scores against a :class:`ClassSet`, and
the labels API refuses a label that fits none of the model's classes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.sources.reference import Reference


def class_key(value: Any) -> str | None:
    """The text a class is known by: ``1``, ``1.0``, ``"1"``, ``True`` and ``numpy.int64(1)`` are all
    ``"1"``; ``None`` for no value (None, NaN, pandas' NA)."""
    if value is None:
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() and abs(number) < 2**63 else repr(number)
    if isinstance(value, str):
        return value
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return repr(value)  # a list or an object: never one of the classes


def plain(value: Any) -> Any:
    """A value as the JSON evidence holds it: whole numbers as int, numpy scalars as Python's."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return repr(number)  # JSON (and PostgreSQL's json) has no inf
        return int(number) if number.is_integer() and abs(number) < 2**63 else number
    return value if isinstance(value, str) else repr(value)


def show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def ordered(value: Any) -> tuple:
    """A sort key that puts numbers (by value) before text."""
    return (1, value, 0.0) if isinstance(value, str) else (0, "", float(value))


class ClassSet:
    """The classes a classification model's labels and decisions are one of, and where they came from
    (``check``, ``reference`` or ``values``)."""

    def __init__(self, values: Iterable[Any], source: str) -> None:
        self.values: tuple[Any, ...] = tuple(dict.fromkeys(plain(v) for v in values))
        self.source = source
        self._by_key = {class_key(v): v for v in self.values}

    def get(self, value: Any, default: Any = None) -> Any:
        """The class ``value`` is (by its text, see :func:`class_key`), else ``default``."""
        return self._by_key.get(class_key(value), default)

    def __len__(self) -> int:
        return len(self.values)

    def __str__(self) -> str:
        return ", ".join(show(v) for v in self.values)


def reference_classes(reference: Reference | None) -> ClassSet | None:
    """The classes of the reference's label column (the source's label column, by name), when it has
    one with at least two."""
    if reference is None or reference.label is None:
        return None
    found = {class_key(v): plain(v) for v in reference.frame[reference.label].dropna().unique()}
    found.pop(None, None)
    return ClassSet(sorted(found.values(), key=ordered), "reference") if len(found) >= 2 else None
