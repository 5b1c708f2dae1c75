"""Sources: the files source (Parquet, CSV, JSON lines) and the sql source (SQLite, PostgreSQL) read
exactly one window, only the declared columns under their role names, with timestamps in UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from monitor.config import ConfigError
from monitor.config.loader import load_model_file
from monitor.sources import sql as sql_source
from monitor.sources.base import ID, LATENCY, TS, SourceError
from monitor.sources.files import FilesSource, FilesSpec
from monitor.sources.sql import SqlSource, SqlSpec

START = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FEATURES = ["amount", "country"]
COLUMNS = [ID, TS, LATENCY, *FEATURES]  # role columns first, in SourceSpec.roles() order, then features

# (id, minutes after START): the window is [START, END) = [0, 60) minutes
ROWS = [("before", -1), ("at-start", 0), ("middle", 30), ("late", 59.5), ("at-end", 60), ("after", 90)]
INSIDE = {"at-start", "middle", "late"}


def files_spec(path: str, **kw) -> FilesSpec:
    values = dict(kind="files", path=path, timestamp="created_at", id="request_id", features=FEATURES, latency="latency_ms")
    values.update(kw)
    return FilesSpec(**values)


def frame(rows=ROWS, start=START) -> pd.DataFrame:
    """Prediction-log rows with an undeclared column (``secret``) that must never be read."""
    n = len(rows)
    return pd.DataFrame(
        {
            "request_id": [r[0] for r in rows],
            "created_at": [start + timedelta(minutes=r[1]) for r in rows],
            "amount": np.arange(n, dtype=float) * 1.5,
            "country": ["US", "DE", "FR", "GB", "US", "DE"][:n] if n <= 6 else ["US"] * n,
            "latency_ms": np.arange(n, dtype=float) + 10,
            "secret": ["do not read"] * n,
        }
    )


def write(df: pd.DataFrame, path: Path, stamp=lambda t: t.isoformat()) -> Path:
    """Write ``df`` by the file's extension; text formats get ``stamp(timestamp)`` as written text."""
    fmt = path.suffix
    if fmt in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
        return path
    text = df.copy()
    if "created_at" in text:
        text["created_at"] = [stamp(t) for t in df["created_at"]]
    if fmt == ".csv":
        text.to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(record) + "\n" for record in text.to_dict(orient="records")))
    return path


def check_window(result: pd.DataFrame, expected_ids=INSIDE) -> None:
    assert list(result.columns) == COLUMNS
    assert isinstance(result[TS].dtype, pd.DatetimeTZDtype) and str(result[TS].dt.tz) == "UTC"
    assert set(result[ID]) == expected_ids
    assert len(result) == len(expected_ids)
    assert ((result[TS] >= START) & (result[TS] < END)).all()
    source = frame().set_index("request_id")
    for _, row in result.iterrows():
        assert row[TS] == source.loc[row[ID], "created_at"]
        assert row["amount"] == source.loc[row[ID], "amount"]
        assert row["country"] == source.loc[row[ID], "country"]
        assert row[LATENCY] == source.loc[row[ID], "latency_ms"]


# -- files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["live.parquet", "live.pq", "live.csv", "live.jsonl", "live.ndjson", "live.json"])
def test_files_reads_each_format_by_extension(tmp_path, name):
    write(frame(), tmp_path / name)
    result = FilesSource(files_spec(str(tmp_path / "live.*"))).read(START, END)
    check_window(result)


def test_files_reads_a_glob_of_mixed_formats_and_ignores_others(tmp_path):
    df = frame()
    write(df.iloc[:2], tmp_path / "part-1.parquet")
    write(df.iloc[2:4], tmp_path / "part-2.csv")
    write(df.iloc[4:], tmp_path / "part-3.jsonl")
    (tmp_path / "part-4.txt").write_text("not a data file\n")
    (tmp_path / "elsewhere").mkdir()
    write(df, tmp_path / "elsewhere" / "part-5.parquet")  # not matched by the glob
    check_window(FilesSource(files_spec(str(tmp_path / "part-*"))).read(START, END))


