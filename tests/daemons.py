"""A real daemon for tests that talk to it over its sockets: started, given its start-up runs, stopped."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.storage.tables import CheckRun


@contextmanager
def serving(config: Path, *, clean: bool = False, **daemon_kwargs) -> Iterator[tuple[Daemon, httpx.Client]]:
    """The daemon on loopback, once every check has had its start-up run (so a test's own runs come
    after), and a client of its API. ``clean``: every check file of the project must load."""
    daemon = Daemon(Project.load(config), console=io.StringIO(), **daemon_kwargs)
    if clean:
        assert not daemon.project.checks.issues, daemon.project.checks.issues
    checks = sum(len(m.checks) for m in daemon.project.checks.models.values())
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while checks and time.monotonic() < deadline:
            with daemon.engine.connect() as conn:
                if conn.scalar(sa.select(sa.func.count()).select_from(CheckRun)) >= checks:
                    break
            time.sleep(0.02)
        with httpx.Client(base_url=daemon.http.url, timeout=30) as client:
            yield daemon, client
    finally:
        daemon.stop()
