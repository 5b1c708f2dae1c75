"""A volume check compares its window with the same window a week (or ``baseline:``) earlier: ``rows_ratio``.

Each test writes a check file, loads it as the daemon does and runs the real evaluator on a real
database with a fixed clock. The earlier window is read from the source like the current one: batch
files and an ingest stream's per-minute counts. Where there is nothing to compare with (no rows then,
or time the daemon did not watch) there is no ratio, and the run says why.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.ingest.rows import validate_predictions
from monitor.ingest.sampler import Sampler
from monitor.notifiers.message import AlertMessage
from monitor.storage import db
from monitor.storage.tables import Alert, CheckRun, Metric, Notification

WEEK = timedelta(days=7)


def volume(**keys) -> dict:
    check = {"name": "volume", "kind": "volume", "every": "15m", "window": "1h"}
    check.update(keys)
    check.setdefault("alert", [{"when": "rows_ratio < 0.5", "severity": "critical"}])
    return check


def files_project(root, rows_now: int, rows_then: int | None, *, then: timedelta = WEEK, **keys) -> Project:
    """Batch files: ``rows_now`` rows in the hour before T0, ``rows_then`` in the hour ``then`` earlier."""
    parts = [live_frame(rows_now, end=T0, seed=2)]
    if rows_then:
        parts.append(live_frame(rows_then, end=T0 - then, seed=3))
    config = write_project(root, live=pd.concat(parts, ignore_index=True), checks=[volume(**keys)])
    project = Project.load(config)
    assert not project.checks.issues, project.checks.issues
    return project


def run(project: Project, engine, at=T0):
    model = next(iter(project.checks.models.values()))
    return Evaluator(engine, project.config, FixedClock(at)).run(model, model.check("volume"))


def stored(engine, metric: str) -> list[float]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(Metric.value).where(Metric.metric == metric).order_by(Metric.id)))


def test_a_drop_to_a_third_of_last_weeks_volume_fires(tmp_path, engine):
    result = run(files_project(tmp_path, rows_now=100, rows_then=300), engine)
    assert result.outcome == "breach"
    assert stored(engine, "rows") == [100.0]
    assert stored(engine, "rows_ratio") == [pytest.approx(1 / 3)]
    earlier = result.evaluation.evidence["earlier"]
    assert (earlier["baseline"], earlier["rows"]) == ("7d", 300)
    assert earlier["start"] == (T0 - WEEK - timedelta(hours=1)).isoformat()
    assert [c.state for c in result.changes] == ["firing"]
    with engine.connect() as conn:
        [payload] = conn.scalars(sa.select(Notification.payload)).all()
    assert AlertMessage.from_dict(payload).subject == "[FIRING critical] fraud-scorer / volume: rows_ratio = 0.3333"


def test_steady_volume_is_quiet(tmp_path, engine):
    result = run(files_project(tmp_path, rows_now=290, rows_then=300), engine)
    assert (result.outcome, result.changes) == ("ok", [])
    assert stored(engine, "rows_ratio") == [pytest.approx(290 / 300)]


def test_baseline_1d_compares_with_the_same_window_a_day_earlier(tmp_path, engine):
    project = files_project(tmp_path, rows_now=100, rows_then=120, then=timedelta(days=1), baseline="1d")
    result = run(project, engine)
    assert result.outcome == "ok"
    assert result.evaluation.evidence["earlier"]["baseline"] == "1d"
    assert stored(engine, "rows_ratio") == [pytest.approx(100 / 120)]


def test_no_rows_a_week_earlier_is_no_ratio_and_says_why(tmp_path, engine):
    result = run(files_project(tmp_path, rows_now=100, rows_then=None), engine)
    # Not infinity, not a breach: the one rule has nothing to judge, and the run says what is missing.
    assert result.outcome == "insufficient_data"
    reason = (
        "no rows in the window 7d earlier (2026-11-18 11:00 to 2026-11-18 12:00 UTC): no rows_ratio, "
        "a ratio over nothing is no number"
    )
    assert result.evaluation.error == reason
    assert result.evaluation.evidence["no_rows_ratio"] == reason
    assert stored(engine, "rows_ratio") == []
    assert stored(engine, "rows") == [100.0]  # the count itself is still a value
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Alert)) == 0


def test_a_check_with_other_rules_still_judges_them_without_a_ratio(tmp_path, engine):
    alert = [{"when": "rows_ratio < 0.5"}, {"when": "rows < 1000", "severity": "warning"}]
    result = run(files_project(tmp_path, rows_now=100, rows_then=None, alert=alert), engine)
    assert result.outcome == "breach"
    assert [(o.rule.when.text, o.breached) for o in result.observations] == [("rows < 1000", True)]
    assert result.evaluation.error.startswith("no rows in the window 7d earlier")


def test_without_a_baseline_or_a_ratio_rule_the_earlier_window_is_not_read(tmp_path, engine):
    result = run(files_project(tmp_path, rows_now=100, rows_then=300, alert=[{"when": "rows < 10"}]), engine)
    assert "earlier" not in result.evaluation.evidence
    assert stored(engine, "rows_ratio") == []


# -- ingest: rows exist only since the daemon watched the model -------------------------------------------


def ingest_project(root, database_url: str, retention: str = "30d") -> Project:
    (root / "checks").mkdir()
    config = {"database": {"url": database_url}, "owners": {"team": {}}, "ingest": {"retention": retention}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    model = {
        "model": "stream",
        "owner": "team",
        "source": {"kind": "ingest", "features": ["u"]},
        "checks": [volume(every="1h", start_grace="0s")],
    }
    (root / "checks" / "stream.yaml").write_text(yaml.safe_dump(model))
    project = Project.load(root / "config.yaml")
    assert not project.checks.issues, project.checks.issues
    return project


def post(engine, rows: int, end, *, seed: int = 0) -> None:
    """``rows`` rows posted over the hour before ``end``, as the API takes them in."""
    body = b"\n".join(
        orjson.dumps(
            {
                "id": f"{seed}-{i}",
                "ts": (end - timedelta(seconds=1 + 3500 * i / rows)).isoformat(),
                "features": {"u": i},
                "prediction": 0.5,
            }
        )
        for i in range(rows)
    )
    parsed = validate_predictions(body, {"u": "number"}, end.timestamp())
    assert parsed.rejected == []
    sampler = Sampler(engine, FixedClock(end), capacity=1000)
    sampler.add("stream", parsed.rows, rejected=0, received=end.timestamp())
    sampler.flush()


def test_over_ingest_a_week_the_daemon_did_not_watch_is_no_ratio(tmp_path, database_url):
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    project = ingest_project(tmp_path, database_url)
    post(engine, 300, T0 - WEEK, seed=1)  # rows of that hour exist, but the daemon first ran two days ago
    run(project, engine, at=T0 - timedelta(days=2))
    post(engine, 100, T0, seed=2)
    result = run(project, engine)
    assert result.outcome == "insufficient_data"
    assert result.evaluation.error == (
        "the window 7d earlier (2026-11-18 11:00 to 2026-11-18 12:00 UTC) is before the daemon watched stream "
        "(it does since 2026-11-23 12:00 UTC): a count there would read as silence"
    )
    assert stored(engine, "rows") == [0.0, 100.0]
    assert stored(engine, "rows_ratio") == []
    engine.dispose()


def test_over_ingest_a_watched_week_gives_the_ratio_of_exact_counts(tmp_path, database_url):
    engine = db.create_engine(database_url)
    db.upgrade(engine)
    project = ingest_project(tmp_path, database_url)
    run(project, engine, at=T0 - WEEK - timedelta(hours=2))  # watched since before the earlier window
    post(engine, 3000, T0 - WEEK, seed=1)  # more than the 1000-row sample of a minute: counts are exact
    post(engine, 1000, T0, seed=2)
    result = run(project, engine)
    assert result.outcome == "breach"
    assert result.evaluation.evidence["earlier"]["rows"] == 3000
    assert stored(engine, "rows_ratio") == [pytest.approx(1000 / 3000)]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(CheckRun)) == 2
    engine.dispose()


def test_over_ingest_a_week_past_retention_is_no_ratio(tmp_path, sqlite_engine):
    """The daemon's own config with a short retention (validate refuses it too; see tests/broken)."""
    project = ingest_project(tmp_path, "sqlite:///unused.db", retention="30d")
    run(project, sqlite_engine, at=T0 - WEEK - timedelta(hours=2))
    short = project.config.model_copy(
        update={"ingest": project.config.ingest.model_copy(update={"retention": timedelta(days=3)})}
    )
    model = project.checks.models["stream"]
    result = Evaluator(sqlite_engine, short, FixedClock(T0)).run(model, model.check("volume"))
    assert result.outcome == "insufficient_data"
    assert result.evaluation.error == (
        "the window 7d earlier (2026-11-18 11:00 to 2026-11-18 12:00 UTC) is older than the counts kept "
        "(ingest.retention: 3d): raise ingest.retention to 7d1h or more"
    )
