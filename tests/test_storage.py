"""The database: Alembic migrations on SQLite and PostgreSQL, the head schema against the models, UTC
timestamps, the one-open-episode index, and SQLite's WAL mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

from monitor.storage import db
from monitor.storage.tables import Alert, Base, CheckRun

TABLES = set(Base.metadata.tables)  # every table the models know, which the head revision must create
HEAD = ScriptDirectory(str(db.migrations_dir())).get_current_head()
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def table_names(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


@pytest.fixture
def empty_engine(database_url):
    engine = db.create_engine(database_url)
    yield engine
    engine.dispose()


# -- migrations ---------------------------------------------------------------------------------


def test_the_schema_has_the_documented_tables_and_one_head():
    assert {"check_runs", "metrics", "alerts", "notifications"} <= TABLES
    assert HEAD is not None  # a single head: get_current_head raises on several


def test_upgrade_from_empty_to_head_and_downgrade_to_base(empty_engine):
    assert table_names(empty_engine) == set()
    assert db.current_revision(empty_engine) is None

    db.upgrade(empty_engine)
    assert db.current_revision(empty_engine) == HEAD
    assert table_names(empty_engine) == TABLES | {"alembic_version"}

    db.downgrade(empty_engine)
    assert db.current_revision(empty_engine) is None
    assert table_names(empty_engine) == {"alembic_version"}

    # and up again, after a full round trip
    db.upgrade(empty_engine)
    assert db.current_revision(empty_engine) == HEAD
    assert table_names(empty_engine) == TABLES | {"alembic_version"}


def test_upgrade_is_idempotent(engine):
    with Session(engine) as session:
        session.add(
            CheckRun(
                model="m",
                check="c",
                kind="drift",
                started=T0,
                finished=T0,
                window_start=T0 - timedelta(hours=1),
                window_end=T0,
                outcome="ok",
                sample_size=1,
            )
        )
        session.commit()
    db.upgrade(engine)
    db.upgrade(engine, "head")
    assert db.current_revision(engine) == HEAD
    assert table_names(engine) == TABLES | {"alembic_version"}
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(CheckRun)) == 1
        assert conn.scalar(sa.text("SELECT count(*) FROM alembic_version")) == 1


def _server_defaults_differ(
    context, inspected_column, metadata_column, inspected_default, metadata_default, rendered_metadata_default
):
    """Alembic's SQLite comparison cannot match an empty-string default: it strips quotes only around a
    non-empty text (``'(.+)'``), so the reflected ``('')`` never equals the rendered ``''``. Only that case
    is decided here; every other default goes to Alembic's own comparison."""
    if context.dialect.name == "sqlite" and inspected_default in ("('')", "''") and rendered_metadata_default in ("''", ""):
        return False
    return None


def test_head_schema_equals_the_models(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": _server_defaults_differ})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_open_episode_index_is_unique_and_partial(engine):
    """compare_metadata does not look at an index's WHERE clause, so the partial index is checked here."""
    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes("alerts")}
    index = indexes["uq_alerts_open_episode"]
    assert bool(index["unique"])
    assert index["column_names"] == ["model", "check", "rule_key", "feature", "model_version"]
    where = index["dialect_options"][f"{engine.dialect.name}_where"]
    where = str(getattr(where, "text", where))
    assert "state" in where and "'pending'" in where and "'firing'" in where


# -- timestamps -----------------------------------------------------------------------------------


def test_utc_timestamps_come_back_aware_and_equal(engine):
    berlin_evening = datetime(2026, 11, 25, 19, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    with Session(engine) as session:
        run = CheckRun(
            model="m",
            check="c",
            kind="drift",
            started=T0,
            finished=berlin_evening,
            window_start=T0 - timedelta(hours=1),
            window_end=T0,
            outcome="ok",
            sample_size=10,
        )
        session.add(run)
        session.commit()
        run_id = run.id
    with Session(engine) as session:
        run = session.get(CheckRun, run_id)
        for value in (run.started, run.finished, run.window_start, run.window_end):
            assert value.tzinfo is not None
            assert value.utcoffset() == timedelta(0)
        assert run.started == T0
        assert run.window_start == T0 - timedelta(hours=1)
        assert run.finished == berlin_evening
        assert (run.finished.hour, run.finished.minute, run.finished.microsecond) == (18, 30, 123456)
    # ordering and comparison happen on UTC instants in the database too
    with engine.connect() as conn:
        assert conn.scalar(sa.select(CheckRun.id).where(CheckRun.finished > T0 + timedelta(hours=6, minutes=29))) == run_id
        assert conn.scalar(sa.select(CheckRun.id).where(CheckRun.finished > T0 + timedelta(hours=6, minutes=31))) is None


def test_naive_timestamps_are_refused(engine):
    with Session(engine) as session:
        session.add(
            CheckRun(
                model="m",
                check="c",
                kind="drift",
                started=datetime(2026, 11, 25, 12),
                finished=T0,
                window_start=T0,
                window_end=T0,
                outcome="ok",
                sample_size=0,
            )
        )
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            session.flush()


# -- one open episode per rule and feature --------------------------------------------------------


def _alert(state: str, feature: str = "", **kw) -> Alert:
    values = dict(
        model="fraud-scorer",
        check="feature-drift",
        rule="drift_share > 0.3",
        rule_key="drift_share > 0.3",
        feature=feature,
        severity="critical",
        state=state,
        started=T0,
        threshold=0.3,
        owner="fraud-team",
        updated=T0,
    )
    values.update(kw)
    return Alert(**values)


def _insert(engine, alert: Alert) -> None:
    with Session(engine) as session:
        session.add(alert)
        session.commit()


@pytest.mark.parametrize(
    "first, second", [("pending", "pending"), ("pending", "firing"), ("firing", "pending"), ("firing", "firing")]
)
def test_only_one_open_episode_per_rule_and_feature(engine, first, second):
    _insert(engine, _alert(first))
    with pytest.raises(sa.exc.IntegrityError):
        _insert(engine, _alert(second))
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Alert)) == 1


