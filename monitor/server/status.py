"""The read-only status page, made for on-call: what is wrong with the daemon, the open alerts worst
first, silences, and per model every check's last run with a day of its headline metric (a probe's
last runs as bars, as Gatus shows them). Server-rendered HTML and SVG, no script and nothing fetched
from elsewhere; every value is escaped; it reflows to a phone's width and reloads itself.

Its cost does not grow with the history: a chart is one range of ``ix_metrics_model_metric_time`` (a
day, at most CHART_POINTS values; of a metric per feature, the worst feature's at each run: a day of
values of every feature, grouped), a probe's bars one seek for its last runs, and the last run of each
configured check is two index seeks on
``ix_check_runs_model_check_started`` (its latest ``started``, then the runs that started then: one, or
one per model version of a check split by it, at most :data:`VERSIONS_SHOWN`), and the open alerts are read
through the partial index of open episodes, at most :data:`OPEN_ALERTS_SHOWN` of them. When the
database cannot be read the page says so, under the daemon's problems, instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from html import escape
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from monitor.alerting.rules import SEVERITY_RANK
from monitor.health import in_one_line
from monitor.notifiers.message import format_number, links_told
from monitor.storage.tables import OPEN_STATES, Alert, CheckRun, Metric, Notification, Silence, table

OPEN_ALERTS_SHOWN = 100
VERSIONS_SHOWN = 20
"""Model versions of one split check whose last runs the page shows at most."""
# SQLite allows at most 500 terms in one compound SELECT; a chunk of the last-run queries stays below.
_CHECKS_PER_QUERY = 200

_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:1em;color:#222;max-width:1400px}h1{font-size:1.4em;margin:.2em 0}"
    "h2{font-size:1.15em;margin:1.2em 0 .4em}h3{font-size:1em;margin:1em 0 .3em}"
    ".scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{white-space:nowrap}"
    ".breach,.firing,.error,.critical{color:#b00020;font-weight:600}.pending,.insufficient_data,.warning{color:#b26a00}"
    ".ok,.sent{color:#1b7f3b}.problems{border:2px solid #b00020;padding:0 1em;margin-bottom:1em}"
    ".bars span{display:inline-block;width:6px;height:16px;margin-right:1px;background:#bbb}"
    ".bars .ok{background:#2e9d50}.bars .breach,.bars .error{background:#c62828}"
    "svg.spark{vertical-align:middle}small{color:#666}td.summary{min-width:18em;max-width:36em}"
    "@media (max-width:600px){body{margin:.5em;font-size:13px}td,th{padding:3px 5px}}"
)
REFRESH_S = 30  # the page reloads itself: on-call leaves it open
CHART_HOURS = 24
CHART_POINTS = 200  # the newest values of a chart at most (one index range each)
PROBE_RUNS = 30  # a probe's last runs shown as bars, oldest first


@dataclass(frozen=True)
class CheckShown:
    """A configured check as the page shows it: its name, kind, and the metric charted (its first
    rule's; None: no chart), over the whole window or, ``worst`` (``max``, ``min``), its worst feature's."""

    name: str
    kind: str = ""
    metric: str | None = None
    worst: Literal["max", "min"] | None = None


@dataclass(frozen=True)
class ProbeRun:
    started: datetime
    outcome: str
    error: str | None

    @property
    def said(self) -> str:
        """What its bar says when pointed at: when, the outcome, and why."""
        return f"{self.started:%Y-%m-%d %H:%M:%S} UTC {self.outcome}" + (f": {self.error}" if self.error else "")


@dataclass
class StatusData:
    """What the page shows from the database."""

    runs: dict[tuple[str, str], list[Row]]  # (model, check) -> its last run (one per model version); not run yet: absent
    alerts: Sequence[Row]  # the open alerts, worst first then oldest, at most OPEN_ALERTS_SHOWN
    open_alerts: int  # how many are open in all
    told: dict[int, Row] = field(default_factory=dict)  # by incident: its latest notification (status, links)
    silences: Sequence[Row] = ()  # in force now
    charts: dict[tuple[str, str], list[tuple[datetime, float]]] = field(default_factory=dict)  # oldest first
    # a probe's last runs, oldest first: when each started, its outcome and its error
    probes: dict[tuple[str, str], list[ProbeRun]] = field(default_factory=dict)


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


def read_status(
    conn: Connection, checks: Sequence[tuple[str, str]], shown: Mapping[tuple[str, str], CheckShown] | None = None,
    now: datetime | None = None,
) -> StatusData:  # fmt: skip
    alerts, notes, silences = table(Alert), table(Notification), table(Silence)
    now = now or datetime.now(UTC)
    # Written out, not bound: a planner uses the partial index of open episodes (uq_alerts_open_episode)
    # only when it can see that the query asks for what the index holds.
    is_open = alerts.c.state.in_(sa.bindparam("open_states", list(OPEN_STATES), literal_execute=True))
    rank = sa.case({name: rank for name, rank in SEVERITY_RANK.items()}, value=alerts.c.severity, else_=-1)
    worst = conn.execute(
        sa.select(alerts, sa.func.count().over().label("open_alerts"))  # counted before the LIMIT
        .where(is_open)
        .order_by(rank.desc(), alerts.c.started, alerts.c.id)
        .limit(OPEN_ALERTS_SHOWN)
    ).all()
    incidents = sorted({a.incident_id or a.id for a in worst})
    told: dict[int, Row] = {}
    if incidents:
        latest = sa.select(sa.func.max(notes.c.id)).where(notes.c.alert_id.in_(incidents)).group_by(notes.c.alert_id)
        for row in conn.execute(
            sa.select(notes.c.alert_id, notes.c.status, notes.c.payload, notes.c.error).where(notes.c.id.in_(latest))
        ):
            told[row.alert_id] = row
    in_force = conn.execute(
        sa.select(silences).where(silences.c.starts <= now, silences.c.ends > now).order_by(silences.c.ends)
    ).all()
    charts, probes = {}, {}
    for pair, check in (shown or {}).items():
        if check.kind == "probe":
            probes[pair] = _probe_history(conn, *pair)
        elif check.metric:
            charts[pair] = _chart(conn, *pair, check.metric, now - timedelta(hours=CHART_HOURS), check.worst)
    return StatusData(latest_runs(conn, checks), worst, worst[0].open_alerts if worst else 0, told, in_force, charts, probes)


def _chart(
    conn: Connection, model: str, check: str, metric: str, since: datetime, worst: Literal["max", "min"] | None = None
) -> list[tuple[datetime, float]]:
    """A check's headline metric over the last day, over every version: the value with no feature, or
    (``worst``) the worst feature's at each run."""
    metrics = table(Metric)
    value = metrics.c.value if worst is None else (sa.func.max if worst == "max" else sa.func.min)(metrics.c.value)
    query = sa.select(metrics.c.time, value).where(
        metrics.c.model == model, metrics.c.metric == metric, metrics.c.time >= since,
        metrics.c.check == check, metrics.c.model_version == "",
    )  # fmt: skip
    query = (
        query.where(metrics.c.feature == "") if worst is None else query.where(metrics.c.feature != "").group_by(metrics.c.time)
    )
    rows = conn.execute(query.order_by(metrics.c.time.desc()).limit(CHART_POINTS)).all()
    return [(t, v) for t, v in reversed(rows) if v is not None and math.isfinite(v)]


def _probe_history(conn: Connection, model: str, check: str) -> list[ProbeRun]:
    runs = table(CheckRun)
    found = conn.execute(
        sa.select(runs.c.started, runs.c.outcome, runs.c.error)
        .where(runs.c.model == model, runs.c.check == check)
        .order_by(runs.c.started.desc())
        .limit(PROBE_RUNS)
    ).all()
    return [ProbeRun(started, outcome, error) for started, outcome, error in reversed(found)]


def sparkline(points: Sequence[tuple[datetime, float]], width: int = 140, height: int = 28) -> str:
    """A small SVG line of ``points`` (drawn here: no script, no CDN), its range and last value in its title."""
    if len(points) < 2:
        return "<small>too few values</small>" if points else "<small>no values</small>"
    times = [t.timestamp() for t, _ in points]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span_t, span_v = (times[-1] - times[0]) or 1.0, high - low

    def y(v: float) -> float:  # a flat line is drawn across the middle
        return height / 2 if span_v == 0 else height - 1 - (v - low) / span_v * (height - 2)

    coords = " ".join(f"{(t - times[0]) / span_t * (width - 2) + 1:.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True))
    title = escape(f"{len(points)} values, {format_number(low)} to {format_number(high)}, last {format_number(values[-1])}")
    return (
        f"<svg class='spark' width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"
        f"<title>{title}</title><polyline fill='none' stroke='#3465a4' stroke-width='1.5' points='{coords}'/></svg>"
        f" <small>{escape(format_number(values[-1]))}</small>"
    )


def _age(since: datetime, now: datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_status(
    engine: Engine, checks: Mapping[str, Sequence[str | CheckShown]], problems: Mapping[str, str], now: datetime | None = None
) -> str:
    """The page for the configured ``checks`` (model -> its checks) and the daemon's current ``problems``:
    problems, open alerts worst first then oldest (owner, rule, value, delivery, links), silences in force,
    then per model each check's last run with a day's chart of its headline metric (a probe: its last
    runs as bars). Every value is escaped; the page reloads itself every REFRESH_S seconds."""
    now = now or datetime.now(UTC)
    shown = {
        (model, c.name if isinstance(c, CheckShown) else c): c if isinstance(c, CheckShown) else CheckShown(c)
        for model, names in checks.items() for c in names
    }  # fmt: skip
    pairs = list(shown)
    e = lambda v: escape("" if v is None else str(v))  # noqa: E731
    health = (
        "<div class='problems'><h2>Problems</h2><ul>"
        + "".join(f"<li><b>{e(condition)}</b>: {e(reason)}</li>" for condition, reason in problems.items())
        + "</ul></div>"
        if problems
        else "<p>Health: ok.</p>"
    )
    head = (
        "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S}'><title>monitor</title><style>{_STYLE}</style></head><body>"
        f"<h1>monitor</h1>{health}<p>{len(checks)} model(s): {e(', '.join(checks))}. Times in UTC; "
        f"as of {now:%Y-%m-%d %H:%M:%S}, reloaded every {REFRESH_S} s.</p>"
    )
    try:
        with engine.connect() as conn:
            data = read_status(conn, pairs, shown, now)
    except sa.exc.SQLAlchemyError as exc:
        return (
            head + f"<p class='error'>The database is unavailable ({e(in_one_line(exc))}): the last runs and the open "
            "alerts cannot be read. This page shows them again once it answers.</p></body></html>"
        )

    def links(told: Row | None) -> str:
        found = links_told(told.payload) if told is not None else {}
        return " ".join(f"<a href='{e(url)}' rel='noreferrer'>{e(name)}</a>" for name, url in found.items())

    def moved(told: Row | None) -> str:
        """What moved, as the message said it: each drifted feature's change (its category or its middle)."""
        payload = told.payload if told is not None and isinstance(told.payload, dict) else {}
        said = []
        for feature in (payload.get("top_features") or [])[:3]:
            effect = feature.get("effect") if isinstance(feature, dict) else None
            if isinstance(effect, dict) and effect.get("text"):
                said.append(f"{feature.get('feature')}: {effect['text']}")
        return "; " + "; ".join(said) if said else ""

    alert_rows = ""
    for a in data.alerts:
        told = data.told.get(a.incident_id or a.id)
        where = f"{a.model} / {a.check}" + (f" [{a.model_version}]" if a.model_version else "")
        value = format_number(a.last_value, a.threshold) if a.last_value is not None else ""
        delivery = f"<span class='{e(told.status)}'>{e(told.status)}</span>" if told is not None else "not told"
        alert_rows += (
            f"<tr><td>{e(a.id)}</td><td class='{e(a.severity)}'>{e(a.severity)}</td><td class='{e(a.state)}'>{e(a.state)}</td>"
            f"<td>{e(where)}</td><td>{e(a.feature)}</td><td>{e(a.rule)}</td><td>{e(value)}</td><td>{e(a.owner)}</td>"
            f"<td title='{e(a.started.strftime('%Y-%m-%d %H:%M:%S'))}'>{e(_age(a.started, now))}</td>"
            f"<td>{delivery}</td><td>{links(told)}</td><td class='summary'>{e(a.summary)}{e(moved(told))}</td></tr>"
        )
    more = data.open_alerts - len(data.alerts)
    silence_rows = "".join(
        f"<tr><td>{e(x.id)}</td><td>{e(x.model)}{' / ' + e(x.check) if x.check else ''}</td>"
        f"<td>{e(', '.join(f'{k}={v}' for k, v in (x.matchers or {}).items()))}</td>"
        f"<td>{e(x.ends.strftime('%Y-%m-%d %H:%M'))}</td><td>{e(x.reason)}</td></tr>"
        for x in data.silences
    )
    models = ""
    for model in checks:
        rows = ""
        for (of, name), check in shown.items():
            if of != model:
                continue
            if check.kind == "probe":
                history = data.probes.get((model, name), [])
                chart = (
                    "<span class='bars'>"
                    + "".join(f"<span class='{e(r.outcome)}' title='{e(r.said)}'></span>" for r in history)
                    + "</span>"
                )
                up = sum(1 for r in history if r.outcome == "ok")
                chart += f" <small>{up}/{len(history)} ok</small>" if history else " <small>no runs</small>"
            elif check.metric:
                of = " (worst feature)" if check.worst else ""
                chart = f"<small>{e(check.metric)}{of}</small> " + sparkline(data.charts.get((model, name), []))
            else:
                chart = ""
            last = data.runs.get((model, name))
            if not last:
                rows += f"<tr><td>{e(name)}</td><td></td><td>not run yet</td><td></td><td></td><td>{chart}</td><td></td></tr>"
            for r in last or []:
                rows += (
                    f"<tr><td>{e(name)}</td><td>{e(r.model_version)}</td><td class='{e(r.outcome)}'>{e(r.outcome)}</td>"
                    f"<td>{e(r.finished.strftime('%Y-%m-%d %H:%M:%S'))}</td><td>{e(r.sample_size)}</td><td>{chart}</td>"
                    f"<td>{e(r.error)}</td></tr>"
                )
        models += (
            f"<h3>{e(model)}</h3><div class='scroll'><table><tr><th>check</th><th>model version</th><th>last run</th>"
            f"<th>finished</th><th>rows</th><th>last {CHART_HOURS} h</th><th>detail</th></tr>{rows}</table></div>"
        )
    return (
        head
        + f"<h2>Open alerts ({data.open_alerts})</h2>"
        + (
            "<div class='scroll'><table><tr><th>#</th><th>severity</th><th>state</th><th>model / check</th><th>feature</th>"
            "<th>rule</th><th>last value</th><th>owner</th><th>age</th><th>told</th><th>links</th><th>summary</th></tr>"
            f"{alert_rows}</table></div>"
            if alert_rows
            else "<p>None.</p>"
        )
        + (f"<p>and {more} more (<code>monitor alerts</code> lists them all).</p>" if more > 0 else "")
        + (
            "<h2>Silences in force</h2><div class='scroll'><table><tr><th>#</th><th>of</th><th>matching</th><th>until</th>"
            f"<th>why</th></tr>{silence_rows}</table></div>"
            if silence_rows
            else ""
        )
        + "<h2>Models</h2>"
        + (models or "<p>No checks.</p>")
        + "</body></html>"
    )
