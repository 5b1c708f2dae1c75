"""Health tells the truth and the log stays quiet: ``/healthz`` is 503 and names each problem while runs
cannot be recorded, deliveries are stuck or no check file is loaded, and ok again once they are over;
the status page says the database is unavailable instead of failing; an outage or a check failing on
every run is one log line, then at most one a minute with a count, the traceback at debug only.

Over real sockets, on a real database: SQLite made to refuse writes (``PRAGMA query_only``, as a
read-only file would) or every statement (an engine event raising the driver's own error, as a database
that is down), and a PostgreSQL database that stops accepting connections.
"""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from conftest import PG_URL
from daemons import serving
from factories import live_frame, write_project
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.config.loader import load_config
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.health import Health, in_one_line
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.storage import db
from monitor.storage.tables import Alert, Notification

LATENCY = [{"name": "latency", "kind": "latency", "every": "1d", "window": "1h", "alert": [{"when": "p99_ms > 1e9", "severity": "warning"}]}]  # fmt: skip


class FakeMonotonic:
    """The clock Health and LogThrottle read: moved by the test, never by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def project(root: Path, **kwargs) -> Path:
    """One model with one latency check (no evidently to import), fed by a files source."""
    return write_project(root, live=live_frame(300, end=datetime.now(UTC)), checks=LATENCY, **kwargs)


@contextmanager
def read_only(engine: Engine) -> Iterator[None]:
    """SQLite refusing every write ("attempt to write a readonly database"); reads still work."""

    def on_checkout(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute(f"PRAGMA query_only = {int(refusing)}")

    refusing = True
    sa.event.listen(engine, "checkout", on_checkout)
    try:
        yield
    finally:
        refusing = False  # connections checked out from now on write again; the listener stays harmless
        engine.dispose()


@contextmanager
def down(engine: Engine) -> Iterator[None]:
    """Every statement fails as with a database that cannot be opened (the driver's own error)."""

    def refuse(*_args) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    sa.event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", refuse)


def healthz(client: httpx.Client) -> tuple[int, dict]:
    answer = client.get("/healthz")
    return answer.status_code, answer.json()


def wait_healthy(client: httpx.Client, timeout: float = 10.0) -> dict:
    """/healthz once it is 200 (the outbox notices a pass that works within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = healthz(client)
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, body
            return body
        time.sleep(0.05)


# -- /healthz -----------------------------------------------------------------------------------------
def test_healthz_is_degraded_while_runs_cannot_be_recorded_and_ok_once_one_is(tmp_path):
    with serving(project(tmp_path)) as (daemon, client):
        status, body = healthz(client)
        assert (status, body["status"], body["problems"]) == (200, "ok", {})
        model = daemon.project.checks.models["fraud-scorer"]

        with read_only(daemon.engine):
            assert daemon.evaluate(model, model.check("latency")) is None
            status, body = healthz(client)
        assert (status, body["status"]) == (503, "degraded")
        assert set(body["problems"]) == {"recording"}
        assert body["problems"]["recording"].startswith("fraud-scorer/latency: evaluated but not recorded (the database")
        assert "readonly database" in body["problems"]["recording"]
        assert {"uptime_s", "last_success", "last_success_age_s"} <= set(body)  # today's fields are kept

        assert daemon.evaluate(model, model.check("latency")).run_id is not None
        body = wait_healthy(client)
        assert (body["status"], body["problems"]) == ("ok", {})


def test_healthz_names_every_condition_reported(tmp_path):
    """Whatever part reports a condition (the sampler reports "ingest"), /healthz shows it with its reason."""
    with serving(project(tmp_path)) as (daemon, client):
        daemon.health.failing("ingest", "cannot write ingest buckets: disk full")
        status, body = healthz(client)
        assert (status, body["problems"]) == (503, {"ingest": "cannot write ingest buckets: disk full"})
        daemon.health.recovered("ingest")
        assert healthz(client)[0] == 200


def test_no_check_file_loaded_is_degraded_with_the_files_problems(tmp_path):
    config = project(tmp_path)
    (tmp_path / "checks" / "fraud-scorer.yaml").write_text("model: fraud-scorer\nowner: fraud-team\nsource: {kind: nope}\n")
    with serving(config) as (_, client):
        status, body = healthz(client)
        page = client.get("/")
    assert (status, body["status"], sorted(body["problems"])) == (503, "degraded", ["check files", "checks"])
    reason = body["problems"]["checks"]
    assert reason.startswith("no check file loaded, so nothing is watched: ")
    assert "fraud-scorer.yaml:3:16: source.kind: unknown kind 'nope'" in reason
    assert page.status_code == 200 and "no check file loaded" in page.text


# -- the status page ----------------------------------------------------------------------------------
def test_the_status_page_says_the_database_is_unavailable_and_lists_the_problems_first(tmp_path):
    with serving(project(tmp_path)) as (daemon, client):
        model = daemon.project.checks.models["fraud-scorer"]
        daemon.health.failing("ingest", "<script>alert(1)</script>")  # a reason is escaped like any value
        with down(daemon.engine):
            assert daemon.evaluate(model, model.check("latency")) is None
            page = client.get("/")
        assert page.status_code == 200
        text = page.text
        assert "The database is unavailable (unable to open database file)" in text
        assert "<b>recording</b>: fraud-scorer/latency: evaluated but not recorded" in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
        assert text.index("Problems") < text.index("model(s)") < text.index("The database is unavailable")

        daemon.health.recovered("ingest")
        assert daemon.evaluate(model, model.check("latency")).run_id is not None
        wait_healthy(client)
        text = client.get("/").text
    assert "Health: ok." in text and "unavailable" not in text
    assert "<h3>fraud-scorer</h3>" in text and "<td>latency</td><td></td><td class='ok'>ok</td>" in text


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_postgresql_outage_degrades_health_and_the_page_and_both_recover(tmp_path, database_url):
    with serving(project(tmp_path, database_url=database_url)) as (daemon, client):
        model = daemon.project.checks.models["fraud-scorer"]
        name = sa.make_url(database_url).database
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:  # the database stops answering: new connections refused, open ones cut
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            assert daemon.evaluate(model, model.check("latency")) is None
            status, body = healthz(client)
            page = client.get("/")
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            admin.dispose()
        assert (status, body["status"]) == (503, "degraded")
        assert "the database is unavailable" in body["problems"]["recording"]
        assert page.status_code == 200 and "The database is unavailable (" in page.text

        assert daemon.evaluate(model, model.check("latency")).run_id is not None
        assert wait_healthy(client)["problems"] == {}
        assert "unavailable" not in client.get("/").text


# -- the outbox -----------------------------------------------------------------------------------------
def owe(engine: Engine, created: datetime, now: datetime, error: str | None = None) -> int:
    """A notification owed since ``created``, retried (``error``), its next attempt after ``now``."""
    with Session(engine) as session:
        alert = Alert(model="m", check="c", rule="x > 1", rule_key="x > 1", severity="warning", state="firing",
                      started=created, threshold=1.0, owner="team", updated=created)  # fmt: skip
        session.add(alert)
        session.flush()
        row = Notification.pending(alert.id, "firing", "team/slack", {}, created)
        row.attempts, row.error, row.next_attempt = 9, error, now + timedelta(minutes=5)
        session.add(row)
        session.commit()
        return row.id


def one_pass(outbox: Outbox) -> None:
    stop = threading.Event()
    stop.set()
    outbox.run(stop)


def test_delivery_is_degraded_while_a_notification_waits_past_the_limit_or_the_table_is_unusable(sqlite_engine):
    clock = FixedClock(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    health = Health()
    outbox = Outbox(sqlite_engine, Receivers(load_config(None)), clock, health=health)
    notification = owe(sqlite_engine, clock.now() - timedelta(minutes=9), clock.now(), "slack answered HTTP 503")
    one_pass(outbox)
    assert health.problems() == {}  # retrying for 9 minutes: a blip, not yet an outage

    clock.advance(timedelta(minutes=2))
    one_pass(outbox)
    assert health.problems() == {
        "delivery": f"1 notification(s) undelivered for more than 10m; the oldest, #{notification} to team/slack owed "
        "since 2026-12-02T11:51:00+00:00, after 9 attempt(s): slack answered HTTP 503"
    }

    with sqlite_engine.begin() as conn:
        conn.execute(sa.update(Notification).values(status="sent"))
    one_pass(outbox)
    assert health.ok

    with down(sqlite_engine):
        one_pass(outbox)
    assert health.problems()["delivery"] == "the outbox cannot read or write its notifications: unable to open database file"
    one_pass(outbox)
    assert health.ok


# -- the log ----------------------------------------------------------------------------------------------
def test_a_failure_in_one_line_is_the_drivers_first_line_or_the_type_and_first_line():
    refused = sa.exc.OperationalError("INSERT INTO ingest_stats ...", {}, sqlite3.OperationalError("disk I/O error\nmore"))
    assert in_one_line(refused) == "disk I/O error"  # not SQLAlchemy's text, with the statement and a link
    assert in_one_line(RuntimeError("boom\nand a second line")) == "RuntimeError: boom"
    assert in_one_line(RuntimeError()) == "RuntimeError"


def test_an_outage_is_one_error_line_then_one_a_minute_with_a_count_and_one_recovered_line(tmp_path, caplog):
    monotonic = FakeMonotonic()
    daemon = Daemon(Project.load(project(tmp_path)), health=Health(monotonic=monotonic))
    db.upgrade(daemon.engine)
    model = daemon.project.checks.models["fraud-scorer"]
    latency = model.check("latency")
    with caplog.at_level(logging.DEBUG, logger="monitor"):
        with down(daemon.engine):
            for _ in range(13):  # two minutes of a check every 10 s
                assert daemon.evaluate(model, latency) is None
                monotonic.now += 10
        assert daemon.evaluate(model, latency).run_id is not None
        daemon.evaluate(model, latency)
    daemon.engine.dispose()

    told = [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("monitor")]
    lines = [(r.levelname, r.getMessage()) for r in told]
    first = "recording: fraud-scorer/latency: evaluated but not recorded (the database is unavailable: unable to open database file); the next run tries again"  # fmt: skip
    assert [line for line in lines if line[0] != "INFO"] == [
        ("ERROR", first),
        ("ERROR", f"{first} (again; 6 times in the last 60s)"),
        ("ERROR", f"{first} (again; 6 times in the last 60s)"),
        ("WARNING", "recording: recovered after 130s"),
    ]
    runs = [message for level, message in lines if level == "INFO"]
    assert len(runs) == 2 and all(message.startswith("fraud-scorer/latency: ") for message in runs)  # the two recorded
    assert not any(r.exc_info for r in told)  # no traceback above debug
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 3 and {r.levelno for r in tracebacks} == {logging.DEBUG}


@pytest.mark.skipif(importlib.util.find_spec("pymssql") is not None, reason="the driver this test lacks is installed")
def test_a_sql_source_without_its_driver_is_an_error_run_each_time_and_one_line(tmp_path, caplog):
    config = project(tmp_path)
    path = tmp_path / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(path.read_text())
    model["source"] = {
        **model["source"],
        "kind": "sql",
        "url": "mssql+pymssql://scorer@db.internal/scores",
        "table": "predictions",
    }
    del model["source"]["path"]
    path.write_text(yaml.safe_dump(model))
    daemon = Daemon(Project.load(config))
    db.upgrade(daemon.engine)
    scorer = daemon.project.checks.models["fraud-scorer"]
    with caplog.at_level(logging.DEBUG, logger="monitor"):
        results = [daemon.evaluate(scorer, scorer.check("latency")) for _ in range(3)]
    daemon.engine.dispose()

    why = "the driver of mssql+pymssql:// is not installed (No module named 'pymssql'): install it, or change url"
    assert [(r.outcome, r.evaluation.error) for r in results] == [("error", why)] * 3  # every run is recorded
    assert all(r.run_id is not None for r in results)
    told = [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("monitor")]
    # One line when it starts failing; at the third run in a row its owner is alerted, and /healthz says so.
    assert [r.getMessage() for r in told] == [
        f"fraud-scorer/latency: error (0 rows, {results[0].duration_s:.2f}s): {why}",
        f"check fraud-scorer/latency: its last 3 runs failed: {why}",
    ]
    assert daemon.health.problems()["check fraud-scorer/latency"] == f"its last 3 runs failed: {why}"
    assert not any(r.exc_info for r in caplog.records)
