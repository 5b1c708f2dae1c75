"""The condition language of alert rules, parsed by a tiny grammar, never eval.

A condition compares a metric with a number, or with an *anchor*: the same metric over the model's
reference data set (``reference``) or its median over a past period (``baseline``)::

    drift_share > 0.3                  metric OP number[%]
    availability < 99%                 a percentage is divided by 100: this compares against 0.99
    missing_share > reference + 0.05   metric OP [FACTORx] reference [(+|-) number[%]]
    missing_share > 2x reference
    p95_ms > 1.5x baseline             metric OP [FACTORx] baseline [(+|-) number[%]]
    age_s > 2h                         a duration, on a metric of seconds (*_s) or milliseconds (*_ms)
    missing_share > reference range    past the range the metric takes over the reference's own
    missing_share outside reference    windows of the live window's size (``MetricValue.band``): its
                                       top (>), its bottom (<), or either (outside)

On an anchor the limit is ``FACTOR × anchor + offset``; ``==`` and ``!=`` compare with a number only.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor.config.durations import parse_duration

Anchor = Literal["reference", "baseline", "range"]  # range: the reference's range (MetricValue.band)

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
ABOVE = (">", ">=")  # the operators that breach above their limit
BELOW = ("<", "<=")
BACK = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}  # where a value is once back past a threshold it breached

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"  # ASCII digits: \d is any Unicode digit
_DURATION = r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w))+"  # as durations are written (monitor/config/durations.py)
# A duration is a threshold in the metric's own unit, which its name ends with.
_TIME_UNITS = {"_ms": 1000.0, "_s": 1.0}
OUTSIDE = "outside"  # the operator of ``metric outside reference``: two edges, the value's band
_GRAMMAR = re.compile(
    rf"""^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)
        (?:\s+(?P<outside>outside)\s+reference(?:\s+range)?\s*$|
        \s*(?P<op>>=|<=|==|!=|>|<)\s*
        (?:
            (?P<range>reference\s+range)
          | (?P<duration>{_DURATION})
          | (?P<number>[-+]?{_NUMBER})\s*(?P<percent>%)?
          | (?:(?P<factor>[-+]?{_NUMBER})\s*x\s*)?(?P<anchor>reference|baseline)
            (?:\s*(?P<sign>[-+])\s*(?P<offset>{_NUMBER})\s*(?P<offset_percent>%)?)?
        )\s*$)""",
    re.VERBOSE,
)
_MENTIONS_ANCHOR = re.compile(r"\b(?:reference|baseline|outside)\b")


class ConditionError(ValueError):
    """A condition that does not read as one of the forms of the grammar."""


@dataclass(frozen=True)
class Condition:
    """One parsed condition. ``threshold`` is the number written (a percentage as its fraction); on an
    anchor it is the offset added to ``factor`` × the anchor (0 when none is written), so that
    :meth:`limit` is ``factor × anchor + threshold`` there and ``threshold`` itself otherwise.
    ``percent`` says whether the number was written as a percentage (a ``margin:`` may then be one)."""

    metric: str
    op: str
    threshold: float
    text: str
    anchor: Anchor | None = None
    factor: float = 1.0
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Condition:
        if not isinstance(text, str):
            raise ConditionError("expected a condition such as 'drift_share > 0.3'")
        match = _GRAMMAR.match(text)
        if match is None:
            if _MENTIONS_ANCHOR.search(text):
                raise ConditionError(
                    f"cannot read condition {text!r}: compare with the reference as 'metric OP reference', "
                    "'metric OP reference + 0.05', 'metric OP 2x reference', 'metric OP reference range' or 'metric outside "
                    "reference', and with the metric's own past as 'metric OP 1.5x baseline', with OP one of > >= < <="
                )
            raise ConditionError(
                f"cannot read condition {text!r}: write 'metric OP number', "
                "with OP one of > >= < <= == != (for example 'drift_share > 0.3', 'availability < 99%' or 'age_s > 2h')"
            )
        normalised = " ".join(text.split())
        if match["outside"] is not None:
            return cls(match["metric"], OUTSIDE, 0.0, normalised, anchor="range")
        if match["range"] is not None:
            if match["op"] not in (">", "<"):  # >= and <= would fire at an edge of 0 or 1 on every window
                raise ConditionError(
                    f"cannot read condition {text!r}: the reference range has a top and a bottom, and a value is past "
                    "them or not: compare with it by > (past its top) or < (past its bottom), or write 'METRIC outside reference'"
                )
            return cls(match["metric"], match["op"], 0.0, normalised, anchor="range")
        if match["duration"] is not None:
            return cls(match["metric"], match["op"], _in_units(match["metric"], match["duration"], text), normalised)
        if match["anchor"] is None:
            threshold = _finite(match["number"], text) / (100.0 if match["percent"] else 1.0)
            return cls(match["metric"], match["op"], threshold, normalised, percent=bool(match["percent"]))
        if match["op"] in ("==", "!="):
            raise ConditionError(
                f"cannot read condition {text!r}: '{match['op']}' compares with a number only; compare with the "
                f"{match['anchor']} by > >= < <="
            )
        factor = _finite(match["factor"], text, "factor") if match["factor"] else 1.0
        if factor <= 0:
            raise ConditionError(
                f"the factor of {text!r} must be more than 0: write for example '{match['metric']} {match['op']} "
                f"1.5x {match['anchor']}'"
            )
        offset = 0.0
        if match["offset"]:
            offset = _finite(match["offset"], text, "offset") / (100.0 if match["offset_percent"] else 1.0)
            offset = -offset if match["sign"] == "-" else offset
        anchor: Anchor = "reference" if match["anchor"] == "reference" else "baseline"
        percent = bool(match["offset_percent"])
        return cls(match["metric"], match["op"], offset, normalised, anchor=anchor, factor=factor, percent=percent)

    @property
    def canonical(self) -> str:
        """The condition as one rule: ``p99_ms>250``, ``p99_ms > 250`` and ``p99_ms > 250.0`` read alike,
        as do ``x > 1x baseline + 0`` and ``x > baseline``, ``x > reference + 5%`` and ``x > reference + 0.05``."""
        if self.op == OUTSIDE:
            return f"{self.metric} outside reference"
        if self.anchor == "range":
            return f"{self.metric} {self.op} reference range"
        if self.anchor is None:
            return f"{self.metric} {self.op} {self.threshold!r}"
        right = self.anchor if self.factor == 1 else f"{self.factor!r}x {self.anchor}"
        if self.threshold:
            right += f" {'-' if self.threshold < 0 else '+'} {abs(self.threshold)!r}"
        return f"{self.metric} {self.op} {right}"

    def limit(self, anchor: float | None = None) -> float | None:
        """The number a value is compared with: the threshold, or ``factor × anchor + offset`` on an
        anchor (None when the anchor has no value: no reference, no baseline yet)."""
        if self.anchor is None:
            return self.threshold
        if anchor is None or not math.isfinite(anchor):
            return None
        return tidy(self.factor * anchor + self.threshold)

    def compare(self, value: float | None, limit: float | None) -> bool:
        """Whether ``value OP limit``. No value (None, NaN) or no limit never holds: no data is not a breach.
        (``outside`` has two limits: :func:`outside`.)"""
        if value is None or limit is None or math.isnan(value):
            return False
        return _OPERATORS[self.op](value, limit)

    @property
    def lower_is_worse(self) -> bool:
        """Whether the condition breaches below its limit (``<``, ``<=``): its worst value is the lowest."""
        return self.op in BELOW

    def holds(self, value: float | None, anchor: float | None = None) -> bool:
        """Whether ``value`` breaches the condition, given the anchor's value for a condition on one."""
        return self.compare(value, self.limit(anchor))

    def __str__(self) -> str:
        return self.text


