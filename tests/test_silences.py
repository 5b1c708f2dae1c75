"""Silences: a silenced alert is recorded, not sent; still firing when the silence ends, it is sent then;
one that came and went within it is never sent. The real evaluator and outbox, slack-sdk and the
Slack Web API on loopback, on a FixedClock; and ``monitor silence add|list|expire`` from the command
line, with its usage errors.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from monitor.cli import main
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.registry import Receivers
from monitor.storage.tables import Silence
from tests.deployments import RESOLVED_AT, Pipeline
from tests.factories import T0, live_frame, write_project
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-test"


def pipeline(tmp_path, engine, slack: FakeSlackAPI) -> Pipeline:
    config = write_project(tmp_path, live=live_frame(1200, drift=True), slack={"token": TOKEN, "base_url": slack.url})
    project = Project.load(config)
    clock = FixedClock(T0)
    return Pipeline(
        project, engine, clock, Evaluator(engine, project.config, clock), Outbox(engine, Receivers(project.config), clock)
    )


def silence(engine, *, until, check: str | None = None, **matchers: str) -> int:
    with Session(engine) as session:
        row = Silence(model="fraud-scorer", check=check, matchers=matchers, starts=T0 - timedelta(minutes=1), ends=until,
                      reason="reindexing the feature store", created=T0)  # fmt: skip
        session.add(row)
        session.commit()
        return row.id


def test_a_silenced_alert_is_held_and_sent_when_the_silence_ends_if_it_still_fires(tmp_path, sqlite_engine, slack):
    p = pipeline(tmp_path, sqlite_engine, slack)
    number = silence(sqlite_engine, until=T0 + timedelta(hours=1), check="feature-drift")
    assert p.evaluate().outcome == "breach"
    assert p.deliver() == 0
    [row] = p.notifications()
    assert (row.status, row.attempts, row.next_attempt) == ("held", 0, T0 + timedelta(hours=1))
    assert row.error == f"silenced by #{number} until 2026-11-25 13:00:00 UTC: reindexing the feature store"
    assert slack.requests == []
    assert p.outbox.stuck() is None  # held back on purpose: not a delivery problem

    p.clock.set(T0 + timedelta(hours=1))
    assert p.deliver() == 1
    [row] = p.notifications()
    assert (row.status, row.attempts) == ("sent", 1)
    [posted] = slack.calls("chat.postMessage")
    assert posted.body["text"].splitlines()[1].startswith("sent late: this changed at 2026-11-25 12:00:00 UTC, 1h")


def test_an_alert_that_came_and_went_within_a_silence_is_never_sent(tmp_path, sqlite_engine, slack):
    p = pipeline(tmp_path, sqlite_engine, slack)
    silence(sqlite_engine, until=T0 + timedelta(hours=3))
    p.evaluate()
    p.deliver()
    assert p.resolve().outcome == "ok"  # at T0 + 2h, within the silence
    assert p.deliver() == 0
    p.clock.set(T0 + timedelta(hours=3))
    assert p.deliver() == 0
    assert [(n.event, n.status, n.error) for n in p.notifications()] == [
        ("firing", "silenced", "not sent: it resolved while it was silenced"),
        ("resolved", "silenced", "not sent: what it resolves was silenced throughout"),
    ]
    assert slack.requests == []
    assert T0 + timedelta(hours=3) > RESOLVED_AT


def test_a_silence_holds_only_what_it_matches(tmp_path, sqlite_engine, slack):
    p = pipeline(tmp_path, sqlite_engine, slack)
    silence(sqlite_engine, until=T0 + timedelta(hours=1), severity="warning")  # the drift rule is critical
    silence(sqlite_engine, until=T0 + timedelta(hours=1), check="latency")
    p.evaluate()
    assert p.deliver() == 1
    assert [n.status for n in p.notifications()] == ["sent"]


def test_silence_add_list_and_expire_from_the_command_line(tmp_path, capsys):
    config = write_project(tmp_path, live=live_frame(100))
    argv = ["silence", "--config", str(config)]
    assert (
        main([*argv, "add", "--model", "fraud-scorer", "--match", "severity=warning", "--for", "2h", "--reason", "deploy"]) == 0
    )
    added = capsys.readouterr().out
    assert added.startswith("silence #1 until ") and added.endswith(" UTC: fraud-scorer severity=warning: deploy\n")
    assert main([*argv, "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("#1    until ") and line.endswith("fraud-scorer severity=warning: deploy")
    assert main([*argv, "expire", "1"]) == 0
    assert capsys.readouterr().out == "silence #1 ended: fraud-scorer severity=warning: deploy\n"
    assert main([*argv, "list"]) == 0
    assert capsys.readouterr().out == "no silences in force\n"
    assert main([*argv, "expire", "1"]) == 1
    assert "silence #1 has ended already" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--model", "fraud-scorer", "--for", "2 hours", "--reason", "x"], "bad duration '2 hours'"),
        (["--model", "fraud-scorer", "--reason", "x"], "the following arguments are required: --for"),
        (["--model", "fraud-scorer", "--for", "2h"], "the following arguments are required: --reason"),
        (["--model", "fraud-scorer", "--for", "2h", "--reason", "  "], "say why"),
        (["--model", "fraud-scorer", "--for", "2h", "--reason", "x", "--match", "colour=red"], "expected LABEL=VALUE"),
        (
            ["--model", "fraud-scorer", "--for", "2h", "--reason", "x", "--match", "severity=urgent"],
            "severity is one of info, warning, critical, not 'urgent'",
        ),
    ],
)
def test_a_silence_without_an_end_or_a_reason_is_a_usage_error(tmp_path, capsys, extra, said):
    config = write_project(tmp_path, live=live_frame(100))
    with pytest.raises(SystemExit) as done:
        main(["silence", "--config", str(config), "add", *extra])
    assert done.value.code == 2
    assert said in capsys.readouterr().err


def test_a_silence_of_an_unknown_model_or_check_is_refused(tmp_path, capsys):
    config = write_project(tmp_path, live=live_frame(100))
    argv = ["silence", "--config", str(config), "add", "--for", "1h", "--reason", "x"]
    assert main([*argv, "--model", "fraud-scorr"]) == 2
    assert "unknown model 'fraud-scorr'; the check files define: fraud-scorer" in capsys.readouterr().err
    assert main([*argv, "--model", "fraud-scorer", "--check", "drift"]) == 2
    assert "unknown check 'drift' of fraud-scorer; it has: feature-drift, latency" in capsys.readouterr().err
