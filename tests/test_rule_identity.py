"""A rule keeps its identity across edits, and an edit never leaves an alert firing for ever.

A rule is known by its ``id:``, else by its condition in canonical form. When a file changes so that
an open episode's rule, check or feature is gone, the daemon closes that episode at start with a
notice saying why; ``monitor alerts close ID --reason`` does the same by hand. Every change of an
episode names the version it read, so two writers never both win. Real SQLite and PostgreSQL, a
FixedClock, the console receiver captured.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from deployments import CHECK_FILE, Deployment, deployments
from factories import T0, live_frame
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from monitor.cli import main
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.storage.tables import Alert, Notification


def drift_check(*rules: dict) -> list[dict]:
    return [{"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h", "alert": list(rules)}]


class DriftDeployment(Deployment):
    """A project on disk with one drift check over drifted live rows."""

    def __init__(self, root: Path, database_url: str, rules: list[dict]) -> None:
        super().__init__(root, database_url, drift_check, rules, live=live_frame(1200, end=T0, drift=True))

    def evaluate(self):
        daemon = self.daemon
        model = daemon.project.checks.models["fraud-scorer"]
        result = daemon.evaluator.run(model, model.check("feature-drift"))
        daemon.outbox.deliver_due()
        return result


@pytest.fixture
def deployment(tmp_path, database_url):
    yield from deployments(lambda rules: DriftDeployment(tmp_path, database_url, rules))


def test_editing_a_firing_rules_threshold_closes_the_old_episode_with_the_reason(deployment, capsys):
    d = deployment({"when": "drift_share > 0.3", "severity": "critical"})
    assert d.evaluate().outcome == "breach"
    [old] = d.rows(Alert)
    assert old.state == "firing"

    d.edit_rules({"when": "drift_share > 0.5", "severity": "critical"})
    d.clock.advance(timedelta(minutes=15))
    d.restart()
    d.daemon.outbox.deliver_due()

    [closed] = d.rows(Alert)
    assert (closed.id, closed.state) == (old.id, "resolved")
    assert closed.reason == f"rule removed or its condition changed in {CHECK_FILE}"
    assert closed.resolved == T0 + timedelta(minutes=15)
    firing, closing = d.rows(Notification)
    assert (firing.event, closing.event) == ("firing", "resolved")
    assert closing.receiver == firing.receiver and closing.status == "sent"
    assert "[CLOSED] fraud-scorer / feature-drift: drift_share = " in d.console.getvalue()
    assert f"rule removed or its condition changed in {CHECK_FILE}" in d.console.getvalue()

    # The new rule is evaluated on its own episode; nothing is left orphaned.
    result = d.evaluate()
    assert [(c.rule, c.state) for c in result.changes] == [("drift_share > 0.5", "firing")]
    capsys.readouterr()
    assert main(["alerts", "--config", str(d.config)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 and "drift_share > 0.5" in listed[0] and f"#{old.id} " not in listed[0]


def test_a_rule_with_an_id_keeps_its_episode_when_its_threshold_changes(deployment):
    d = deployment({"id": "share", "when": "drift_share > 0.3", "severity": "critical"})
    d.evaluate()
    [episode] = d.rows(Alert)

    d.edit_rules({"id": "share", "when": "drift_share > 0.35", "severity": "critical"})
    d.clock.advance(timedelta(minutes=15))
    d.restart()
    result = d.evaluate()

    [same] = d.rows(Alert)
    assert (same.id, same.state, same.rule, same.threshold) == (episode.id, "firing", "drift_share > 0.35", 0.35)
    assert result.changes == []  # still firing: nobody is told again
    assert [n.event for n in d.rows(Notification)] == ["firing"]


def test_respacing_a_condition_is_the_same_rule(deployment):
    d = deployment({"when": "drift_share > 0.3"})
    d.evaluate()
    d.edit_rules({"when": "drift_share>0.30"})
    d.restart()
    d.evaluate()
    [episode] = d.rows(Alert)
    assert episode.state == "firing" and episode.reason is None


def test_a_pending_episode_of_a_removed_rule_ends_quietly(deployment):
    d = deployment({"when": "drift_share > 0.3", "for": "1h"})
    d.evaluate()
    assert [a.state for a in d.rows(Alert)] == ["pending"]
    d.edit_rules({"when": "drift_share > 0.9"})
    d.restart()
    [closed] = d.rows(Alert)
    assert closed.state == "resolved" and closed.reason.startswith("rule removed")
    assert d.rows(Notification) == []  # it never fired, so nobody had been told


def test_alerts_close_by_hand_tells_the_receivers_why(deployment, capsys):
    d = deployment({"when": "drift_share > 0.3", "severity": "critical"})
    d.evaluate()
    [alert] = d.rows(Alert)
    capsys.readouterr()

    assert main(["alerts", "--config", str(d.config), "close", str(alert.id), "--reason", "data set retired"]) == 0
    out = capsys.readouterr().out
    assert f"alert #{alert.id} fraud-scorer/feature-drift closed: closed by hand: data set retired" in out
    [closed] = d.rows(Alert)
    assert (closed.state, closed.reason) == ("resolved", "closed by hand: data set retired")
    assert [n.event for n in d.rows(Notification)] == ["firing", "resolved"]

    assert main(["alerts", "--config", str(d.config), "close", str(alert.id), "--reason", "again"]) == 1
    assert f"alert #{alert.id} is not open (it is resolved)" in capsys.readouterr().err


def test_alerts_lists_age_and_deliveries_and_show_gives_the_history_of_one(deployment, capsys):
    d = deployment({"when": "drift_share > 0.3", "severity": "critical"})
    d.evaluate()
    d.daemon.outbox.deliver_due()
    [alert] = d.rows(Alert)
    capsys.readouterr()

    assert main(["alerts", "--config", str(d.config)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"#{alert.id:<5} firing    critical fraud-scorer/feature-drift")
    assert "since 2026-11-25 12:00 UTC (" in line and line.endswith("ago)  told: 1 sent")

    assert main(["alerts", "--config", str(d.config), "show", str(alert.id)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"#{alert.id} firing critical  fraud-scorer/feature-drift"
    assert out[1] == "  rule: drift_share > 0.3 (threshold 0.3), last value 0.6667"
    assert out[3] == f"  incident #{alert.id}: no other episode"
    assert out[4:6] == [
        "  values of drift_share at each run, newest first (1):",
        "    2026-11-25 12:00:00 UTC        0.6667  over 1h",
    ]
    assert out[6] == "  deliveries of its incident (1):"
    assert out[7].startswith("    #1 firing   fraud-team/console") and "sent     1 attempt(s)" in out[7]
    assert out[8] == "      2026-11-25 12:00:00 UTC  sent"  # each attempt, with what came of it

    assert main(["alerts", "--config", str(d.config), "show", "999"]) == 1
    assert "alert #999 does not exist" in capsys.readouterr().err


def test_a_change_made_meanwhile_by_another_writer_wins_and_the_stale_one_is_refused(deployment):
    d = deployment({"when": "drift_share > 0.3"})
    d.evaluate()
    engine = d.daemon.engine
    with Session(engine) as first, Session(engine) as second:
        mine = first.get(Alert, 1)
        theirs = second.get(Alert, 1)
        assert mine.version == theirs.version
        theirs.state, theirs.reason = "resolved", "closed by the other writer"
        second.commit()
        mine.last_value = 0.99
        with pytest.raises(StaleDataError):
            first.commit()
    [alert] = d.rows(Alert)
    assert (alert.state, alert.reason, alert.last_value) == ("resolved", "closed by the other writer", alert.last_value)
    assert alert.version == 3  # created, moved by the evaluation's flush, closed


def test_a_removed_model_is_closed_only_when_every_check_file_loaded(deployment, tmp_path):
    d = deployment({"when": "drift_share > 0.3"})
    d.evaluate()
    (tmp_path / CHECK_FILE).write_text("model: fraud-scorer\nowner: [broken\n")  # a file that does not load
    project = Project.load(d.config)
    assert project.checks.issues and not project.checks.models
    daemon = Daemon(project, clock=d.clock, console=d.console)
    daemon.prepare()
    drift, broken = d.rows(Alert)
    assert drift.state == "firing"  # it may be the broken file's model: it waits
    assert (broken.model, broken.check, broken.state) == ("(monitor)", "check-files", "firing")  # the file's own alert

    (tmp_path / CHECK_FILE).unlink()
    daemon = Daemon(Project.load(d.config), clock=d.clock, console=d.console)
    daemon.prepare()
    closed, gone = d.rows(Alert)
    assert (closed.state, closed.reason) == ("resolved", "model 'fraud-scorer' removed: no check file defines it")
    assert gone.state == "resolved"  # the file is gone: nothing fails to load any more
    daemon.engine.dispose()


@pytest.mark.parametrize(
    "before, after",
    [
        ({"when": "drift_share > 0.3"}, {"id": "share", "when": "drift_share > 0.3"}),
        ({"id": "share", "when": "drift_share > 0.3"}, {"when": "drift_share>0.3"}),
    ],
    ids=["an id added", "an id removed"],
)
def test_naming_or_unnaming_an_unchanged_rule_keeps_its_episode_and_tells_nobody(deployment, before, after):
    d = deployment(before)
    d.evaluate()
    [episode] = d.rows(Alert)
    d.edit_rules(after)
    d.clock.advance(timedelta(minutes=15))
    d.restart()
    result = d.evaluate()
    [same] = d.rows(Alert)
    assert (same.id, same.state, same.reason) == (episode.id, "firing", None)
    assert same.rule_key == ("share" if "id" in after else "drift_share > 0.3")
    assert result.changes == [] and [n.event for n in d.rows(Notification)] == ["firing"]


def test_closing_by_hand_needs_a_reason_and_an_alert_that_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    with pytest.raises(SystemExit):
        main(["alerts", "close", "1", "--reason", "  "])
    assert "--reason: say why, for the people the alert went to" in capsys.readouterr().err
    assert main(["alerts", "close", "1", "--reason", "retired"]) == 1  # a fresh folder: no database at all
    assert "alert #1 does not exist: sqlite:///monitor.db has no monitor tables yet" in capsys.readouterr().err
    assert main(["db", "current"]) == 0
    assert not (tmp_path / "monitor.db").exists()  # neither command made an empty database


def test_a_rule_id_that_is_not_a_name_says_what_a_name_is(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    path = tmp_path / "m.yaml"
    path.write_text(
        "model: m\nowner: team\n"
        "source: {kind: ingest, features: [x]}\n"
        "checks:\n"
        "  - name: v\n    kind: volume\n    every: 1m\n    window: 10m\n"
        "    alert:\n"
        "      - id: bad id!\n"  # line 10, column 13
        "        when: rows < 5\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{path}:10:13: checks[0].alert[0].id: use only letters, digits, '.', '_' and '-'"
    )