@pytest.mark.parametrize("name", ["live.csv", "live.jsonl"])
@pytest.mark.parametrize(
    "stamp",
    [
        lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),  # naive text: taken as UTC
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f"),  # naive ISO with microseconds
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),  # Z
        lambda t: t.astimezone(timezone(timedelta(hours=2))).isoformat(),  # +02:00, converted
        lambda t: t.astimezone(timezone(timedelta(hours=-5))).isoformat(),  # -05:00, converted
    ],
    ids=["naive", "naive-iso", "zulu", "plus-2", "minus-5"],
)
def test_files_text_timestamps_in_utc(tmp_path, name, stamp):
    write(frame(), tmp_path / name, stamp=stamp)
    check_window(FilesSource(files_spec(str(tmp_path / name))).read(START, END))


@pytest.mark.parametrize("name", ["live.csv", "live.jsonl"])
def test_files_text_offsets_are_not_ignored(tmp_path, name):
    """UTC digits written with +02:00 are instants two hours earlier."""
    write(frame(), tmp_path / name, stamp=lambda t: t.strftime("%Y-%m-%dT%H:%M:%S+02:00"))
    source = FilesSource(files_spec(str(tmp_path / name)))
    assert len(source.read(START, END)) == 0
    shifted = source.read(START - timedelta(hours=2), END - timedelta(hours=2))
    assert set(shifted[ID]) == INSIDE
    assert shifted[TS].min() == START - timedelta(hours=2)


@pytest.mark.parametrize("name", ["live.csv", "live.jsonl"])
def test_files_text_timestamps_with_different_offsets_in_one_file(tmp_path, name):
    """A file written across a DST change carries two offsets (and some writers mix in Z): every row is
    converted on its own, none is lost."""
    offsets = [timezone(timedelta(hours=1)), timezone(timedelta(hours=2)), UTC]
    rows = iter(range(100))
    write(frame(), tmp_path / name, stamp=lambda t: t.astimezone(offsets[next(rows) % 3]).isoformat())
    check_window(FilesSource(files_spec(str(tmp_path / name))).read(START, END))


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin", "America/New_York"])
def test_files_parquet_timestamps_in_utc(tmp_path, tz):
    df = frame()
    if tz is None:
        df["created_at"] = df["created_at"].dt.tz_convert("UTC").dt.tz_localize(None)  # naive, meaning UTC
    else:
        df["created_at"] = df["created_at"].dt.tz_convert(tz)
    write(df, tmp_path / "live.parquet")
    check_window(FilesSource(files_spec(str(tmp_path / "live.parquet"))).read(START, END))


def test_files_parquet_timestamps_stored_as_text(tmp_path):
    df = frame()
    df["created_at"] = [t.isoformat() for t in df["created_at"]]
    df.to_parquet(tmp_path / "live.parquet", index=False)
    check_window(FilesSource(files_spec(str(tmp_path / "live.parquet"))).read(START, END))


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
@pytest.mark.parametrize("tz", [None, "UTC"])
def test_files_parquet_filter_across_row_groups(tmp_path, order, tz):
    """2,000 rows a minute apart in 40 row groups of 50: the filter keeps exactly the window's rows."""
    n = 2000
    first = START - timedelta(hours=10)
    stamps = pd.Series([first + timedelta(minutes=i) for i in range(n)])
    ids = [f"r{i}" for i in range(n)]
    df = pd.DataFrame(
        {
            "request_id": ids,
            "created_at": stamps,
            "amount": np.arange(n, dtype=float),
            "country": ["US"] * n,
            "latency_ms": np.ones(n),
            "secret": ["x"] * n,
        }
    )
    if order == "shuffled":
        df = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    if tz is None:
        df["created_at"] = df["created_at"].dt.tz_localize(None)
    path = tmp_path / "live.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=50)
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == 40
    assert metadata.row_group(0).column(1).statistics.has_min_max

    source = FilesSource(files_spec(str(path)))
    result = source.read(START, END)
    expected = {f"r{i}" for i in range(600, 660)}  # START is minute 600 after `first`
    assert list(result.columns) == COLUMNS
    assert set(result[ID]) == expected and len(result) == 60
    assert result[TS].min() == START and result[TS].max() == END - timedelta(minutes=1)
    assert (result["amount"] == result[ID].str[1:].astype(float)).all()

    # the same source, other windows (one reaching past the data, one before it)
    later = source.read(END, END + timedelta(days=1))
    assert set(later[ID]) == {f"r{i}" for i in range(660, n)}
    assert len(source.read(first - timedelta(days=1), first)) == 0
    assert set(source.read(START, END)[ID]) == expected


