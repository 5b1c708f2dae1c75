"""When an evaluation cannot be recorded, the log says why in words that fit the cause: the database
down is not bad data, and a change made meanwhile by another writer is neither."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from factories import live_frame, write_project
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from monitor.daemon.project import Project
from monitor.daemon.service import Daemon, why_not_recorded
from monitor.storage import db
from monitor.storage.tables import Alert


def test_the_database_down_is_logged_as_unavailable(tmp_path, caplog):
    write_project(tmp_path, live=live_frame(500, end=datetime.now(UTC), drift=True))
    daemon = Daemon(Project.load(tmp_path / "config.yaml"))
    db.upgrade(daemon.engine)
    model = daemon.project.checks.models["fraud-scorer"]
    daemon.engine.dispose()
    (tmp_path / "monitor.db").rename(tmp_path / "elsewhere.db")
    (tmp_path / "monitor.db").mkdir()  # SQLite cannot open a directory
    with caplog.at_level(logging.ERROR, logger="monitor"):
        assert daemon.evaluate(model, model.check("feature-drift")) is None
    # Told through health: the condition's one line (tests/test_health.py: how it repeats and recovers).
    [line] = [r.getMessage() for r in caplog.records if r.name.startswith("monitor")]
    assert line.startswith("recording: fraud-scorer/feature-drift: evaluated but not recorded (the database is unavailable: ")
    assert line.endswith("); the next run tries again")
    daemon.engine.dispose()


def test_a_refused_value_and_a_change_meanwhile_are_told_apart(sqlite_engine):
    now = datetime(2026, 12, 2, tzinfo=UTC)
    values = dict(
        model="m",
        check="c",
        rule="x > 1.0",
        rule_key="x > 1.0",
        severity="warning",
        state="firing",
        started=now,
        threshold=1.0,
        owner="o",
        updated=now,
    )
    with Session(sqlite_engine) as session:
        session.add(Alert(**values))
        session.commit()
    with Session(sqlite_engine) as session, pytest.raises(sa.exc.IntegrityError) as refused:
        session.add(Alert(**values))  # a second open episode of one rule: the database says no
        session.commit()
    assert why_not_recorded(refused.value).startswith("the database refused a value of this run: ")

    with Session(sqlite_engine) as first, Session(sqlite_engine) as second:
        first.get(Alert, 1).last_value = 2.0
        second.get(Alert, 1).last_value = 3.0
        second.commit()
        with pytest.raises(StaleDataError) as stale:
            first.commit()
    assert why_not_recorded(stale.value) == (
        "one of its alerts was changed meanwhile by another writer (a close by hand, another daemon)"
    )
