"""The condition language of alert rules: ``metric OP number[%]``, parsed by a tiny grammar, never eval.

Examples: ``drift_share > 0.3``, ``p99_ms >= 250``, ``availability < 99%`` (a percentage is divided by
100, so that one compares against 0.99).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}

_GRAMMAR = re.compile(
    r"""^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)
        \s*(?P<op>>=|<=|==|!=|>|<)
        \s*(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
        \s*(?P<percent>%)?\s*$""",
    re.VERBOSE,
)


class ConditionError(ValueError):
    """A condition that does not read as ``metric OP number[%]``."""


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float
    text: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        if not isinstance(text, str):
            raise ConditionError("expected a condition such as 'drift_share > 0.3'")
        match = _GRAMMAR.match(text)
        if match is None:
            raise ConditionError(
                f"cannot read condition {text!r}: write 'metric OP number', "
                "with OP one of > >= < <= == != (for example 'drift_share > 0.3' or 'availability < 99%')"
            )
        threshold = float(match["number"])
        if not math.isfinite(threshold):
            raise ConditionError(f"the threshold of {text!r} is too large to be a number: write a finite one")
        if match["percent"]:
            threshold /= 100.0
        return cls(metric=match["metric"], op=match["op"], threshold=threshold, text=" ".join(text.split()))

    @property
    def canonical(self) -> str:
        """The condition as one rule: ``p99_ms>250``, ``p99_ms > 250`` and ``p99_ms > 250.0`` read alike."""
        return f"{self.metric} {self.op} {self.threshold!r}"

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaches the condition. NaN never does: no data is not a breach."""
        if value is None or math.isnan(value):
            return False
        return _OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return self.text
