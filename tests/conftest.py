"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured), and a model
project on disk (config, check file, reference and live data) made by tests/factories.py; the
environment for a subprocess that runs this checkout's ``monitor``; and tests whose real process
starts before the first test (``@pytest.mark.background``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.cli import single_threaded_numerics

single_threaded_numerics()  # as the monitor command does, before numpy loads: the daemons tests start are its own

from monitor.storage import db  # noqa: E402 - after the numeric libraries' threads are set

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


def _postgres_database():
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"monitor_test_{uuid.uuid4().hex[:12]}"  # generated, never user text
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    if not PG_URL:
        pytest.skip(PG_HINT)
    yield from _postgres_database()


@pytest.fixture
def engine(database_url):
    """An engine on a database migrated to head."""
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path):
    """A migrated SQLite database, for tests whose subject is not the database."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    db.upgrade(engine)
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
