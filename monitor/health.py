"""What is wrong with the daemon right now: for ``/healthz``, the status page and the log.

Each part of the daemon that can fail in a way that blinds it (recording evaluations, delivering
notifications, writing ingested rows, loading check files) reports here under a condition name:
:meth:`Health.failing` while it fails, :meth:`Health.recovered` once it works again. ``/healthz`` is
degraded while any condition holds, and says which and why.

The log gets one line when a condition starts, at most one a minute while it lasts (with how often it
recurred meanwhile), and one when it clears: an hour-long database outage is a few dozen lines, not
thousands of errors with a traceback each. The traceback goes to the debug level only.
:class:`LogThrottle` does the same for repeated conditions that do not make the daemon unhealthy
(a client that hangs up mid-request, one check's source failing on every run). :func:`in_one_line`
is how a failure becomes a reason.

It stands below the daemon and the server, which both report to it, and knows neither.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("monitor.health")

REPEAT_EVERY_S = 60.0


def in_one_line(exc: BaseException) -> str:
    """A failure as a reason: the database driver's own first line when it has one (``exc.orig``; not
    SQLAlchemy's text, which carries the whole statement and a link), else the type and first line."""
    cause = getattr(exc, "orig", None)
    lines = str(exc if cause is None else cause).strip().splitlines()
    if cause is not None:
        return lines[0] if lines else type(cause).__name__
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@dataclass
class _Seen:
    first: float
    last_logged: float
    repeats: int = 0  # occurrences since the last line logged


class LogThrottle:
    """Log a repeating condition once, then at most once per ``every`` seconds with a count."""

    def __init__(
        self, logger: logging.Logger, *, every: float = REPEAT_EVERY_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.every = every
        self._monotonic = monotonic
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def log(self, key: str, level: int, message: str, *, exc_info: BaseException | None = None) -> bool:
        """Log ``message`` for ``key`` unless it was logged less than ``every`` seconds ago; returns
        whether a line was written. The traceback of ``exc_info`` is logged at debug level only."""
        now = self._monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = _Seen(now, now)
                suffix = ""
            elif now - seen.last_logged >= self.every:
                suffix = f" (again; {seen.repeats + 1} times in the last {now - seen.last_logged:.0f}s)"
                seen.last_logged, seen.repeats = now, 0
            else:
                seen.repeats += 1
                return False
        self.logger.log(level, "%s%s", message, suffix)
        if exc_info is not None:
            self.logger.debug("traceback of: %s", message, exc_info=exc_info)
        return True

    def clear(self, key: str) -> float | None:
        """Forget ``key``; returns for how long it had lasted (None if it was not held)."""
        with self._lock:
            seen = self._seen.pop(key, None)
        return None if seen is None else self._monotonic() - seen.first


class Health:
    """The daemon's current problems, by condition name, each with the latest reason."""

    def __init__(
        self, logger: logging.Logger = log, *, every: float = REPEAT_EVERY_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._throttle = LogThrottle(logger, every=every, monotonic=monotonic)
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()
        self.logger = logger

    def failing(self, condition: str, reason: str, *, exc_info: BaseException | None = None) -> None:
        """``condition`` holds (again); ``reason`` says what is wrong and, where it helps, what to do."""
        with self._lock:
            self._problems[condition] = reason
        self._throttle.log(condition, logging.ERROR, f"{condition}: {reason}", exc_info=exc_info)

    def recovered(self, condition: str) -> None:
        """``condition`` no longer holds: said once in the log if it did."""
        with self._lock:
            held = self._problems.pop(condition, None)
        lasted = self._throttle.clear(condition)
        if held is not None:
            self.logger.warning("%s: recovered after %.0fs", condition, lasted or 0.0)

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._problems)

    @property
    def ok(self) -> bool:
        with self._lock:
            return not self._problems
