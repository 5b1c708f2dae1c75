"""Log lines carry their time in UTC with its offset (ISO 8601), like every other time monitor shows; with
``--log-format json`` each is one JSON object with the model, check, run or receiver it is about."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from monitor.logs import JsonFormatter, TextFormatter, bind, log_context


def record(message: str = "fraud-scorer/latency: breach", level: int = logging.WARNING) -> logging.LogRecord:
    made = logging.LogRecord("monitor.daemon", level, __file__, 1, message, None, None)
    made.created = datetime(2026, 12, 2, 6, 30, 5, 250_000, tzinfo=UTC).timestamp()
    return made


def test_a_log_line_is_stamped_in_utc_with_its_offset():
    line = TextFormatter().format(record())
    assert line == "2026-12-02T06:30:05.250+00:00 WARNING monitor.daemon: fraud-scorer/latency: breach"


def test_the_stamp_does_not_depend_on_the_machines_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        made = logging.LogRecord("monitor", logging.INFO, __file__, 1, "x", None, None)
        stamp = TextFormatter().format(made).split(" ")[0]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp)
        assert abs(datetime.fromisoformat(stamp).timestamp() - made.created) < 0.001
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_json_line_carries_what_the_run_is_about_and_only_within_it():
    formatter = JsonFormatter()
    with log_context(model="fraud-scorer", check="latency"):
        bind(run_id=7)
        inside = json.loads(formatter.format(record()))
    outside = json.loads(formatter.format(record("monitor started", logging.INFO)))
    assert inside == {"time": "2026-12-02T06:30:05.250+00:00", "level": "warning", "logger": "monitor.daemon",
                      "message": "fraud-scorer/latency: breach", "model": "fraud-scorer", "check": "latency", "run_id": 7}  # fmt: skip
    assert outside == {"time": "2026-12-02T06:30:05.250+00:00", "level": "info", "logger": "monitor.daemon",
                       "message": "monitor started"}  # fmt: skip


def test_a_json_line_holds_a_traceback_and_a_message_with_newlines_on_one_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        made = record("check failed:\nsecond line")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "check failed:\nsecond line" and "ValueError: bad" in parsed["exception"]
