"""Monitoring that breaks tells someone: a check that fails ``alert_after`` runs in a row (errors, or
lacks data for a reason the daemon does not expect) alerts its owner with the error and is a problem
on /healthz, and the first good run resolves both; a skipped check file is a problem on /healthz. The real daemon's evaluations over a files source on a FixedClock, told on the
console receiver; SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from deployments import Deployment, deployments
from factories import T0, live_frame

from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.storage.tables import Alert, CheckRun

EVERY = timedelta(minutes=15)


def drift_check(*rules: dict, alert_after: int | None = None) -> list[dict]:
    check = {"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h", "alert": list(rules)}
    if alert_after is not None:
        check["alert_after"] = alert_after
    return [check]


@pytest.fixture
def deploy(tmp_path, database_url):
    def made(rules: list[dict]) -> Deployment:
        return Deployment(tmp_path, database_url, drift_check, rules, live=live_frame(1200, end=T0 + EVERY))

    yield from deployments(made)


def write_good_rows(deployment: Deployment) -> None:
    """Rows for the next run's window (the batch job is mended)."""
    end = deployment.clock.now() + EVERY
    live_frame(1200, end=end).to_parquet(deployment.root / "data" / "live-0001.parquet")


def run(deployment: Deployment) -> str:
    deployment.clock.advance(EVERY)
    daemon = deployment.daemon
    model = daemon.project.checks.models["fraud-scorer"]
    result = daemon.evaluate(model, model.check("feature-drift"))
    daemon.outbox.deliver_due()
    return result.outcome


def test_a_check_failing_three_runs_in_a_row_tells_its_owner_why_and_its_recovery_resolves_it(deploy):
    deployment = deploy({"when": "drift_share > 0.9"})
    data = deployment.root / "data" / "live-0001.parquet"
    assert run(deployment) == "ok"
    data.write_bytes(b"not parquet at all")  # the batch job wrote garbage
    outcomes = [run(deployment) for _ in range(3)]
    assert set(outcomes) <= {"error", "insufficient_data"}, outcomes

    [alert] = [a for a in deployment.rows(Alert) if a.rule_key == "check-failing"]
    assert (alert.state, alert.severity, alert.rule, alert.last_value) == ("firing", "warning", "failing_runs >= 3", 3.0)
    told = deployment.console.getvalue()
    assert "[FIRING warning] fraud-scorer / feature-drift: failing_runs = 3" in told
    [last] = deployment.rows(CheckRun)[-1:]
    assert last.error and last.error.splitlines()[0] in told  # the error itself, in the message
    # ... and the daemon's own health says so (/healthz, the status page).
    problem = deployment.daemon.health.problems()["check fraud-scorer/feature-drift"]
    assert problem.startswith("its last 3 runs failed: ")

    write_good_rows(deployment)
    assert run(deployment) == "ok"
    [alert] = [a for a in deployment.rows(Alert) if a.rule_key == "check-failing"]
    assert alert.state == "resolved"
    assert "[RESOLVED] fraud-scorer / feature-drift: failing_runs = 0" in deployment.console.getvalue()
    assert "check fraud-scorer/feature-drift" not in deployment.daemon.health.problems()


def test_two_failed_runs_and_a_good_one_tell_nobody(deploy):
    deployment = deploy({"when": "drift_share > 0.9"})
    data = deployment.root / "data" / "live-0001.parquet"
    data.write_bytes(b"garbage")
    run(deployment), run(deployment)
    write_good_rows(deployment)
    assert run(deployment) == "ok"
    data.write_bytes(b"garbage")
    run(deployment), run(deployment)
    assert not [a for a in deployment.rows(Alert) if a.rule_key == "check-failing"]
    assert "failing_runs" not in deployment.console.getvalue()


def test_a_skipped_check_file_alerts_its_owner_and_is_a_problem_of_the_daemon(deploy):
    deployment = deploy({"when": "drift_share > 0.9"})
    (deployment.root / "checks" / "broken.yaml").write_text("model: other\nowner: fraud-team\nchecks: []\n")
    broken = deployment.root / "checks" / "broken.yaml"
    daemon = Daemon(Project.load(deployment.config), clock=deployment.clock, console=deployment.console)
    daemon.prepare()
    daemon.outbox.deliver_due()
    daemon.engine.dispose()
    # Its owner (the file names one the config knows) is told, with the file's problems.
    told = deployment.console.getvalue()
    assert "ALERT for fraud-team\n[FIRING critical] (monitor) / check-files / checks/broken.yaml: failing = 1" in told
    assert "checks/broken.yaml:3:9: checks: add at least one item" in told
    broken.unlink()  # mended (here: removed); the next start resolves it
    daemon = Daemon(Project.load(deployment.config), clock=deployment.clock, console=deployment.console)
    daemon.prepare()
    daemon.outbox.deliver_due()
    daemon.engine.dispose()
    assert "[RESOLVED] (monitor) / check-files / checks/broken.yaml: failing = 0" in deployment.console.getvalue()
    assert "check files" not in daemon.health.problems()
    broken.write_text("model: other\nowner: fraud-team\nchecks: []\n")
    daemon = Daemon(Project.load(deployment.config), clock=deployment.clock, console=deployment.console)
    daemon.prepare()
    daemon.engine.dispose()
    assert daemon.health.problems()["check files"].startswith(
        "1 check file(s) skipped, their models not watched: checks/broken.yaml"
    )


def test_a_failing_check_joins_its_open_incident_which_keeps_its_severity(deploy):
    deployment = deploy({"when": "drift_share > 0.3", "severity": "critical"})
    data = deployment.root / "data" / "live-0001.parquet"
    live_frame(1200, end=deployment.clock.now() + EVERY, drift=True).to_parquet(data)
    assert run(deployment) == "breach"
    data.write_bytes(b"not parquet at all")
    for _ in range(3):
        run(deployment)
    alerts = deployment.rows(Alert)
    assert {a.incident_id for a in alerts} == {alerts[0].id}  # one incident: the drift's
    told = deployment.console.getvalue()
    # The update leads with the incident's worst episode, still critical, and lists the failing check.
    assert "[UPDATED critical] fraud-scorer / feature-drift: drift_share = 0.6667 (+1 more)" in told
    assert "also firing: failing_runs >= 3, 3 (warning)" in told
    assert "severity lowered" not in told


def test_a_check_that_has_not_run_for_twice_its_interval_alerts_its_owner_until_it_runs(deploy):
    deployment = deploy({"when": "drift_share > 0.9"})
    daemon = deployment.daemon
    daemon.watch_schedule()  # just started: nothing is late yet
    assert "not running" not in " ".join(daemon.health.problems())
    deployment.clock.advance(2 * EVERY + timedelta(seconds=1))  # its workers were held: no run for 30m1s
    daemon.watch_schedule()
    daemon.outbox.deliver_due()
    told = deployment.console.getvalue()
    assert "[FIRING critical] (monitor) / schedule / fraud-scorer/feature-drift: failing = 1" in told
    assert "it has not run since the daemon started; it runs every 15m" in told
    assert "check fraud-scorer/feature-drift not running" in daemon.health.problems()

    run(deployment)
    daemon.watch_schedule()
    daemon.outbox.deliver_due()
    assert "[RESOLVED] (monitor) / schedule / fraud-scorer/feature-drift: failing = 0" in deployment.console.getvalue()
    assert "check fraud-scorer/feature-drift not running" not in daemon.health.problems()
