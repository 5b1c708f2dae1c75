"""Both sides of a drift comparison are typed alike, by the reference, whatever the source format.

Acceptance: for every column type (number, integer, boolean, text), with and without nulls, and every
source format (files: Parquet, CSV, JSON lines; sql on SQLite; ingest, whose rows come back from JSON
in the samples table), the drift score of an unchanged distribution computed by monitor (the rows
written in that format, read through the real source and the real reference loader, then the drift
check's ``evaluate``) equals evidently's own DataDriftTable score computed directly on the same rows as
pandas frames built in memory, with the same stat test and column mapping, to 1e-9.

The rows are written the way a producer of each format writes them (a CSV writes ``True`` and an
empty field, JSON writes ``true`` and ``null``, a SQL column is typed), so what each reader makes of
them (an integer column with nulls read as floats, a boolean from JSON or SQLite read as 1.0/0 ...) is
what the drift check has to type.
"""

from __future__ import annotations

import csv
import functools
import json
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from monitor.checks.base import Window
from monitor.checks.drift import DriftSpec, evaluate
from monitor.clock import FixedClock
from monitor.ingest.rows import validate_predictions
from monitor.ingest.sampler import Sampler
from monitor.sources import SourceContext
from monitor.sources.files import FilesSource, FilesSpec
from monitor.sources.ingest import IngestSource, IngestSpec, feature_types
from monitor.sources.reference import load_reference
from monitor.sources.sql import SqlSource, SqlSpec
from monitor.storage import db

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
START = END - timedelta(hours=1)
LIVE_ROWS = 300
TYPES = ("number", "integer", "boolean", "text")
# Text of digits (postcodes): the reference (Parquet) says text; CSV and JSON-lines readers make
# numbers of it (80331, or 80331.0 in a column with gaps), which must read as the reference's "80331".
DIGITS = "digits"
FORMATS = ("parquet", "csv", "jsonl", "sql", "ingest")
# evidently chooses its test by the reference's size: p-value tests (ks, chisquare, z) up to 1,000
# rows, distances (Wasserstein, Jensen-Shannon) above.
REFERENCE_ROWS = {"p-value tests": 600, "distances": 1200}
NULLS = {"none": "no-nulls", "live": "nulls-in-live-rows", "both": "nulls-in-both"}
SQL_TYPES = {"number": sa.Float, "integer": sa.Integer, "boolean": sa.Boolean, "text": sa.String, DIGITS: sa.String}
NUMERICAL = ("number", "integer")


def draw(kind: str, rows: int, seed: int, nulls: bool) -> list:
    """Python values of one column type (None for a missing one), all from the same distribution."""
    rng = np.random.default_rng(seed)
    if kind == "number":
        values = [float(v) for v in rng.normal(50.0, 10.0, rows)]
    elif kind == "integer":
        values = [int(v) for v in rng.integers(0, 30, rows)]
    elif kind == "boolean":
        values = [bool(v) for v in rng.random(rows) < 0.3]
    elif kind == DIGITS:
        values = [str(v) for v in rng.choice(["80331", "10115", "20095", "50667"], rows, p=[0.4, 0.2, 0.2, 0.2])]
    else:
        values = [str(v) for v in rng.choice(["US", "DE", "FR", "GB"], rows, p=[0.4, 0.2, 0.2, 0.2])]
    if nulls:
        values = [None if missing else v for v, missing in zip(values, rng.random(rows) < 0.15, strict=True)]
    return values


def rows(kinds: tuple[str, ...], nulls: str, size: str) -> tuple[dict[str, list], dict[str, list]]:
    """The reference's and the live rows' values per column (named by its kind): the same
    distribution, different draws; ``nulls`` says on which side values go missing."""
    reference = {k: draw(k, REFERENCE_ROWS[size], seed=1, nulls=nulls == "both") for k in kinds}
    live = {k: draw(k, LIVE_ROWS, seed=2, nulls=nulls != "none") for k in kinds}
    return reference, live


@functools.cache
def evidently_scores(kinds: tuple[str, ...], nulls: str, size: str) -> dict[str, tuple[float, str]]:
    """evidently's own score and test name per column, on pandas frames built in memory from ``rows``."""
    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    reference, live = rows(kinds, nulls, size)
    mapping = ColumnMapping(
        numerical_features=[k for k in kinds if k in NUMERICAL],
        categorical_features=[k for k in kinds if k not in NUMERICAL],
        target=None,
        prediction=None,
        datetime=None,
        id=None,
    )
    report = Report(metrics=[DataDriftTable(columns=list(kinds))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.run(reference_data=pd.DataFrame(reference), current_data=pd.DataFrame(live), column_mapping=mapping)
    result = report.as_dict()["metrics"][0]["result"]["drift_by_columns"]
    return {k: (float(result[k]["drift_score"]), result[k]["stattest_name"]) for k in kinds}


# -- writing the rows as each format's producer would -----------------------------------------------


def records(values: dict[str, list]) -> list[dict]:
    stamps = [END - timedelta(minutes=50) + timedelta(seconds=10 * i) for i in range(LIVE_ROWS)]
    return [
        {"request_id": f"r{i}", "created_at": t, **{k: column[i] for k, column in values.items()}} for i, t in enumerate(stamps)
    ]


def write_file(path, rows: list[dict]) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.table({key: pa.array([r[key] for r in rows]) for key in rows[0]}), path)
    elif path.suffix == ".csv":
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()})
    else:
        with path.open("w") as out:
            for row in rows:
                out.write(json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}) + "\n")


