"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured), and a model
project on disk (config, check file, reference and live data) made by tests/factories.py."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from monitor.storage import db

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
