"""freshness: age_s is the age of the newest row, read from the rows (files: the newest row of every file, not
a file's modification time; sql: max(timestamp); ingest: the newest accepted row) and evaluated when no row
is in any window: a job that stopped writing fires. A source with no row at all is an error run that says
so. From a check file through a real evaluation to stored metrics and alerts; a FixedClock, no sleeping."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project

from monitor.clock import FixedClock
from monitor.config.durations import format_duration
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.message import AlertMessage
from monitor.storage.tables import Alert, CheckRun, Metric, Notification

MODEL, CHECK = "fraud-scorer", "freshness"
RULE = "age_s > 3600"
FRESHNESS = {"name": CHECK, "kind": "freshness", "every": "5m", "alert": [{"when": RULE, "severity": "critical"}]}


def table(engine, orm) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(orm.__table__).order_by(orm.__table__.c.id))]


def load(config) -> Project:
    """The project, its files source reading every format (``data/live-*``, not only Parquet)."""
    checks = Path(config).parent / "checks" / "fraud-scorer.yaml"
    if checks.exists():
        checks.write_text(checks.read_text().replace("data/live-*.parquet", "data/live-*"))
    project = Project.load(config)
    assert not project.checks.issues, project.checks.issues
    return project


def evaluate(project: Project, engine, at=T0, model: str = MODEL):
    checked = project.checks.models[model]
    return Evaluator(engine, project.config, FixedClock(at)).run(checked, checked.check(CHECK))


def write(frame, path) -> None:
    fmt = path.suffix
    if fmt == ".parquet":
        frame.to_parquet(path)
    elif fmt == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.assign(created_at=frame["created_at"].map(lambda t: t.isoformat())).to_json(path, orient="records", lines=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_batch_job_that_stopped_writing_fires_by_its_newest_row_not_its_file_time(tmp_path, engine, fmt):
    config = write_project(tmp_path, checks=[FRESHNESS])
    # The job's last rows were written three hours before the run, and the file was touched just now.
    last = live_frame(200, end=T0 - timedelta(hours=3), span=timedelta(hours=1))
    path = tmp_path / "data" / f"live-0001.{fmt}"
    write(last, path)
    os.utime(path, (time.time(), time.time()))
    project = load(config)

    result = evaluate(project, engine)
    assert result.outcome == "breach"
    newest = last["created_at"].max()
    [metric] = table(engine, Metric)
    assert (metric["metric"], metric["feature"]) == ("age_s", "")
    assert metric["value"] == pytest.approx((T0 - newest).total_seconds(), abs=1e-3)
    assert metric["value"] > 3 * 3600
    # no row is in the run's window (its `every`: 5m), and it was evaluated all the same
    assert (metric["window_start"], metric["window_end"]) == (T0 - timedelta(minutes=5), T0)
    [run] = table(engine, CheckRun)
    assert run["outcome"] == "breach" and run["evidence"]["newest"].startswith(newest.isoformat()[:19])
    [alert] = table(engine, Alert)
    assert (alert["rule"], alert["state"], alert["severity"], alert["feature"]) == (RULE, "firing", "critical", "")
    assert alert["summary"].startswith(f"[FIRING critical] {MODEL} / {CHECK}: age_s = ")
    [notification] = table(engine, Notification)
    # The on-call engineer reads when the job last wrote, not only an age in seconds.
    age = timedelta(seconds=round((T0 - newest).total_seconds()))
    told = f"newest row: {newest:%Y-%m-%d %H:%M:%S} UTC, {format_duration(age)} before this run"
    assert told in AlertMessage.from_dict(notification["payload"]).lines()


def test_a_job_writing_on_time_is_quiet_and_the_newest_file_counts(tmp_path, engine):
    config = write_project(tmp_path, checks=[FRESHNESS])
    live_frame(100, end=T0 - timedelta(hours=5)).to_parquet(tmp_path / "data" / "live-0001.parquet")
    recent = live_frame(100, end=T0 - timedelta(seconds=30), span=timedelta(minutes=10), seed=4)
    recent.to_csv(tmp_path / "data" / "live-0002.csv", index=False)
    project = load(config)
    result = evaluate(project, engine)
    assert result.outcome == "ok"
    [age] = result.evaluation.values
    assert age.value == pytest.approx((T0 - recent["created_at"].max()).total_seconds(), abs=1e-3)
    assert age.value < 60
    assert table(engine, Alert) == []

    # later runs answer from the remembered spans of unchanged files; a row after the run is not "newest"
    future = live_frame(10, end=T0 + timedelta(hours=1), span=timedelta(minutes=5), seed=5)
    future.to_parquet(tmp_path / "data" / "live-0003.parquet")
    [again] = evaluate(project, engine, at=T0 + timedelta(minutes=5)).evaluation.values
    assert again.value == pytest.approx(age.value + 300, abs=1e-3)


def test_a_source_that_never_had_a_row_is_an_error_that_says_so(tmp_path, engine):
    config = write_project(tmp_path, checks=[FRESHNESS])  # the glob matches no file
    result = evaluate(load(config), engine)
    assert result.outcome == "error"
    assert result.evaluation.error == (
        "the source has no row before 2026-11-25 12:00:00 UTC: nothing was written, so nothing is fresh "
        "(age_s is measured from the first row on)"
    )
    [run] = table(engine, CheckRun)
    assert (run["outcome"], run["error"]) == ("error", result.evaluation.error)
    assert table(engine, Metric) == [] and table(engine, Alert) == []


def sql_project(root, database_url: str) -> Project:
    config = write_project(root, checks=[FRESHNESS])
    checks = root / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(checks.read_text())
    del model["source"]["path"]
    model["source"].update(kind="sql", url=database_url, table="predictions")
    checks.write_text(yaml.safe_dump(model, sort_keys=False))
    return load(config)


def test_a_sql_source_is_as_fresh_as_its_max_timestamp(tmp_path, engine, database_url):
    log = sa.Table(
        "predictions",
        sa.MetaData(),
        sa.Column("request_id", sa.String(40)),
        sa.Column("created_at", sa.DateTime),
        *(sa.Column(c, sa.Float) for c in ("amount", "account_age_days", "score", "latency_ms")),
        sa.Column("country", sa.String(4)),
    )
    with engine.begin() as conn:
        log.create(conn)
    project = sql_project(tmp_path, database_url)
    assert evaluate(project, engine).outcome == "error"  # an empty table: no row yet

    rows = live_frame(50, end=T0 - timedelta(hours=2), span=timedelta(minutes=30))
    with engine.begin() as conn:
        conn.execute(log.insert(), [{**r, "created_at": r["created_at"].replace(tzinfo=None)} for r in rows.to_dict("records")])
    result = evaluate(project, engine, at=T0 + timedelta(minutes=5))
    assert result.outcome == "breach"
    [age] = result.evaluation.values
    # the database keeps microseconds: the age is exact
    assert age.value == pytest.approx((T0 + timedelta(minutes=5) - rows["created_at"].max()).total_seconds(), abs=1e-3)
    [alert] = table(engine, Alert)
    assert alert["state"] == "firing"

    # A run at a time before some rows (a replay) is as fresh as the newest row before then.
    early = evaluate(project, engine, at=T0 - timedelta(hours=2, minutes=10))
    sorted_rows = rows["created_at"].sort_values()
    before = sorted_rows[sorted_rows < T0 - timedelta(hours=2, minutes=10)].max()
    assert early.evaluation.values[0].value == pytest.approx(
        (T0 - timedelta(hours=2, minutes=10) - before).total_seconds(), abs=1e-3
    )


def test_an_ingest_stream_is_as_fresh_as_its_last_accepted_row(tmp_path, engine):
    import orjson

    from monitor.ingest.rows import validate_predictions
    from monitor.ingest.sampler import Sampler

    (tmp_path / "checks").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"database": {"url": "sqlite:///unused.db"}, "owners": {"team": {}}}))
    model = {"model": "stream", "owner": "team", "source": {"kind": "ingest", "features": ["u"]}, "checks": [FRESHNESS]}
    (tmp_path / "checks" / "stream.yaml").write_text(yaml.safe_dump(model))
    project = load(tmp_path / "config.yaml")
    first = evaluate(project, engine, model="stream")
    assert first.outcome == "error" and "no row before" in first.evaluation.error

    last = T0 - timedelta(hours=2, seconds=17)
    stamps = [last - timedelta(seconds=s) for s in (40, 20, 0)]  # within one minute: all kept by the sample
    body = b"\n".join(
        orjson.dumps({"id": f"r{i}", "ts": t.isoformat(), "features": {"u": 1.0}, "prediction": 1}) for i, t in enumerate(stamps)
    )
    parsed = validate_predictions(body, {"u": "number"}, received=T0.timestamp())
    sampler = Sampler(engine, FixedClock(T0), capacity=1000)
    sampler.add("stream", parsed.rows, rejected=0, received=T0.timestamp())
    sampler.flush()

    result = evaluate(project, engine, model="stream")
    assert result.outcome == "breach"
    assert result.evaluation.values[0].value == pytest.approx((T0 - last).total_seconds(), abs=1e-3)