def read_live(fmt: str, live: list[dict], kinds: tuple[str, ...], folder, reference, engine) -> pd.DataFrame:
    """The live rows written in ``fmt`` and read back through the real source for that format."""
    mapping = {"timestamp": "created_at", "id": "request_id", "features": list(kinds)}
    if fmt in ("parquet", "csv", "jsonl"):
        write_file(folder / f"live.{fmt}", live)
        return FilesSource(FilesSpec(kind="files", path=str(folder / "live.*"), **mapping)).read(START, END)
    if fmt == "sql":
        url = f"sqlite:///{folder / 'log.db'}"
        log = sa.create_engine(url)
        columns = [sa.Column(k, SQL_TYPES[k]) for k in kinds]
        table = sa.Table(
            "predictions", sa.MetaData(), sa.Column("request_id", sa.String), sa.Column("created_at", sa.DateTime), *columns
        )
        with log.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), [{**r, "created_at": r["created_at"].replace(tzinfo=None)} for r in live])
        log.dispose()
        return SqlSource(SqlSpec(kind="sql", url=url, table="predictions", **mapping)).read(START, END)
    # ingest: posted as JSON lines, validated against the reference's types, sampled, stored, read back
    model = folder.name
    spec = IngestSpec(kind="ingest", features=list(kinds))
    body = b"\n".join(
        orjson.dumps(
            {"id": r["request_id"], "ts": r["created_at"].isoformat(), "features": {k: r[k] for k in kinds}, "prediction": 0.5}
        )
        for r in live
    )
    parsed = validate_predictions(body, feature_types(spec, reference), received=END.timestamp())
    assert parsed.rejected == [], parsed.rejected[:3]
    sampler = Sampler(engine, FixedClock(END), capacity=1000)
    sampler.add(model, parsed.rows, rejected=0, received=END.timestamp())
    assert sampler.flush() > 0
    return IngestSource(spec, SourceContext(model, engine)).read(START, END)


@pytest.fixture(scope="module")
def monitor_scores(tmp_path_factory):
    """``(fmt, reference_format, kinds, nulls, size) -> Evaluation``: the rows of ``rows`` written as a
    reference and live rows, read through the real loader and source and evaluated by the drift check;
    each combination once, every column type's test reading its own column of it."""
    engine = db.create_engine(f"sqlite:///{tmp_path_factory.mktemp('ingest') / 'monitor.db'}")
    db.upgrade(engine)
    runs = {}

    def run(fmt: str, reference_format: str, kinds: tuple[str, ...], nulls: str, size: str):
        key = (fmt, reference_format, kinds, nulls, size)
        if key not in runs:
            folder = tmp_path_factory.mktemp(f"{fmt}-{reference_format}-{nulls}-{size.split()[0]}")
            reference_values, live_values = rows(kinds, nulls, size)
            reference_path = folder / f"reference.{reference_format}"
            write_file(reference_path, [dict(zip(kinds, v, strict=True)) for v in zip(*reference_values.values(), strict=True)])
            reference = load_reference(reference_path, list(kinds))
            frame = read_live(fmt, records(live_values), kinds, folder, reference, engine)
            assert len(frame) == LIVE_ROWS
            # Numbers, not verdicts: min_rows set, so the tests' minimum sizes (docs/drift.md) leave these 300-row windows scored.
            spec = DriftSpec(name="drift", kind="drift", every="15m", window="1h", min_rows=30)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs[key] = evaluate(spec, Window(START, END, frame), reference, list(kinds))
        return runs[key]

    yield run
    engine.dispose()


def assert_scored_as_evidently_scores(evaluation, kind: str, kinds: tuple[str, ...], nulls: str, size: str) -> None:
    expected, test_name = evidently_scores(kinds, nulls, size)[kind]
    assert evaluation.outcome == "ok", evaluation.error
    assert evaluation.evidence.get("skipped", []) == []
    scores = {v.metric: v.value for v in evaluation.values if v.feature == kind}
    [feature] = [f for f in evaluation.evidence["features"] if f["feature"] == kind]
    assert feature["method"] == test_name
    assert scores["drift_score"] == pytest.approx(expected, abs=1e-9, rel=0)
    assert scores["drifted"] == 0.0, "an unchanged distribution has not drifted"


ALL_KINDS = (*TYPES, DIGITS)


@pytest.mark.parametrize("size", REFERENCE_ROWS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("nulls", NULLS, ids=NULLS.values())
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_an_unchanged_distribution_scores_as_evidently_scores_it(monitor_scores, kind, nulls, fmt, size):
    evaluation = monitor_scores(fmt, "parquet", ALL_KINDS, nulls, size)
    assert_scored_as_evidently_scores(evaluation, kind, ALL_KINDS, nulls, size)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("reference_format", ["csv", "jsonl"])
@pytest.mark.parametrize("nulls", ["none", "both"], ids=[NULLS["none"], NULLS["both"]])
@pytest.mark.parametrize("kind", TYPES)
def test_a_reference_from_csv_or_json_lines_types_its_columns_as_a_parquet_one(
    monitor_scores, kind, nulls, reference_format, fmt
):
    """(Text of digits is left out: in a CSV file it is numbers, and the reference decides.)"""
    evaluation = monitor_scores(fmt, reference_format, TYPES, nulls, "distances")
    assert_scored_as_evidently_scores(evaluation, kind, TYPES, nulls, "distances")
