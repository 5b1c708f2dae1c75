"""A model project on disk whose one check's rules a test sets and edits, restarted as often as the test
likes: each start is a new Daemon, as `monitor run` makes it, on a FixedClock with the console receiver
captured."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator, RunResult
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.storage import db
from monitor.storage.tables import Alert, Notification

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


# -- a pipeline: the evaluator and the outbox on one project, driven by the test ----------------------
ROWS = 1200
RESOLVED_AT = T0 + timedelta(hours=2)


def reopen(engine: Engine) -> Engine:
    """A new engine on the same database, as a restarted process would make."""
    return db.create_engine(engine.url.render_as_string(hide_password=False))


@dataclass
class Pipeline:
    project: Project
    engine: Engine
    clock: FixedClock
    evaluator: Evaluator
    outbox: Outbox

    @property
    def model(self):
        return self.project.checks.models["fraud-scorer"]

    def evaluate(self, check: str = "feature-drift") -> RunResult:
        return self.evaluator.run(self.model, self.model.check(check))

    def deliver(self) -> int:
        return self.outbox.deliver_due()

    def resolve(self, check: str = "feature-drift") -> RunResult:
        """Non-drifted rows for the hour before T0+2h, the clock moved there, and an evaluation."""
        live_frame(ROWS, end=RESOLVED_AT, drift=False, seed=3).to_parquet(self.project.base_dir / "data" / "live-0001.parquet")
        self.clock.set(RESOLVED_AT)
        return self.evaluate(check)

    def restart(self) -> Pipeline:
        """The process died: a new engine, new notifiers and a new outbox (the old ones are dropped)."""
        self.engine.dispose()
        engine = reopen(self.engine)
        return Pipeline(
            self.project,
            engine,
            self.clock,
            Evaluator(engine, self.project.config, self.clock),
            Outbox(engine, Receivers(self.project.config), self.clock, per_minute=self.outbox.per_minute),
        )

    def notifications(self) -> list[Notification]:
        with Session(self.engine) as session:
            return list(session.scalars(sa.select(Notification).order_by(Notification.id)))

    def alerts(self) -> list[Alert]:
        with Session(self.engine) as session:
            return list(session.scalars(sa.select(Alert).order_by(Alert.id)))
