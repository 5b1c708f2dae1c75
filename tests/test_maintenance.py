"""Maintenance windows in a check file: recurring local times when a model's alerts are held, as a
silence holds them. Pure (the window in force at a time, across midnight and daylight saving) and end
to end (a check file's window holds a drift's Slack message until it ends; slack-sdk and the Slack Web
API on loopback, a FixedClock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from monitor.alerting.maintenance import MaintenanceWindow, maintenance_silences
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from tests.factories import T0, live_frame, write_project


def window(**keys) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"from": "02:00", "to": "04:00", "reason": "reindexing", **keys})


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 29, 0, 59, tzinfo=UTC), None),  # Sunday 01:59 in Berlin (UTC+1)
        (
            datetime(2026, 11, 29, 1, 0, tzinfo=UTC),
            (datetime(2026, 11, 29, 1, 0, tzinfo=UTC), datetime(2026, 11, 29, 3, 0, tzinfo=UTC)),
        ),
        (
            datetime(2026, 11, 29, 2, 59, tzinfo=UTC),
            (datetime(2026, 11, 29, 1, 0, tzinfo=UTC), datetime(2026, 11, 29, 3, 0, tzinfo=UTC)),
        ),
        (datetime(2026, 11, 29, 3, 0, tzinfo=UTC), None),  # its end is not in it
        (datetime(2026, 11, 28, 1, 30, tzinfo=UTC), None),  # a Saturday
        # In summer Berlin is UTC+2: the window keeps its local hours.
        (
            datetime(2026, 7, 5, 0, 30, tzinfo=UTC),
            (datetime(2026, 7, 5, 0, 0, tzinfo=UTC), datetime(2026, 7, 5, 2, 0, tzinfo=UTC)),
        ),
    ],
)
def test_a_window_is_in_force_at_its_local_hours_on_its_days(now, expected):
    assert window(days=["sun"], timezone="Europe/Berlin").active(now) == expected


def test_a_window_whose_end_is_before_its_start_runs_past_midnight():
    overnight = window(days=["fri"], **{"from": "23:00", "to": "01:00"})
    assert overnight.active(datetime(2026, 11, 28, 0, 30, tzinfo=UTC)) == (
        datetime(2026, 11, 27, 23, 0, tzinfo=UTC),
        datetime(2026, 11, 28, 1, 0, tzinfo=UTC),
    )  # it started on Friday, and Saturday 00:30 is in it
    assert overnight.active(datetime(2026, 11, 29, 0, 30, tzinfo=UTC)) is None  # Saturday night: not its day


def test_windows_in_force_are_silences_of_their_model_or_checks():
    windows = {"fraud-scorer": [window(checks=["feature-drift", "latency"])]}
    [drift, latency] = maintenance_silences(windows, datetime(2026, 11, 25, 3, 0, tzinfo=UTC))
    assert (drift.model, drift.check, latency.check) == ("fraud-scorer", "feature-drift", "latency")
    assert drift.reason == "maintenance (every day 02:00-04:00 UTC): reindexing"
    assert maintenance_silences(windows, datetime(2026, 11, 25, 5, 0, tzinfo=UTC)) == []


def test_a_check_files_window_holds_the_message_until_it_ends(tmp_path, sqlite_engine, slack):
    config = write_project(tmp_path, live=live_frame(1200, drift=True), slack={"token": "xoxb-test", "base_url": slack.url})
    path = tmp_path / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(path.read_text())
    model["maintenance"] = [{"from": "11:30", "to": "12:30", "reason": "nightly reindex"}]  # T0 is 12:00 UTC
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    project = Project.load(config)
    assert not project.checks.issues, project.checks.issues
    clock = FixedClock(T0)
    daemon = Daemon(project, clock=clock, engine=sqlite_engine)
    model = project.checks.models["fraud-scorer"]
    Evaluator(sqlite_engine, project.config, clock).run(model, model.check("feature-drift"))
    assert daemon.outbox.deliver_due() == 0
    assert slack.requests == []
    clock.set(T0 + timedelta(minutes=30))
    assert daemon.outbox.deliver_due() == 1
    [posted] = slack.calls("chat.postMessage")
    assert posted.body["text"].startswith("[FIRING critical] fraud-scorer / feature-drift")
