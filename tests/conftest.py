"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured), and a model
project on disk (config, check file, reference and live data) made by tests/factories.py; the
environment for a subprocess that runs this checkout's ``monitor``; and tests whose real process
starts before the first test (``@pytest.mark.background``)."""

from __future__ import annotations

import os
import queue
import shutil
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.cli import single_threaded_numerics

single_threaded_numerics()  # as the monitor command does, before numpy loads: the daemons tests start are its own

from monitor.storage import db  # noqa: E402 - after the numeric libraries' threads are set
from monitor.storage.tables import Installation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def checkout_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) for a subprocess that runs ``python -m monitor``
    (or imports ``monitor``): this checkout's root first on PYTHONPATH, before any entries already
    there, so the subprocess runs the code under test and not whichever copy is pip-installed."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


PG_URL = os.environ.get("MONITOR_TEST_POSTGRES_URL", "")
PG_HINT = (
    "PostgreSQL tests are off: set MONITOR_TEST_POSTGRES_URL to a server you may create databases on, "
    "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (.ci/run does)"
)


def _postgres_database(template: str | None = None):
    """A fresh PostgreSQL database for one test, empty or a copy of ``template``; dropped afterwards."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"monitor_test_{uuid.uuid4().hex[:12]}"  # generated, never user text
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class _Copies:
    """Copies of the migrated PostgreSQL template, made ahead on a thread of their own and dropped on it
    after their test: a copy takes about a tenth of a second, most of a PostgreSQL test's setup, and the
    thread makes the next one while the test runs."""

    AHEAD = 2

    def __init__(self, template: str) -> None:
        self.template = template
        self._ready: queue.Queue[str] = queue.Queue(maxsize=self.AHEAD)
        self._used: queue.Queue[str | None] = queue.Queue()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pg-copies", daemon=True)
        self._thread.start()

    def take(self) -> str:
        """The URL of a fresh copy, migrated to head."""
        while True:
            try:
                name = self._ready.get(timeout=1)
                return sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
            except queue.Empty:
                if self._failed is not None:
                    raise RuntimeError(f"copies of {self.template} failed") from self._failed

    def give_back(self, url: str) -> None:
        self._used.put(sa.make_url(url).database)

    def close(self) -> None:
        self._used.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                while True:
                    try:  # drops first, then a copy when one is wanted
                        used = self._used.get(timeout=0.05 if self._ready.full() else 0)
                    except queue.Empty:
                        used = ""
                    if used is None:
                        break
                    if used:
                        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{used}" WITH (FORCE)'))
                    elif not self._ready.full():
                        name = f"monitor_test_{uuid.uuid4().hex[:12]}"  # generated, never user text
                        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
                        self._ready.put(name)
                while not self._ready.empty():
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._ready.get()}" WITH (FORCE)'))
        except BaseException as exc:  # told to the next take()
            self._failed = exc
        finally:
            admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty database: a SQLite file, or a new PostgreSQL database; for a test that also asks for
    ``engine``, the same database migrated to head (a copy of the session's migrated one)."""
    migrated = request.getfixturevalue("migrated") if "engine" in request.fixturenames else None
    if request.param == "sqlite":
        if migrated is not None:
            shutil.copyfile(migrated["sqlite"], tmp_path / "monitor.db")
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    if not PG_URL:
        pytest.skip(PG_HINT)
    if migrated is None:
        yield from _postgres_database()
        return
    copies: _Copies = migrated["postgres"]
    url = copies.take()
    try:
        yield url
    finally:
        copies.give_back(url)


@pytest.fixture(scope="session")
def migrated(tmp_path_factory):
    """Databases migrated to head once per session, which each test's ``engine`` is a copy of (a copy
    costs a third of a migration): a SQLite file, and a PostgreSQL template database when configured."""
    path = tmp_path_factory.mktemp("migrated") / "monitor.db"
    engine = db.create_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()  # the last connection closed: the WAL is folded into the file
    made = {"sqlite": path}
    databases = _postgres_database() if PG_URL else None
    if databases is not None:
        url = next(databases)
        engine = db.create_engine(url)
        db.upgrade(engine)
        engine.dispose()  # a template must have no connection when it is copied
        made["postgres"] = _Copies(sa.make_url(url).database or "")
    yield made
    if databases is not None:
        made["postgres"].close()
        next(databases, None)  # drops the template


def _migrated_copy(url: str) -> sa.Engine:
    """An engine on ``url``, a copy of the migrated database, with an installation id of its own (as a
    database migrated by itself would have)."""
    engine = db.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(Installation).values(id=str(uuid.uuid4())))
    return engine


@pytest.fixture
def engine(database_url):
    """An engine on a database migrated to head: ``database_url``'s, which for a test that asks for an
    engine is a copy of the session's migrated database."""
    engine = _migrated_copy(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path, migrated):
    """A migrated SQLite database, for tests whose subject is not the database."""
    shutil.copyfile(migrated["sqlite"], tmp_path / "monitor.db")
    engine = _migrated_copy(f"sqlite:///{tmp_path / 'monitor.db'}")
    yield engine
    engine.dispose()


# --- real runs started before the first test ---------------------------------------------------------
# A test of a long real run that mostly waits on its own clock (`monitor demo`: about a minute) is
# marked ``@pytest.mark.background(start=start)``. ``start()`` is called as soon as collection is done and
# returns the run (anything with a ``stop()``); the test is moved to the end and gets the run from the
# ``background`` fixture, so the run goes on alongside the other tests instead of after them. The test
# asserts what it would if it had started the run itself, which it does when nothing started it early
# (an xdist worker, say). Runs still going when the session ends (-x, Ctrl-C) are stopped.

BACKGROUND = pytest.StashKey[object]()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "background(start=fn): fn() starts the test's real run when collection ends; the test runs last"
    )


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)  # stable: the rest keep their order


def pytest_collection_finish(session):
    if session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return
    for item in session.items:
        marker = item.get_closest_marker("background")
        if marker is not None:
            item.stash[BACKGROUND] = marker.kwargs["start"]()


def pytest_sessionfinish(session):
    for item in getattr(session, "items", []):
        run = item.stash.get(BACKGROUND, None)
        if run is not None:
            run.stop()


@pytest.fixture
def background(request):
    """The test's run, started when collection ended (or now, if nothing started it)."""
    if BACKGROUND not in request.node.stash:
        request.node.stash[BACKGROUND] = request.node.get_closest_marker("background").kwargs["start"]()
    return request.node.stash[BACKGROUND]


# -- receivers' peers on loopback: a Slack Web API (wall-clock timestamps), a pager endpoint, SMTP ------
SLACK_TOKEN = "xoxb-test"


@pytest.fixture
def slack():
    """The Slack Web API on loopback (tests/fakes/slack_api.py); a test whose clock is fixed and that
    needs Slack's timestamps to follow it makes its own (test_slack_delivery.py)."""
    from fakes.slack_api import FakeSlackAPI

    server = FakeSlackAPI(SLACK_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def pager():
    """An HTTP endpoint taking webhook events, answering 202 (tests/fakes/pager.py)."""
    from fakes.pager import PagerEndpoint

    endpoint = PagerEndpoint().start()
    yield endpoint
    endpoint.stop()
