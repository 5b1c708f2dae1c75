"""Status page cost at a long history: the reads of the old page against the page as it is now.

    python bench/status_page.py [--runs 1000000] [--models 20] [--checks 5] [--alerts 20000] [--open 300]
                                [--repeat 15] [--database-url URL]

Fills ``check_runs`` with ``--runs`` rows spread over ``--models`` x ``--checks`` configured checks (one
INSERT ... SELECT over a generated series, so a million rows take seconds), and ``alerts`` with
``--alerts`` closed episodes and ``--open`` open ones; then, in this one process on this one database,
times ``--repeat`` times each (after one warm-up): the old page's reads (``max(id)`` of every
(model, check) over the whole table, and every open alert), the new reads (``read_status``), and the
whole new page (``render_status``: reads and HTML). It prints the medians and the ratio of old to new.
By default the database is SQLite in a temporary directory; ``--database-url`` names another (it is
migrated, and the tables it fills are emptied first: give it a database of its own).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from monitor.server.status import read_status, render_status
from monitor.storage import db
from monitor.storage.tables import OPEN_STATES, Alert, CheckRun


def fill(engine: sa.Engine, runs: int, models: int, checks: int, alerts: int, open_alerts: int) -> None:
    """``runs`` check runs a minute apart, round-robin over the checks; closed and open alerts."""
    sqlite = engine.dialect.name == "sqlite"
    # A series of integers, and a time i minutes after the start, in each dialect's words.
    series = (
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1) SELECT i FROM n"
        if sqlite
        else "SELECT generate_series(0, :count - 1) AS i"
    )
    at = (
        "datetime('2026-01-01', '+' || i || ' minutes')"
        if sqlite
        else "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'"
    )
    model = f"'model-' || (i % {models})"
    check = f"'check-' || ((i / {models}) % {checks})"
    with engine.begin() as conn:
        for name in ("notifications", "alerts", "metrics", "check_runs"):
            conn.execute(sa.text(f"DELETE FROM {name}"))
        conn.execute(
            sa.text(
                'INSERT INTO check_runs (model, "check", kind, started, finished, window_start, window_end, outcome, '
                f"sample_size, error) SELECT {model}, {check}, 'latency', {at}, {at}, {at}, {at}, "
                f"CASE WHEN i % 7 = 0 THEN 'breach' ELSE 'ok' END, 1000, NULL FROM ({series}) AS s"
            ),
            {"count": runs},
        )
        # Closed episodes first, then the open ones (one per rule and feature: the feature tells them apart).
        state = f"CASE WHEN i >= {alerts} THEN 'firing' ELSE 'resolved' END"
        conn.execute(
            sa.text(
                'INSERT INTO alerts (model, "check", rule, rule_key, feature, severity, state, started, threshold, '
                f"owner, summary, updated, last_value, version) SELECT {model}, {check}, 'p99_ms > 250', 'p99_ms > 250', "
                f"'f' || i, 'warning', {state}, {at}, 250, 'team', '', {at}, 300, 1 FROM ({series}) AS s"
            ),
            {"count": alerts + open_alerts},
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE check_runs, alerts"))  # as autovacuum soon would on a table this size


def old_reads(engine: sa.Engine) -> None:
    """What the page read before: the max(id) of every (model, check) ever run, and every open alert."""
    latest = (
        sa.select(CheckRun.model, CheckRun.check, sa.func.max(CheckRun.id).label("id"))
        .group_by(CheckRun.model, CheckRun.check)
        .subquery()
    )
    with engine.connect() as conn:
        conn.execute(sa.select(CheckRun).join(latest, CheckRun.id == latest.c.id).order_by(CheckRun.model, CheckRun.check)).all()
        conn.execute(sa.select(Alert).where(Alert.state.in_(OPEN_STATES)).order_by(Alert.started.desc())).all()


def median_ms(work: Callable[[], object], repeat: int) -> float:
    work()  # warm-up: caches, compiled statements, the connection pool
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--checks", type=int, default=5, help="checks per model")
    parser.add_argument("--alerts", type=int, default=20_000, help="closed episodes")
    parser.add_argument("--open", type=int, default=300, help="open episodes")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'status.db'}"
        engine = db.create_engine(url)
        db.upgrade(engine)
        began = time.perf_counter()
        fill(engine, args.runs, args.models, args.checks, args.alerts, args.open)
        print(
            f"filled {args.runs:,} check runs and {args.alerts + args.open:,} alerts in {time.perf_counter() - began:.1f}s ({engine.dialect.name})"
        )
        configured = {f"model-{m}": [f"check-{c}" for c in range(args.checks)] for m in range(args.models)}
        pairs = [(model, check) for model, names in configured.items() for check in names]

        def new_reads() -> None:
            with engine.connect() as conn:
                read_status(conn, pairs)

        old = median_ms(lambda: old_reads(engine), args.repeat)
        new = median_ms(new_reads, args.repeat)
        page = median_ms(lambda: render_status(engine, configured, {}), args.repeat)
        print(f"old reads (max(id) group by, every open alert): {old:9.2f} ms median of {args.repeat}")
        print(f"new reads (last run per check, {len(pairs)} checks; 100 alerts): {new:9.2f} ms")
        print(f"new page (reads and HTML):                     {page:9.2f} ms")
        print(f"old reads / new reads: {old / new:.0f}x; old reads / new page: {old / page:.0f}x")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
