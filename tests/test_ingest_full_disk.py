"""A database that refuses writes is no longer invisible to ingest, over real loopback sockets against the
real daemon (see test_ingest_api): while the sampler cannot write, ``/healthz`` is degraded with the
``ingest`` condition and why; once more than ``ingest.max_unwritten_rows`` accepted rows wait unwritten,
new requests are answered 503 with ``Retry-After`` and nothing of them is counted; once the database
takes writes again, every row that was accepted is stored, and ingest is taken again.

The database really refuses: SQLite's own "database or disk is full" (``PRAGMA max_page_count``: the
file may not grow by a page, which is what a full disk does), and a PostgreSQL scratch database made
read only (``default_transaction_read_only``, its open sessions ended so that the pool reconnects
into read-only ones). A ``kill -9`` of a real ``monitor run`` while PostgreSQL refuses loses at most
the bound, and nothing written before.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import PG_URL, checkout_env
from sqlalchemy.engine import Engine
from test_health import healthz, wait_healthy
from test_ingest_api import AUTH, LABELS, MODEL, PREDICTIONS, accepted_in_db, row, running, stored
from test_ingest_limits import write_ingest_project

BOUND = 50  # ingest.max_unwritten_rows in these tests


def wide_row(row_id: str) -> dict:
    """A row of about 1 KB (a text feature of 900 characters): a few of them need a new page of the SQLite file."""
    out = row(row_id)
    out["features"]["note"] = "w" * 900
    return out


@contextmanager
def full_disk(engine: Engine) -> Iterator[None]:
    """SQLite answering "database or disk is full" to any write that needs one more page. The limit
    holds per connection, so it is set on each as it is checked out, and lifted the same way."""
    full = True

    def on_checkout(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {1 if full else 1073741823}")  # 1: as large as it is now

    sa.event.listen(engine, "checkout", on_checkout)
    try:
        yield
    finally:
        full = False  # connections checked out from now on may grow the file again


def set_read_only(database_url: str, on: bool) -> None:
    """The PostgreSQL database refuses writes in every new session (``on``), and its sessions are ended."""
    name = sa.make_url(database_url).database
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'))
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"),
                {"n": name},
            )
    finally:
        admin.dispose()


@contextmanager
def read_only_postgres(database_url: str) -> Iterator[None]:
    set_read_only(database_url, True)
    try:
        yield
    finally:
        set_read_only(database_url, False)


@contextmanager
def refusing_writes(kind: str, engine: Engine, database_url: str) -> Iterator[str]:
    """The database refusing writes; yields the words its refusal is reported in."""
    if kind == "sqlite":
        with full_disk(engine):
            yield "database or disk is full"
    else:
        with read_only_postgres(database_url):
            yield "read-only transaction"


@pytest.mark.parametrize("database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_database_that_refuses_writes_is_503_past_the_bound_degraded_and_after_recovery_all_is_stored(tmp_path, database_url):
    kind = sa.make_url(database_url).get_backend_name()
    config = write_ingest_project(tmp_path, database_url, max_unwritten_rows=BOUND, max_text_chars=1000, max_row_bytes=65536)
    with running(config) as (daemon, client):
        answers: list[httpx.Response] = []

        def post(prefix: str, count: int = 30) -> httpx.Response:
            answers.append(client.post(PREDICTIONS, json=[wide_row(f"{prefix}-{i}") for i in range(count)], headers=AUTH))
            return answers[-1]

        assert post("before", 20).status_code == 202
        daemon.sampler.flush()
        assert daemon.sampler.unwritten_rows() == 0
        with refusing_writes(kind, daemon.engine, database_url) as refusal:
            assert post("first").status_code == 202  # taken: no write has failed yet
            assert daemon.sampler.flush() == 0  # the flush loop's next tick, without waiting for it
            status, health = healthz(client)
            assert (status, health["status"]) == (503, "degraded")
            assert health["problems"]["ingest"].startswith("cannot write ingest buckets to the database (")
            assert refusal in health["problems"]["ingest"]
            assert "with 30 accepted rows are kept in memory" in health["problems"]["ingest"]

            assert post("second").status_code == 202  # 30 waiting, under the bound of 50: still taken
            refused = post("third")
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"].startswith("the database refuses writes (")
            assert "60 accepted rows wait in memory to be written (ingest.max_unwritten_rows: 50)" in refused.json()["error"]
            assert client.post(LABELS, json=[{"id": "before-0", "label": 1}], headers=AUTH).status_code == 503
            assert daemon.sampler.unwritten_rows() == 60  # what a kill -9 would lose now, and no more
            daemon.sampler.flush()
            assert healthz(client)[1]["problems"]["ingest"].endswith(
                "; new rows are refused with 503 (ingest.max_unwritten_rows: 50)"
            )

        daemon.sampler.flush()  # the database takes writes again: everything waiting is written
        assert daemon.sampler.unwritten_rows() == 0
        assert wait_healthy(client)["problems"] == {}
        assert post("third").status_code == 202  # the refused request, sent again

        taken = sum(a.json()["accepted"] for a in answers if a.status_code == 202)
        assert taken == 20 + 30 + 30 + 30
        assert accepted_in_db(daemon) == taken  # every row accepted is stored, none refused is counted
        ids = {r[0] for r in stored(daemon, "SELECT row_id FROM samples WHERE model = :m", m=MODEL)}
        sent = {f"{p}-{i}" for p, n in (("before", 20), ("first", 30), ("second", 30), ("third", 30)) for i in range(n)}
        assert ids == sent  # all sampled (fewer than sample_per_minute), all written


# -- what a kill -9 can lose -------------------------------------------------------------------------


class RunningDaemon:
    """``monitor run`` in its own process, as deployed; its URL read from its log."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=config.parent,
            env=checkout_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.url = ""
        started = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line)
                found = re.search(r"HTTP API on (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                    started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(60):
            self.process.kill()
            raise AssertionError("the daemon did not start:\n" + "".join(self.log))


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_kill_9_while_the_database_refuses_writes_loses_at_most_the_bound(tmp_path, database_url):
    daemon = RunningDaemon(write_ingest_project(tmp_path, database_url, max_unwritten_rows=BOUND))
    try:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            before = client.post(PREDICTIONS, json=[row(f"before-{i}") for i in range(40)], headers=AUTH)
            assert before.status_code == 202
            until(lambda: accepted_in(database_url) == 40, "the rows before were not written")  # twice a second
            at_risk = 0
            with read_only_postgres(database_url):
                first = client.post(PREDICTIONS, json=[row(f"first-{i}") for i in range(20)], headers=AUTH)
                assert first.status_code == 202
                at_risk += 20
                # The flush loop's next tick finds that it cannot write, and says so.
                until(lambda: "ingest" in healthz(client)[1]["problems"], "health never named ingest")
                for batch in range(10):
                    answer = client.post(PREDICTIONS, json=[row(f"b{batch}-{i}") for i in range(20)], headers=AUTH)
                    if answer.status_code == 503:
                        break
                    assert answer.status_code == 202
                    at_risk += 20
                assert answer.status_code == 503
                assert BOUND <= at_risk < BOUND + 20  # taken until the bound was reached, then no more
                daemon.process.send_signal(signal.SIGKILL)
                daemon.process.wait(30)
        assert accepted_in(database_url) == 40  # what was written before stays; what was at risk is all that is lost
    finally:
        daemon.process.kill()
        daemon.process.wait(30)


def until(condition, failure: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def accepted_in(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            found = conn.scalar(sa.text("SELECT coalesce(sum(accepted), 0) FROM ingest_stats WHERE model = :m"), {"m": MODEL})
            return int(found)
    except sa.exc.ProgrammingError:  # not migrated yet
        return 0
    finally:
        engine.dispose()
