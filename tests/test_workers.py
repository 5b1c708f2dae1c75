"""``processes: N``: windows read and checks computed in worker processes, judged and recorded by the
daemon. Real spawned processes on a project on disk:

- a worker's evaluation is the daemon's own, number for number, and the run is recorded as ever;
- until the workers have started, and for a kind that waits on something outside, runs are computed
  in the daemon's process;
- a worker killed with SIGKILL loses no run: the pool starts again, and that run is computed in the
  daemon's process.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import yaml

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.daemon.workers import Workers
from monitor.storage import db
from tests.factories import T0, live_frame, write_project


@pytest.fixture
def project(tmp_path):
    config = write_project(tmp_path, live=live_frame(1200, end=T0, drift=True))
    data = yaml.safe_load(config.read_text())
    data["processes"] = 2
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return Project.load(config)


@pytest.fixture
def evaluator(project):
    """The daemon's own evaluator on the project's database, migrated."""
    engine = db.create_engine(project.config.database.url)
    db.upgrade(engine)
    yield Evaluator(engine, project.config, FixedClock(T0))
    engine.dispose()


def started(workers: Workers, timeout: float = 60.0) -> Workers:
    """The workers once each has loaded the project (they are processes: this waits for them, not a clock)."""
    deadline = time.monotonic() + timeout
    while not workers.ready():
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    return workers


def test_a_workers_evaluation_is_the_daemons_own_and_is_recorded(project, evaluator, monkeypatch):
    assert project.config.processes == 2
    model = project.checks.models["fraud-scorer"]
    start, end = model.check("feature-drift").bounds(T0)
    here = evaluator.read_and_compute(model, model.check("feature-drift"), start, end)
    workers = started(Workers(project.config_path, 2, evaluator))
    try:

        def not_here(*args):
            raise AssertionError("computed in the daemon's process")

        monkeypatch.setattr(evaluator, "read_and_compute", not_here)
        workers.fallback = evaluator
        there = workers.compute(model, model.check("feature-drift"), start, end)
        outcomes = [e.outcome for e in there.evaluations], [e.outcome for e in here.evaluations]
        assert outcomes == (["ok"], ["ok"]), there.evaluations[0].error
        # Evidently sums a categorical column's terms in the order of a Python set, which differs between
        # processes (hash randomization): the worker's numbers are the daemon's to the last bit or two.
        there_values, here_values = there.evaluations[0].values, here.evaluations[0].values
        assert [(v.metric, v.feature) for v in there_values] == [(v.metric, v.feature) for v in here_values]
        assert [v.value for v in there_values] == pytest.approx([v.value for v in here_values], rel=1e-12, abs=1e-15)
        verdicts = [[(f["feature"], f["drifted"]) for f in e.evaluations[0].evidence["features"]] for e in (there, here)]
        assert verdicts[0] == verdicts[1]
        evaluator.compute = workers.compute
        result = evaluator.run(model, model.check("feature-drift"))
        assert (result.outcome, result.run_id is not None) == ("breach", True)
    finally:
        workers.close()


def test_a_worker_killed_loses_no_run(project, evaluator):
    model = project.checks.models["fraud-scorer"]
    check = model.check("latency")
    start, end = check.bounds(T0)
    workers = started(Workers(project.config_path, 2, evaluator))
    try:
        before = list(workers._pools)
        for pool in before:  # every worker, mid-life
            for pid in list(pool._processes):
                os.kill(pid, signal.SIGKILL)
        after = workers.compute(model, check, start, end)  # computed here, its worker started anew
        assert [e.outcome for e in after.evaluations] == ["ok"]
        assert sum(a is not b for a, b in zip(workers._pools, before, strict=True)) == 1
        started(workers)
        assert [e.outcome for e in workers.compute(model, check, start, end).evaluations] == ["ok"]
    finally:
        workers.close()


def test_runs_are_computed_here_until_the_workers_have_started(project, evaluator):
    model = project.checks.models["fraud-scorer"]
    check = model.check("latency")
    workers = Workers(project.config_path, 1, evaluator)
    try:
        assert not workers.ready()  # spawning an interpreter and loading the project takes a second or more
        start, end = check.bounds(T0)
        assert [e.outcome for e in workers.compute(model, check, start, end).evaluations] == ["ok"]
    finally:
        workers.close()
