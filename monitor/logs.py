"""How the daemon's log lines look: text for a terminal, one JSON object a line for a log pipeline.

What a line is about (the model and check of a run, its run id, the receiver of a delivery) is carried
by a context variable that the run or delivery sets (:func:`log_context`, :func:`bind`), so every line
logged inside it, by any module, carries those fields in JSON without each call naming them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")
_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("monitor_log_context", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within it, every log line of this thread carries ``fields`` (model, check, run_id, receiver)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> None:
    """Adds ``fields`` to the current :func:`log_context` (a run's id, once it is known); they end with it."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


def utc_time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message``, the time in UTC with its offset (ISO 8601), like every other time
    monitor shows."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return utc_time(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC), ``level``, ``logger``, ``message``, the context's fields,
    and ``exception`` (its traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": utc_time(record), "level": record.levelname.lower(), "logger": record.name,
                                "message": record.getMessage(), **_CONTEXT.get()}  # fmt: skip
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def formatter(name: str) -> logging.Formatter:
    """The formatter of a ``--log-format``: ``text`` or ``json``."""
    return JsonFormatter() if name == "json" else TextFormatter()
