"""Durations as people write them in check files: ``30s``, ``15m``, ``1h``, ``7d``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# [0-9], not \d: \d is any Unicode digit, and float() reads them (``every: ５s`` would be 5 seconds).
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w))+$")
_LONGEST = timedelta.max.total_seconds()


def parse_duration(text: object, *, allow_zero: bool = False) -> timedelta:
    """Read a duration; raise ``ValueError`` with what to write instead. ``0s`` only with ``allow_zero``."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError("expected a duration such as 30s, 15m, 1h or 7d")
    if isinstance(text, int) or (text.strip().isdigit() and text.strip().isascii()):
        raise ValueError(f"duration {text!r} has no unit: write for example {text}s or {text}m")
    compact = text.strip().replace(" ", "")
    if compact.startswith("-") and _WHOLE.match(compact[1:]):
        raise ValueError(f"duration {text!r} is negative: a duration is a length of time, such as {compact[1:]}")
    if not _WHOLE.match(compact):
        raise ValueError(f"bad duration {text!r}: write a number and a unit (ms, s, m, h, d, w), for example 30s, 15m, 1h, 7d")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"duration {text!r} must be longer than zero")
    if not seconds < _LONGEST:  # also an infinite number of digits
        shown = text if len(text) <= 40 else f"{text[:12]}...{text[-12:]}"  # not 400 nines back
        raise ValueError(f"duration {shown!r} is too long: at most 999999999d (about 2.7 million years)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest readable form: 90 seconds is ``1m30s``."""
    seconds, millis = divmod(int(round(delta.total_seconds() * 1000)), 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis or not parts:  # 600ms is not 1s, nor 1500ms 2s
        parts.append(f"{millis}ms")
    return "".join(parts)