def test_files_empty_glob_gives_an_empty_frame_with_the_columns(tmp_path):
    result = FilesSource(files_spec(str(tmp_path / "nothing-*.parquet"))).read(START, END)
    assert len(result) == 0
    assert list(result.columns) == COLUMNS
    assert isinstance(result[TS].dtype, pd.DatetimeTZDtype) and str(result[TS].dt.tz) == "UTC"


def test_files_no_rows_in_the_window_gives_an_empty_frame_with_the_columns(tmp_path):
    write(frame(), tmp_path / "live.parquet")
    write(frame(), tmp_path / "live.csv")
    result = FilesSource(files_spec(str(tmp_path / "live.*"))).read(END + timedelta(days=1), END + timedelta(days=2))
    assert len(result) == 0
    assert list(result.columns) == COLUMNS


def test_files_only_declared_columns_under_role_names(tmp_path):
    write(frame(), tmp_path / "live.parquet")
    spec = files_spec(str(tmp_path / "live.parquet"), features=["country"], latency=None, prediction="amount")
    result = FilesSource(spec).read(START, END)
    assert list(result.columns) == [ID, TS, "@prediction", "country"]
    assert "secret" not in result.columns and "latency_ms" not in result.columns


def test_files_schema_leaves_out_the_index_pandas_wrote(tmp_path):
    # A frame shuffled or filtered before it was written keeps its index: pandas stores it as
    # __index_level_0__ (or under the index's name), which is no column of the data.
    df = frame()
    df.sample(frac=1.0, random_state=0).to_parquet(tmp_path / "part-1.parquet")
    df.set_index(pd.Index(range(5, 11), name="row")).to_parquet(tmp_path / "part-2.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "part-1.parquet").names
    result = FilesSource(files_spec(str(tmp_path / "part-*.parquet"))).read(START, END, schema=True)
    assert result.attrs["schema"].undeclared == {"secret"} and result.attrs["schema"].absent == ()


def test_files_timestamps_with_nanoseconds_are_read_without_a_warning(tmp_path, recwarn):
    df = frame()
    df["created_at"] = pd.to_datetime(df["created_at"]) + pd.Timedelta(nanoseconds=789)
    write(df, tmp_path / "live.parquet")
    source = FilesSource(files_spec(str(tmp_path / "live.parquet")))
    assert set(source.read(START, END)[ID]) == INSIDE
    assert source.newest(END) == START + timedelta(minutes=59.5)  # to the microsecond, as before
    assert set(source.read(START, END)[ID]) == INSIDE  # from the remembered span
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("name", ["live.parquet", "live.csv", "live.jsonl"])
@pytest.mark.parametrize("missing", ["country", "latency_ms", "created_at"])
def test_files_missing_column_names_the_column_and_the_file(tmp_path, name, missing):
    path = write(frame().drop(columns=[missing]), tmp_path / name)
    with pytest.raises(SourceError) as info:
        FilesSource(files_spec(str(tmp_path / "live.*"))).read(START, END)
    assert missing in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["live.parquet", "live.csv"])
def test_files_unreadable_file_is_a_source_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 this is not a " + name.encode() + b" file \xff\xfe")
    with pytest.raises(SourceError) as info:
        FilesSource(files_spec(str(path))).read(START, END)
    assert str(path) in str(info.value)


# -- sql --------------------------------------------------------------------------------------------


@pytest.fixture
def log_db(database_url):
    """The database of the ``database_url`` fixture, with a session time zone that is not UTC on
    PostgreSQL (servers often run in local time), and the sql source's engines disposed afterwards."""
    engine = sa.create_engine(database_url)
    if engine.dialect.name == "postgresql":
        name = sa.make_url(database_url).database  # generated by conftest, never user text
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")
        engine.dispose()
    yield engine
    engine.dispose()
    cached = sql_source._engines.pop(database_url, None)
    if cached is not None:
        cached.dispose()


def sql_spec(url: str, table: str = "predictions", **kw) -> SqlSpec:
    values = dict(
        kind="sql", url=url, table=table, timestamp="created_at", id="request_id", features=FEATURES, latency="latency_ms"
    )
    values.update(kw)
    return SqlSpec(**values)


