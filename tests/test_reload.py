"""Check files change under a running daemon: a reload (SIGHUP, or the watch seeing a file change)
applies an edited file without a restart, keeps a broken file's last good version running and tells
its owner, applies the mended one and resolves that, and ends a removed file's episodes with a notice.
The daemon config reloads too: owners and receivers apply, the keys opened at the start wait for the
next. The real daemon on a FixedClock (its reload called as the main loop calls it), SQLite and
PostgreSQL; then the real ``monitor run`` process, whose PID a SIGHUP keeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from deployments import CHECK_FILE, Deployment, deployments
from factories import T0, live_frame, write_project

from monitor.daemon.reload import FilesWatch
from monitor.storage.tables import Alert, Notification
from tests.test_ingest_api import AUTH, running, write_ingest_project

EVERY = timedelta(minutes=15)


def drift_check(*rules: dict) -> list[dict]:
    return [{"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h", "alert": list(rules)}]


@pytest.fixture
def deploy(tmp_path, database_url):
    def made(rules: list[dict]) -> Deployment:
        live = live_frame(4000, end=T0 + 4 * EVERY, span=timedelta(hours=3), drift=True)  # rows for every run here
        return Deployment(tmp_path, database_url, drift_check, rules, live=live)

    yield from deployments(made)


def run(d: Deployment) -> str:
    d.clock.advance(EVERY)
    model = d.daemon.project.checks.models["fraud-scorer"]
    result = d.daemon.evaluate(model, model.check("feature-drift"))
    d.daemon.outbox.deliver_due()
    return result.outcome


def rules_of(d: Deployment) -> list[str]:
    return [rule.when.text for rule in d.daemon.project.checks.models["fraud-scorer"].check("feature-drift").alert]


def test_an_edited_file_applies_at_a_reload_a_broken_one_keeps_its_last_good_version_and_its_owner_is_told(deploy):
    d = deploy({"when": "drift_share > 0.3", "severity": "critical"})
    assert run(d) == "breach"
    d.edit_rules({"when": "drift_share > 0.9", "severity": "critical"})
    found = d.daemon.reload()
    assert (found.changed, found.added, found.removed) == (["fraud-scorer/feature-drift"], [], [])
    assert rules_of(d) == ["drift_share > 0.9"]
    run(d)  # the new rule is the one judged: the old episode ends, as an edited rule's does
    episodes = {(a.rule, a.state) for a in d.rows(Alert)}
    assert ("drift_share > 0.3", "resolved") in episodes

    check_file = d.root / CHECK_FILE
    good = check_file.read_text()
    check_file.write_text(good.replace("every: 15m", "every: fortnightly", 1))  # broken
    found = d.daemon.reload()
    assert not found  # nothing rescheduled: the last good version keeps running
    assert rules_of(d) == ["drift_share > 0.9"] and run(d) in ("ok", "breach")
    [told] = [a for a in d.rows(Alert) if a.check == "check-files"]
    assert (told.state, told.owner) == ("firing", "fraud-team")
    assert "fraud-scorer.yaml does not load" in told.rule
    problems = d.daemon.health.problems()["check files"]
    assert "1 check file(s) do not load, their last good versions run: checks/fraud-scorer.yaml" in problems

    check_file.write_text(good.replace("drift_share > 0.9", "drift_share > 0.5"))  # mended, and edited
    d.daemon.reload()
    assert rules_of(d) == ["drift_share > 0.5"]
    [told] = [a for a in d.rows(Alert) if a.check == "check-files"]
    assert told.state == "resolved" and "check files" not in d.daemon.health.problems()


def test_a_removed_file_ends_its_episodes_with_a_notice(deploy):
    d = deploy({"when": "drift_share > 0.3"})
    assert run(d) == "breach"
    (d.root / CHECK_FILE).unlink()
    found = d.daemon.reload()
    d.daemon.outbox.deliver_due()
    assert found.removed == ["fraud-scorer/feature-drift"] and not d.daemon.project.checks.models
    [episode] = d.rows(Alert)
    assert (episode.state, episode.reason) == ("resolved", "model 'fraud-scorer' removed: no check file defines it")
    assert "no check file defines it" in d.console.getvalue()  # the notice, to the owner's receiver
    assert "checks" in d.daemon.health.problems()  # nothing is watched now, and /healthz says so


def test_the_watch_sees_a_file_edited_added_or_removed(tmp_path):
    config = write_project(tmp_path)
    watch = FilesWatch(config, tmp_path / "checks")
    assert not watch.changed()
    check_file = tmp_path / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(check_file.read_text())
    model["checks"][0]["every"] = "30m"
    check_file.write_text(yaml.safe_dump(model, sort_keys=False))
    assert watch.changed() and not watch.changed()  # once per change
    (tmp_path / "checks" / "other.yaml").write_text(check_file.read_text().replace("fraud-scorer", "other"))
    assert watch.changed()
    (tmp_path / "checks" / "other.yaml").unlink()
    assert watch.changed()
    config.write_text(config.read_text() + "\n# a comment\n")
    assert watch.changed()


def test_sighup_reloads_the_running_daemon_and_it_keeps_its_pid(tmp_path):
    config = write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC)))
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        daemon = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=err, env=env)  # fmt: skip
        try:
            wait_for(err_path, "monitor started", daemon)
            check_file = tmp_path / "checks" / "fraud-scorer.yaml"
            check_file.write_text(check_file.read_text().replace("p99_ms > 250", "p99_ms > 300"))
            daemon.send_signal(signal.SIGHUP)
            wait_for(err_path, "check files reloaded: 1 changed (fraud-scorer/latency)", daemon)
            for _ in range(200):  # a burst, as a loop of systemctl reload sends: it must neither hang nor die
                daemon.send_signal(signal.SIGHUP)
            wait_for(err_path, "check files reloaded: no check changed", daemon)
            config.write_text(config.read_text().replace("listen: 127.0.0.1:0", "listen: [broken"))
            daemon.send_signal(signal.SIGHUP)
            wait_for(err_path, "the daemon config on disk does not load, the running one is kept", daemon)
            assert daemon.poll() is None  # the same process, running on
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, err_path.read_text()
    assert "Traceback" not in err_path.read_text()


def wait_for(path, text: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert process.poll() is None and time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


def test_a_new_file_defining_a_running_model_does_not_take_it_over(deploy):
    d = deploy({"when": "drift_share > 0.3"})
    running = d.root / CHECK_FILE
    newcomer = running.with_name("aa-fraud-scorer.yaml")  # sorts first: the loader would take it
    newcomer.write_text(running.read_text().replace("drift_share > 0.3", "drift_share > 0.9"))
    d.daemon.reload()
    checks = d.daemon.project.checks
    assert checks.files["fraud-scorer"] == running and rules_of(d) == ["drift_share > 0.3"]
    [issue] = [i for i in checks.issues if "already defined" in i.message]
    assert Path(issue.file) == newcomer and str(running) in issue.message


def test_a_changed_daemon_config_applies_its_owners_and_receivers_and_says_what_waits_for_a_restart(deploy, caplog):
    d = deploy({"when": "drift_share > 0.3", "severity": "critical"})
    config = yaml.safe_load(d.config.read_text())
    config["owners"]["payments"] = {"mention": ["@sam"]}
    config["server"]["listen"] = "127.0.0.1:9999"
    d.config.write_text(yaml.safe_dump(config, sort_keys=False))
    check_file = d.root / CHECK_FILE
    check_file.write_text(check_file.read_text().replace("owner: fraud-team", "owner: payments"))

    with caplog.at_level("INFO", logger="monitor.daemon"):
        found = d.daemon.reload()

    # The check file names an owner only the new config has: it loads, so the new owners were applied first.
    assert found.changed == ["fraud-scorer/feature-drift"] and not d.daemon.project.checks.issues
    assert "payments" in d.daemon.project.config.owners
    assert d.daemon.project.config.server.listen == "127.0.0.1:0"  # opened at the start: kept
    assert "daemon config reloaded: owners applied" in caplog.text
    assert "the daemon config changed on disk: server take effect at the next start" in caplog.text
    assert run(d) == "breach"
    [alert] = d.rows(Alert)
    assert alert.owner == "payments"
    assert {n.receiver for n in d.rows(Notification)} == {"payments/console"}


def test_a_run_recorded_after_a_reload_removed_its_rule_leaves_no_episode_of_it_open(deploy):
    d = deploy({"when": "drift_share > 0.3", "severity": "critical"})
    model = d.daemon.project.checks.models["fraud-scorer"]
    running = model, model.check("feature-drift")  # the run in flight, as it began
    d.edit_rules({"when": "drift_share > 0.9", "severity": "critical"})
    d.daemon.reload()
    d.clock.advance(EVERY)
    result = d.daemon.evaluate(*running)  # recorded after the reload: it opens the old rule's episode
    assert [change.rule for change in result.changes] == ["drift_share > 0.3"]
    assert [(a.rule, a.state) for a in d.rows(Alert)] == [("drift_share > 0.3", "resolved")]


def test_a_model_added_by_a_reload_is_taken_by_the_api_and_on_the_status_page(tmp_path):
    config = write_ingest_project(tmp_path)
    with running(config) as (daemon, client):
        added = yaml.safe_load((tmp_path / "checks" / "scorer.yaml").read_text())
        added["model"] = "scorer-v2"
        (tmp_path / "checks" / "scorer-v2.yaml").write_text(yaml.safe_dump(added, sort_keys=False))
        row = {"id": "a", "ts": time.time() - 30, "features": {"amount": 1.0, "country": "DE"}, "prediction": 0.1}
        assert client.post("/v1/models/scorer-v2/predictions", json=[row], headers=AUTH).status_code == 404
        daemon.reload()
        assert client.post("/v1/models/scorer-v2/predictions", json=[row], headers=AUTH).status_code == 202
        assert "scorer-v2" in client.get("/", headers=AUTH).text
