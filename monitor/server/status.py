"""The read-only status page: every check's last run and every open alert. Every value is escaped."""

from __future__ import annotations

from html import escape

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.notifiers.message import format_number
from monitor.storage.tables import OPEN_STATES, Alert, CheckRun

_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:2em}"
    "td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}"
    ".breach,.firing,.error{color:#b00020;font-weight:600}.pending,.insufficient_data{color:#b26a00}"
)


def render_status(engine: Engine, models: list[str]) -> str:
    latest = (
        sa.select(CheckRun.model, CheckRun.check, sa.func.max(CheckRun.id).label("id"))
        .group_by(CheckRun.model, CheckRun.check)
        .subquery()
    )
    with engine.connect() as conn:
        runs = conn.execute(
            sa.select(CheckRun).join(latest, CheckRun.id == latest.c.id).order_by(CheckRun.model, CheckRun.check)
        ).all()
        alerts = conn.execute(sa.select(Alert).where(Alert.state.in_(OPEN_STATES)).order_by(Alert.started.desc())).all()
    e = lambda v: escape("" if v is None else str(v))  # noqa: E731
    run_rows = "".join(
        f"<tr><td>{e(r.model)}</td><td>{e(r.check)}</td><td class='{e(r.outcome)}'>{e(r.outcome)}</td>"
        f"<td>{e(r.finished.strftime('%Y-%m-%d %H:%M:%S'))}</td><td>{e(r.sample_size)}</td><td>{e(r.error)}</td></tr>"
        for r in runs
    )
    alert_rows = "".join(
        f"<tr><td>{e(a.id)}</td><td class='{e(a.state)}'>{e(a.state)}</td><td>{e(a.severity)}</td><td>{e(a.model)}</td>"
        f"<td>{e(a.check)}</td><td>{e(a.feature)}</td><td>{e(a.rule)}</td><td>{e(format_number(a.last_value, a.threshold) if a.last_value is not None else '')}</td>"
        f"<td>{e(a.started.strftime('%Y-%m-%d %H:%M:%S'))}</td></tr>"
        for a in alerts
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>monitor</title><style>{_STYLE}</style></head><body>"
        f"<h1>monitor</h1><p>{len(models)} model(s): {e(', '.join(models))}. Times in UTC.</p>"
        "<h2>Open alerts</h2>"
        + (
            f"<table><tr><th>#</th><th>state</th><th>severity</th><th>model</th><th>check</th><th>feature</th>"
            f"<th>rule</th><th>last value</th><th>since</th></tr>{alert_rows}</table>"
            if alert_rows
            else "<p>None.</p>"
        )
        + "<h2>Last run of each check</h2>"
        + (
            f"<table><tr><th>model</th><th>check</th><th>outcome</th><th>finished</th><th>rows</th><th>detail</th></tr>"
            f"{run_rows}</table>"
            if run_rows
            else "<p>No runs yet.</p>"
        )
        + "</body></html>"
    )