def test_many_ended_episodes_and_one_open_per_key(engine):
    for i in range(3):
        _insert(engine, _alert("resolved", resolved=T0 + timedelta(minutes=i)))
    _insert(engine, _alert("ok"))
    _insert(engine, _alert("ok"))
    _insert(engine, _alert("firing"))
    # other keys are other episodes
    _insert(engine, _alert("firing", feature="amount"))
    _insert(engine, _alert("pending", feature="country"))
    _insert(engine, _alert("firing", rule="drift_share > 0.5", rule_key="drift_share > 0.5"))
    _insert(engine, _alert("firing", model="other-model"))
    _insert(engine, _alert("firing", check="other-check"))
    # closing the open episode frees the key for a new one
    with Session(engine) as session:
        alert = session.scalars(
            sa.select(Alert).where(
                Alert.feature == "",
                Alert.state == "firing",
                Alert.model == "fraud-scorer",
                Alert.check == "feature-drift",
                Alert.rule == "drift_share > 0.3",
            )
        ).one()
        alert.state, alert.resolved = "resolved", T0
        session.commit()
    _insert(engine, _alert("pending"))
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.select(Alert.state, sa.func.count())
                .where(
                    Alert.model == "fraud-scorer",
                    Alert.check == "feature-drift",
                    Alert.rule == "drift_share > 0.3",
                    Alert.feature == "",
                )
                .group_by(Alert.state)
            ).all()
        )
    assert counts == {"resolved": 4, "ok": 2, "pending": 1}


def test_each_model_version_has_its_own_open_episode(engine):
    """An alert for v2 is not v1's: one open episode per rule, feature and model version."""
    _insert(engine, _alert("firing", model_version="v1"))
    _insert(engine, _alert("firing", model_version="v2"))
    _insert(engine, _alert("firing"))  # the check over every version ("") is a third
    with pytest.raises(sa.exc.IntegrityError):
        _insert(engine, _alert("pending", model_version="v2"))


def test_0005_keeps_the_rows_before_it_as_of_every_version_and_downgrades_with_two_versions_open(empty_engine):
    db.upgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO alerts (model, "check", rule, feature, severity, state, started, threshold, owner, summary,'
                " updated, rule_key, version) VALUES ('m', 'c', 'rows < 1', '', 'warning', 'firing', :t, 1, 'o', '', :t,"
                " 'rows < 1.0', 1)"
            ),
            {"t": T0.replace(tzinfo=None)},
        )
    db.upgrade(empty_engine)
    with Session(empty_engine) as session:
        [before] = session.scalars(sa.select(Alert)).all()
        assert before.model_version == ""
    _insert(empty_engine, _alert("firing", model="m", check="c", rule="rows < 1", rule_key="rows < 1.0", model_version="v2"))
    # Below 0005 one rule has one open episode: the downgrade ends the newer one with its reason.
    db.downgrade(empty_engine, "0004")
    with empty_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, state, reason FROM alerts ORDER BY id")).all()
    assert [(r.state, r.reason) for r in rows] == [
        ("firing", None),
        ("resolved", "closed by the downgrade below revision 0005: one open episode per rule and feature"),
    ]
    db.upgrade(empty_engine)
    assert db.current_revision(empty_engine) == HEAD


# -- SQLite: WAL, readers while a write is open ---------------------------------------------------


def test_sqlite_runs_in_wal_mode_and_reads_during_a_write(tmp_path):
    engine = db.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    db.upgrade(engine)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        _insert(engine, _alert("resolved"))

        rows = [
            dict(
                model="fraud-scorer",
                check="feature-drift",
                rule=f"rule {i}",
                feature="x" * 150,
                severity="info",
                state="resolved",
                started=T0,
                threshold=1.0,
                owner="o",
                summary="s" * 500,
                updated=T0,
            )
            for i in range(2000)
        ]
        with engine.connect() as writer, engine.connect() as reader:
            # A small page cache makes the writer spill to the database file before it commits: in a
            # rollback journal that takes the exclusive lock and a reader would get "database is locked".
            writer.exec_driver_sql("PRAGMA cache_size=10")
            reader.exec_driver_sql("PRAGMA busy_timeout=200")
            writer.commit()
            reader.commit()
            with writer.begin():
                writer.execute(sa.insert(Alert), rows)
                assert writer.scalar(sa.select(sa.func.count()).select_from(Alert)) == 2001
                # the write transaction is open: the reader still reads, and sees the last commit only
                with reader.begin():
                    assert reader.scalar(sa.select(sa.func.count()).select_from(Alert)) == 1
            with reader.begin():
                assert reader.scalar(sa.select(sa.func.count()).select_from(Alert)) == 2001
    finally:
        engine.dispose()
