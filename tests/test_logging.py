"""Log lines carry their time in UTC with its offset (ISO 8601), like every other time monitor shows."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from monitor.cli import UtcFormatter


def test_a_log_line_is_stamped_in_utc_with_its_offset():
    record = logging.LogRecord("monitor.daemon", logging.WARNING, __file__, 1, "fraud-scorer/latency: breach", None, None)
    record.created = datetime(2026, 12, 2, 6, 30, 5, 250_000, tzinfo=UTC).timestamp()
    line = UtcFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s").format(record)
    assert line == "2026-12-02T06:30:05.250+00:00 WARNING monitor.daemon: fraud-scorer/latency: breach"


def test_the_stamp_does_not_depend_on_the_machines_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        record = logging.LogRecord("monitor", logging.INFO, __file__, 1, "x", None, None)
        stamp = UtcFormatter("%(asctime)s").format(record)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp)
        assert abs(datetime.fromisoformat(stamp).timestamp() - record.created) < 0.001
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
