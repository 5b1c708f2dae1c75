"""The Grafana dashboard (deploy/grafana/monitor-dashboard.json) reads what a real run writes: every
panel's SQL, and its model variable's, returns rows on PostgreSQL and on SQLite after the daemon has
evaluated a drifted window and a latency SLO, fired an alert and failed a delivery; and again after
retention has folded the raw metrics into hourly ones."""

from __future__ import annotations

import json
import re
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from factories import T0, live_frame, write_project

from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.storage.retention import prune

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "monitor-dashboard.json"
CHECKS = [
    {"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h",
     "alert": [{"when": "drift_share > 0.3", "severity": "critical"}]},
    {"name": "latency", "kind": "latency", "every": "5m", "window": "5m",
     "slo": {"objective": "99%", "threshold": "300ms", "period": "30d"}},
]  # fmt: skip


def panel_queries() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {panel["title"]: target["rawSql"] for panel in dashboard["panels"] for target in panel["targets"]}
    queries["the model variable"] = dashboard["templating"]["list"][0]["query"]
    return queries


def as_run(sql: str) -> sa.TextClause:
    """A panel's SQL as Grafana sends it: its time filter over the dashboard's range, its model chosen."""
    sql = re.sub(r"\$__timeFilter\(([\w.]+)\)", r"\1 >= :since AND \1 < :until", sql)
    return sa.text(sql.replace("'$model'", ":model"))


@pytest.fixture
def filled(tmp_path, database_url, pager):
    owners = {"fraud-team": {"slack": "#fraud-alerts", "webhook": pager.url}}
    live = live_frame(1500, drift=True, span=timedelta(minutes=4))
    config = write_project(tmp_path, live=live, checks=CHECKS, owners=owners, database_url=database_url)
    pager.fail_next(400)  # the pager refuses the alert for good: a failed delivery
    daemon = Daemon(Project.load(config), clock=FixedClock(T0))
    daemon.prepare()
    model = daemon.project.checks.models["fraud-scorer"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for check in model.checks:
            daemon.evaluate(model, check)
    daemon.outbox.deliver_due()
    yield daemon.engine
    daemon.engine.dispose()


def rows_of(engine, sql: str) -> list:
    with engine.connect() as conn:
        params = {"model": "fraud-scorer", "since": T0 - timedelta(days=400), "until": T0 + timedelta(days=1)}
        return conn.execute(as_run(sql), params).all()


def test_each_panel_returns_rows_after_a_real_run(filled):
    empty = [title for title, sql in panel_queries().items() if not rows_of(filled, sql)]
    assert empty == [], f"no rows for: {empty}"


def test_the_series_panels_still_return_rows_once_retention_folded_them(filled):
    prune(filled, raw_before=T0 + timedelta(days=1), hourly_before=T0 - timedelta(days=365),
          runs_before=T0 - timedelta(days=90), notifications_before=T0 - timedelta(days=90))  # fmt: skip
    with filled.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM metrics")) == 0  # every value is hourly now
    for title, sql in panel_queries().items():
        if "metrics_series" in sql:
            assert rows_of(filled, sql), title


def test_docs_show_each_panels_sql_as_the_dashboard_has_it():
    documented = (DASHBOARD.parent.parent.parent / "docs" / "dashboards.md").read_text()
    for title, sql in panel_queries().items():
        assert sql in documented, f"docs/dashboards.md does not show {title!r} as the dashboard has it"