@pytest.mark.parametrize("stamps", ["aware", "naive"])
def test_sql_window_returns_exactly_the_windows_rows(log_db, database_url, stamps):
    df = frame()
    if stamps == "naive":  # a naive column holds UTC
        df["created_at"] = df["created_at"].dt.tz_localize(None)
    df.to_sql("predictions", log_db, index=False)
    with log_db.connect() as conn:
        if log_db.dialect.name == "postgresql":
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "America/New_York"
    source = SqlSource(sql_spec(database_url))
    check_window(source.read(START, END))
    # a second window through the same (prepared) query
    later = source.read(END, END + timedelta(hours=1))
    assert set(later[ID]) == {"at-end", "after"}
    assert source.read(START - timedelta(days=1), START - timedelta(hours=1)).shape == (0, len(COLUMNS))


def test_sql_schema_qualified_table(log_db, database_url):
    frame().to_sql("predictions", log_db, index=False)
    schema = "public" if log_db.dialect.name == "postgresql" else "main"
    check_window(SqlSource(sql_spec(database_url, table=f"{schema}.predictions")).read(START, END))


def test_sql_missing_column_is_a_source_error_naming_it(log_db, database_url):
    frame().drop(columns=["latency_ms"]).to_sql("predictions", log_db, index=False)
    with pytest.raises(SourceError, match=r"predictions.*latency_ms"):
        SqlSource(sql_spec(database_url)).read(START, END)


def test_sql_missing_table_is_a_source_error(log_db, database_url):
    sa.create_engine(database_url).connect().close()  # the database is there; the table is not
    with pytest.raises(SourceError, match="no_such_table"):
        SqlSource(sql_spec(database_url, table="no_such_table")).read(START, END)


@pytest.mark.parametrize("url", ["sqlite:///{path}", "sqlite:///{path}?uri=true", "sqlite:///file:{path}?uri=true"])
def test_a_sqlite_source_that_is_not_there_is_said_and_never_created(tmp_path, url):
    missing = tmp_path / "predictions.db"
    with pytest.raises(SourceError, match=f"no SQLite database at {missing} \\(url\\): create it, or change url"):
        SqlSource(sql_spec(url.format(path=missing))).read(START, END)
    assert list(tmp_path.iterdir()) == []  # nothing made: not the file, not one named after the options


def _check_file(tmp_path: Path, **source) -> Path:
    model = {
        "model": "fraud-scorer",
        "owner": "fraud-team",
        "source": {
            "kind": "sql",
            "url": "sqlite:///unused.db",
            "table": "predictions",
            "timestamp": "created_at",
            "id": "request_id",
            "features": ["amount", "country"],
            "latency": "latency_ms",
            **source,
        },
        "checks": [{"name": "latency", "kind": "latency", "every": "1m", "window": "1h", "alert": [{"when": "p99_ms > 250"}]}],
    }
    path = tmp_path / "fraud-scorer.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "key, value",
    [
        ("table", "predictions; DROP TABLE x"),
        ("table", 'a"b'),
        ("table", "a.b.c"),
        ("table", "predictions --"),
        ("table", "1predictions"),
        ("timestamp", 'a"b'),
        ("timestamp", "created_at; DROP TABLE x"),
        ("id", "request_id)"),
        ("latency", "latency ms"),
        ("features", ["amount", "country' OR '1'='1"]),
    ],
)
def test_sql_identifiers_that_are_not_plain_names_are_rejected_at_load(tmp_path, key, value):
    with pytest.raises(ConfigError) as info:
        load_model_file(_check_file(tmp_path, **{key: value}))
    text = str(info.value)
    assert f"source.{key}" in text
    assert "fraud-scorer.yaml" in text


@pytest.mark.parametrize("table", ["predictions", "public.predictions", "_log2"])
def test_sql_plain_identifiers_load(tmp_path, table):
    model = load_model_file(_check_file(tmp_path, table=table))
    assert model.source.table == table


def test_numeric_timestamps_are_epoch_seconds(tmp_path):
    """A timestamp column of numbers is read as epoch seconds (not nanoseconds in 1970)."""
    from datetime import datetime, timedelta

    import pandas as pd

    from monitor.sources.files import FilesSource, FilesSpec

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    pd.DataFrame({"row_id": range(60), "scored_at": [now.timestamp() - 60 * i for i in range(60)], "x": range(60)}).to_csv(
        tmp_path / "scores.csv", index=False
    )
    spec = FilesSpec(kind="files", path=str(tmp_path / "*.csv"), timestamp="scored_at", id="row_id", features=["x"])

    frame = FilesSource(spec).read(now - timedelta(minutes=30), now + timedelta(seconds=1))

    assert len(frame) == 31
    assert frame["@ts"].min() == pd.Timestamp(now - timedelta(minutes=30))
