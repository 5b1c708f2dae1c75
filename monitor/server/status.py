"""The read-only status page: what is wrong with the daemon, every configured check's last run, and
the open alerts. Every value is escaped.

Its cost does not grow with the history: the last run of each configured check is two index seeks on
``ix_check_runs_model_check_started`` (its latest ``started``, then the runs that started then: one, or
one per model version of a check split by it, at most :data:`VERSIONS_SHOWN`), and the open alerts are read
through the partial index of open episodes, at most :data:`OPEN_ALERTS_SHOWN` of them. When the
database cannot be read the page says so, under the daemon's problems, instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import escape

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from monitor.health import in_one_line
from monitor.notifiers.message import format_number
from monitor.storage.tables import OPEN_STATES, Alert, CheckRun, table

OPEN_ALERTS_SHOWN = 100
VERSIONS_SHOWN = 20
"""Model versions of one split check whose last runs the page shows at most."""
# SQLite allows at most 500 terms in one compound SELECT; a chunk of the last-run queries stays below.
_CHECKS_PER_QUERY = 200

_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:2em}"
    "td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}"
    ".breach,.firing,.error{color:#b00020;font-weight:600}.pending,.insufficient_data{color:#b26a00}"
    ".problems{border:2px solid #b00020;padding:0 1em;margin-bottom:2em}"
)


@dataclass
class StatusData:
    """What the page shows from the database."""

    runs: dict[tuple[str, str], list[Row]]  # (model, check) -> its last run (one per model version); not run yet: absent
    alerts: Sequence[Row]  # the newest open alerts, at most OPEN_ALERTS_SHOWN
    open_alerts: int  # how many are open in all


@lru_cache(maxsize=4)
def _latest_queries(checks: tuple[tuple[str, str], ...]) -> tuple[sa.CompoundSelect, ...]:
    """The queries of :func:`latest_runs`, built once per set of checks: building a hundred subqueries
    costs more than running them."""
    runs = table(CheckRun)
    shown = (runs.c.model, runs.c.check, runs.c.outcome, runs.c.finished, runs.c.sample_size, runs.c.error, runs.c.model_version)

    def latest(model: str, check: str) -> sa.ScalarSelect:
        return (
            sa.select(runs.c.started)
            .where(runs.c.model == model, runs.c.check == check)
            .order_by(runs.c.started.desc())
            .limit(1)
            .scalar_subquery()
        )

    queries = []
    for at in range(0, len(checks), _CHECKS_PER_QUERY):
        last = [
            sa.select(*shown)
            .where(runs.c.model == model, runs.c.check == check, runs.c.started == latest(model, check))
            .order_by(runs.c.model_version)
            .limit(VERSIONS_SHOWN)
            .subquery()
            for model, check in checks[at : at + _CHECKS_PER_QUERY]
        ]
        queries.append(sa.union_all(*(sa.select(one) for one in last)))
    return tuple(queries)


def latest_runs(conn: Connection, checks: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Row]]:
    """The last run of each of ``checks`` (each model version's, of a check split by it): per check two
    seeks on its index, a chunk of checks per query."""
    out: dict[tuple[str, str], list[Row]] = {}
    for query in _latest_queries(tuple(checks)):
        for row in conn.execute(query):
            out.setdefault((row.model, row.check), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda row: row.model_version)
    return out


def read_status(conn: Connection, checks: Sequence[tuple[str, str]]) -> StatusData:
    alerts = table(Alert)
    # Written out, not bound: a planner uses the partial index of open episodes (uq_alerts_open_episode)
    # only when it can see that the query asks for what the index holds.
    is_open = alerts.c.state.in_(sa.bindparam("open_states", list(OPEN_STATES), literal_execute=True))
    newest = conn.execute(
        sa.select(alerts, sa.func.count().over().label("open_alerts"))  # counted before the LIMIT
        .where(is_open)
        .order_by(alerts.c.started.desc())
        .limit(OPEN_ALERTS_SHOWN)
    ).all()
    return StatusData(latest_runs(conn, checks), newest, newest[0].open_alerts if newest else 0)


def render_status(engine: Engine, checks: Mapping[str, Sequence[str]], problems: Mapping[str, str]) -> str:
    """The page for the configured ``checks`` (model -> check names) and the daemon's current ``problems``."""
    pairs = [(model, check) for model, names in checks.items() for check in names]
    e = lambda v: escape("" if v is None else str(v))  # noqa: E731
    health = (
        "<div class='problems'><h2>Problems</h2><ul>"
        + "".join(f"<li><b>{e(condition)}</b>: {e(reason)}</li>" for condition, reason in problems.items())
        + "</ul></div>"
        if problems
        else "<p>Health: ok.</p>"
    )
    head = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>monitor</title><style>{_STYLE}</style></head><body>"
        f"<h1>monitor</h1>{health}<p>{len(checks)} model(s): {e(', '.join(checks))}. Times in UTC.</p>"
    )
    try:
        with engine.connect() as conn:
            data = read_status(conn, pairs)
    except sa.exc.SQLAlchemyError as exc:
        return (
            head + f"<p class='error'>The database is unavailable ({e(in_one_line(exc))}): the last runs and the open "
            "alerts cannot be read. This page shows them again once it answers.</p></body></html>"
        )
    alert_rows = "".join(
        f"<tr><td>{e(a.id)}</td><td class='{e(a.state)}'>{e(a.state)}</td><td>{e(a.severity)}</td><td>{e(a.model)}</td>"
        f"<td>{e(a.check)}</td><td>{e(a.model_version)}</td><td>{e(a.feature)}</td><td>{e(a.rule)}</td><td>{e(format_number(a.last_value, a.threshold) if a.last_value is not None else '')}</td>"
        f"<td>{e(a.started.strftime('%Y-%m-%d %H:%M:%S'))}</td></tr>"
        for a in data.alerts
    )
    more = data.open_alerts - len(data.alerts)
    run_rows = "".join(
        "".join(
            f"<tr><td>{e(r.model)}</td><td>{e(r.check)}</td><td>{e(r.model_version)}</td><td class='{e(r.outcome)}'>{e(r.outcome)}</td>"
            f"<td>{e(r.finished.strftime('%Y-%m-%d %H:%M:%S'))}</td><td>{e(r.sample_size)}</td><td>{e(r.error)}</td></tr>"
            for r in last
        )
        if (last := data.runs.get((model, check)))
        else f"<tr><td>{e(model)}</td><td>{e(check)}</td><td></td><td>not run yet</td><td></td><td></td><td></td></tr>"
        for model, check in pairs
    )
    return (
        head
        + "<h2>Open alerts</h2>"
        + (
            f"<table><tr><th>#</th><th>state</th><th>severity</th><th>model</th><th>check</th><th>model version</th><th>feature</th>"
            f"<th>rule</th><th>last value</th><th>since</th></tr>{alert_rows}</table>"
            if alert_rows
            else "<p>None.</p>"
        )
        + (f"<p>and {more} more, older (<code>monitor alerts</code> lists them all).</p>" if more > 0 else "")
        + "<h2>Last run of each check</h2>"
        + (
            f"<table><tr><th>model</th><th>check</th><th>model version</th><th>outcome</th><th>finished</th><th>rows</th><th>detail</th></tr>"
            f"{run_rows}</table>"
            if run_rows
            else "<p>No checks.</p>"
        )
        + "</body></html>"
    )