def past_range(condition: Condition, value: float, band: tuple[float, float]) -> tuple[bool, float]:
    """Whether ``value`` breaches a condition on the reference range ``band`` (low, high), and the edge it
    is judged against: the top for >, the bottom for <; for ``outside``, the one it crossed, else
    the nearer one."""
    low, high = band
    if condition.op != OUTSIDE:
        edge = high if condition.op in ABOVE else low
        return condition.compare(value, edge), edge
    if value > high or value < low:
        return True, high if value > high else low
    return False, high if value - low >= high - value else low


def tidy(number: float) -> float:
    """A computed limit to 12 significant digits, so that decimal arithmetic reads as written: 0.9 + 0.05
    is 0.95, not 0.9500000000000001 (which 0.95 would not reach)."""
    return float(f"{number:.12g}") if math.isfinite(number) else number


def _in_units(metric: str, duration: str, text: str) -> float:
    """A duration threshold (``2h``) in the unit of the metric (``age_s``: 7200)."""
    per_second = next((size for suffix, size in _TIME_UNITS.items() if metric.endswith(suffix)), None)
    if per_second is None:
        raise ConditionError(
            f"cannot read condition {text!r}: a duration is a threshold only of a time in seconds or milliseconds "
            f"(a metric named *_s or *_ms, such as age_s or p95_ms), and {metric} is not one: write a number"
        )
    try:
        seconds = parse_duration(duration, allow_zero=True).total_seconds()
    except ValueError as exc:
        raise ConditionError(f"cannot read condition {text!r}: {exc}") from None
    return tidy(seconds * per_second)


def _finite(number: str, text: str, what: str = "threshold") -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ConditionError(f"the {what} of {text!r} is too large to be a number: write a finite one")
    return value
