"""A model project on disk whose one check's rules a test sets and edits, restarted as often as the test
likes: each start is a new Daemon, as `monitor run` makes it, on a FixedClock with the console receiver
captured."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import yaml
from factories import T0, write_project
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon

CHECK_FILE = Path("checks") / "fraud-scorer.yaml"


class Deployment:
    """``checks_with(*rules)`` is the check file's checks with those rules; ``live`` the first data file."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        checks_with: Callable[..., list[dict]],
        rules: list[dict],
        *,
        live: pd.DataFrame | None = None,
    ) -> None:
        self.root = root
        self.checks_with = checks_with
        self.config = write_project(root, live=live, checks=checks_with(*rules), database_url=database_url)
        self.clock = FixedClock(T0)
        self.console = io.StringIO()
        self.daemon: Daemon | None = None
        self.restart()

    def restart(self) -> Daemon:
        """What `monitor run` does before its first evaluation: load, migrate, close orphans."""
        if self.daemon is not None:
            self.daemon.engine.dispose()
        project = Project.load(self.config)
        assert not project.checks.issues, project.checks.issues
        self.daemon = Daemon(project, clock=self.clock, console=self.console)
        self.daemon.prepare()
        return self.daemon

    def edit_rules(self, *rules: dict) -> None:
        path = self.root / CHECK_FILE
        model = yaml.safe_load(path.read_text())
        model["checks"] = self.checks_with(*rules)
        path.write_text(yaml.safe_dump(model, sort_keys=False))

    def rows(self, table) -> list:
        with Session(self.daemon.engine) as session:
            return list(session.scalars(sa.select(table).order_by(table.id)))


def deployments(deploy: Callable[[list[dict]], Deployment]) -> Iterator[Callable[..., Deployment]]:
    """A fixture's maker of deployments (``deploy(rules)``), each one's engine disposed after the test."""
    made: list[Deployment] = []

    def make(*rules: dict) -> Deployment:
        made.append(deploy(list(rules)))
        return made[-1]

    yield make
    for d in made:
        d.daemon.engine.dispose()
