"""A fresh deploy does not alert on traffic it could not have seen: over the ingest source, a volume
check is insufficient_data for its start_grace (one window unless set) after the daemon first
watched the model, then counts as usual. Real SQLite, a FixedClock."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from factories import T0

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project


def ingest_project(root, **volume) -> Project:
    (root / "checks").mkdir()
    (root / "config.yaml").write_text(
        yaml.safe_dump({"database": {"url": f"sqlite:///{root / 'monitor.db'}"}, "owners": {"team": {}}})
    )
    check = {"name": "volume", "kind": "volume", "every": "1m", "window": "10m", "alert": [{"when": "rows < 100"}], **volume}
    model = {"model": "stream", "owner": "team", "source": {"kind": "ingest", "features": ["u"]}, "checks": [check]}
    (root / "checks" / "stream.yaml").write_text(yaml.safe_dump(model))
    project = Project.load(root / "config.yaml")
    assert not project.checks.issues, project.checks.issues
    return project


def runs(evaluator: Evaluator, project: Project, clock: FixedClock, minutes: list[int]):
    model = project.checks.models["stream"]
    out = []
    for minute in minutes:
        clock.set(T0 + timedelta(minutes=minute))
        out.append(evaluator.run(model, model.check("volume")))
    return out


def test_a_fresh_deploy_waits_one_window_before_it_counts_silence(tmp_path, sqlite_engine):
    project = ingest_project(tmp_path)
    clock = FixedClock(T0)
    evaluator = Evaluator(sqlite_engine, project.config, clock)
    first, early, due = runs(evaluator, project, clock, [0, 9, 10])
    assert (first.outcome, first.changes) == ("insufficient_data", [])
    assert first.evaluation.error == (
        "the daemon watches stream from now on, less than this check's start_grace of 10m: "
        "a count over time it did not watch would read as silence"
    )
    assert early.outcome == "insufficient_data" and "watches stream for 9m, less than" in early.evaluation.error
    # One whole window watched and still no row: that is silence, and it alerts.
    assert due.outcome == "breach" and [c.state for c in due.changes] == ["firing"]


def test_the_grace_survives_a_restart_and_can_be_set(tmp_path, sqlite_engine):
    project = ingest_project(tmp_path, start_grace="3m")
    clock = FixedClock(T0)
    runs(Evaluator(sqlite_engine, project.config, clock), project, clock, [0])
    # A new process: the first recorded run, not the process start, says since when the model is watched.
    [later] = runs(Evaluator(sqlite_engine, project.config, clock), project, clock, [3])
    assert later.outcome == "breach"


@pytest.mark.parametrize("grace", ["0s", "1h", None])
def test_a_files_source_counts_from_the_first_run(tmp_path, sqlite_engine, grace):
    """A batch job's files hold rows from before the daemon ran: there is nothing to wait for."""
    from factories import live_frame, write_project

    check = {"name": "volume", "kind": "volume", "every": "1m", "window": "10m", "alert": [{"when": "rows < 100"}]}
    if grace:
        check["start_grace"] = grace
    project = Project.load(write_project(tmp_path, live=live_frame(10, end=T0), checks=[check]))
    model = project.checks.models["fraud-scorer"]
    result = Evaluator(sqlite_engine, project.config, FixedClock(T0)).run(model, model.check("volume"))
    assert result.outcome == "breach"
