"""Tables do not grow for ever: raw metrics past ``retention.raw`` become hourly aggregates (min, max,
mean, count, last) that equal the raw rows they replace, the view ``metrics_series`` still returns the
whole series across the boundary, old runs go, and a delivered notification goes unless its alert is
still open. SQLite and PostgreSQL."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.storage import retention
from monitor.storage.retention import prune
from monitor.storage.tables import Alert, CheckRun, HourlyMetric, Metric, Notification, table

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DAYS = 40
EVERY = timedelta(minutes=15)


def series_rows() -> list[dict]:
    """40 days of a check every 15 minutes: a data-set value and a feature's, each run's own."""
    rows = []
    start = NOW - timedelta(days=DAYS)
    for i in range(int(timedelta(days=DAYS) / EVERY)):
        time = start + i * EVERY
        for metric, feature, value in (("drift_share", "", (i % 7) / 7), ("drift_score", "amount", 0.01 * (i % 13))):
            rows.append({"time": time, "model": "fraud-scorer", "check": "feature-drift", "metric": metric, "feature": feature,
                         "value": value, "window_start": time - timedelta(hours=1), "window_end": time, "sample_size": 1200,
                         "model_version": ""})  # fmt: skip
    return rows


def prune_at(engine, **keep: timedelta):
    ages = {"raw": timedelta(days=30), "hourly": timedelta(days=365), "runs": timedelta(days=90),
            "notifications": timedelta(days=90), **keep}  # fmt: skip
    return prune(engine, raw_before=NOW - ages["raw"], hourly_before=NOW - ages["hourly"],
                 runs_before=NOW - ages["runs"], notifications_before=NOW - ages["notifications"])  # fmt: skip


@pytest.mark.parametrize("batch", [retention.ROWS_PER_BATCH, 97], ids=["one batch", "hours split across batches"])
def test_raw_metrics_past_the_limit_become_hourly_aggregates_equal_to_them(engine, monkeypatch, batch):
    monkeypatch.setattr(retention, "ROWS_PER_BATCH", batch)
    raw = series_rows()
    with engine.begin() as conn:
        conn.execute(sa.insert(table(Metric)), raw)
    cutoff = NOW - timedelta(days=30)
    pruned = prune_at(engine)
    old = [r for r in raw if r["time"] < cutoff]
    assert pruned.folded == len(old) and pruned.hourly == 0

    with engine.connect() as conn:
        kept = conn.execute(sa.select(table(Metric).c.time)).scalars().all()
        hourly = {(r.metric, r.feature, r.hour): r._mapping for r in conn.execute(sa.select(table(HourlyMetric)))}
    assert min(kept) >= cutoff and len(kept) == len(raw) - len(old)  # what is newer stays raw
    expected: dict[tuple, list[dict]] = {}
    for r in old:
        expected.setdefault((r["metric"], r["feature"], r["time"].replace(minute=0)), []).append(r)
    assert hourly.keys() == expected.keys()
    for key, rows in expected.items():
        values = [r["value"] for r in rows]
        got = hourly[key]
        assert (got["count"], got["min"], got["max"], got["last"]) == (len(values), min(values), max(values), values[-1])
        assert got["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert got["last_time"] == rows[-1]["time"]

    assert not prune_at(engine)  # done: a second pass finds nothing


def test_the_series_view_reads_across_the_boundary_as_a_dashboard_does(engine):
    with engine.begin() as conn:
        conn.execute(sa.insert(table(Metric)), series_rows())
    prune_at(engine)
    query = sa.text(
        'SELECT time, value, resolution FROM metrics_series WHERE model = :model AND "check" = :check '
        "AND metric = :metric AND feature = '' AND time >= :since ORDER BY time"
    )
    with engine.connect() as conn:
        points = conn.execute(query, {"model": "fraud-scorer", "check": "feature-drift", "metric": "drift_share",
                                      "since": NOW - timedelta(days=35)}).all()  # fmt: skip
    resolutions = [p.resolution for p in points]
    assert resolutions[0] == "hourly" and resolutions[-1] == "raw"
    assert resolutions == sorted(resolutions, key=lambda r: r == "raw")  # hourly up to the boundary, raw after
    assert len([r for r in resolutions if r == "hourly"]) == 5 * 24  # days 35 to 30 back, an hour each
    assert all(0 <= p.value <= 1 for p in points)


def test_old_runs_go_and_a_notification_goes_only_once_delivered_and_its_alert_closed(engine):
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=1)
    runs, alerts, notes = table(CheckRun), table(Alert), table(Notification)
    with engine.begin() as conn:
        for started in (old, recent):
            conn.execute(sa.insert(runs).values(model="m", check="c", kind="drift", started=started, finished=started,
                                                window_start=started, window_end=started, outcome="ok", sample_size=1))  # fmt: skip
        ids = {}
        for state in ("resolved", "firing"):
            ids[state] = conn.execute(
                sa.insert(alerts).values(
                    model="m",
                    check="c",
                    rule="x > 1",
                    severity="warning",
                    state=state,
                    started=old,
                    threshold=1.0,
                    owner="o",
                    updated=old,
                    rule_key=f"x > 1 {state}",
                )  # fmt: skip
            ).inserted_primary_key[0]
        for alert, status, time in (("resolved", "sent", old), ("resolved", "failed", old), ("firing", "sent", old),
                                    ("resolved", "pending", old), ("resolved", "sent", recent)):  # fmt: skip
            conn.execute(sa.insert(notes).values(alert_id=ids[alert], event="firing", receiver=f"o/{status}", status=status,
                                                 attempts=1, created=time, time=time, next_attempt=time, payload={}))  # fmt: skip
    pruned = prune_at(engine)
    assert (pruned.runs, pruned.notifications) == (1, 2)
    with engine.connect() as conn:
        assert conn.execute(sa.select(runs.c.started)).scalars().all() == [recent]
        left = conn.execute(sa.select(notes.c.alert_id, notes.c.status, notes.c.time).order_by(notes.c.id)).all()
    assert [(a, s) for a, s, _ in left] == [(ids["firing"], "sent"), (ids["resolved"], "pending"), (ids["resolved"], "sent")]
