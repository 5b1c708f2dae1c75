"""data_quality: per feature the share of missing values (against the reference's own), of numbers outside the
reference's range and of categories it never has; for the data set the columns the data lacks, has anew, or
holds in another type. Driven from a check file through a real evaluation to stored metrics and alerts, on
SQLite and PostgreSQL; evidently's numbers checked against pandas on the same data. Time is a FixedClock."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import FEATURES, T0, live_frame, reference_frame, write_project

from monitor.checks.base import Window
from monitor.checks.data_quality import DataQualitySpec
from monitor.checks.data_quality import evaluate as data_quality
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.server.status import render_status
from monitor.sources.reference import load_reference
from monitor.storage.tables import Alert, CheckRun, Metric, Notification

MODEL, CHECK = "fraud-scorer", "data-quality"


def with_gaps(frame: pd.DataFrame, shares: dict[str, float], seed: int) -> pd.DataFrame:
    """``frame`` with exactly ``share`` of each column's rows missing (rows chosen at random)."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    for column, share in shares.items():
        rows = rng.permutation(len(out))[: round(share * len(out))]
        out[column] = out[column].astype(object)
        out.loc[rows, column] = None
        if column != "country":
            out[column] = out[column].astype("float64")
    return out


# The reference misses 10% of amount and 5% of country; account_age_days is whole.
REFERENCE_GAPS = {"amount": 0.10, "country": 0.05}


def project(root, live: pd.DataFrame, rules: list[dict], **check) -> Project:
    config = write_project(root, live=live, checks=[{"name": CHECK, "kind": "data_quality", "every": "5m", "window": "1h",
                                                      "alert": rules, **check}])  # fmt: skip
    with_gaps(reference_frame(), REFERENCE_GAPS, seed=3).to_parquet(root / "data" / "reference.parquet")
    loaded = Project.load(config)
    assert not loaded.checks.issues, loaded.checks.issues
    return loaded


def run(project: Project, engine, at=T0):
    model = project.checks.models[MODEL]
    return Evaluator(engine, project.config, FixedClock(at)).run(model, model.check(CHECK))


def table(engine, orm) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(orm.__table__).order_by(orm.__table__.c.id))]


@pytest.mark.parametrize("rule", ["missing_share > 0.15", "missing_share > reference + 0.05"])
def test_a_feature_whose_missing_share_doubles_fires_its_own_alert_and_no_other(tmp_path, engine, rule):
    # amount goes from the reference's 10% to 20%; country stays at its 5%, account_age_days at none
    live = with_gaps(live_frame(1000), {"amount": 0.20, "country": 0.05}, seed=4)
    result = run(project(tmp_path, live, [{"when": rule, "severity": "warning"}]), engine)

    assert result.outcome == "breach"
    metrics = {(m["metric"], m["feature"]): m for m in table(engine, Metric)}
    assert metrics[("missing_share", "amount")]["value"] == pytest.approx(0.20)
    assert metrics[("missing_share", "country")]["value"] == pytest.approx(0.05)
    assert metrics[("missing_share", "account_age_days")]["value"] == 0.0
    assert {k for k in metrics if k[0] != "missing_share"} == {
        ("out_of_range_share", "amount"),
        ("out_of_range_share", "account_age_days"),
        ("new_category_share", "country"),
        ("missing_columns", ""),
        ("new_columns", ""),
        ("type_changes", ""),
    }
    assert all(m["sample_size"] == 1000 and m["window_end"] == T0 for m in metrics.values())
    [alert] = table(engine, Alert)
    assert (alert["check"], alert["feature"], alert["state"], alert["rule"]) == (CHECK, "amount", "firing", rule)
    assert alert["last_value"] == pytest.approx(0.20)
    assert alert["threshold"] == pytest.approx(0.15)  # on the reference: its 0.10 + 0.05
    [note] = table(engine, Notification)
    assert note["payload"]["feature"] == "amount"
    assert alert["summary"].startswith(f"[FIRING warning] {MODEL} / {CHECK} / amount: missing_share = 0.2")
    [evidence] = [r["evidence"] for r in table(engine, CheckRun)]
    by_feature = {q["feature"]: q for q in evidence["quality"]}
    assert by_feature["amount"]["reference_missing_share"] == pytest.approx(0.10)
    assert (by_feature["amount"]["missing"], by_feature["amount"]["rows"]) == (200, 1000)


def test_healthy_data_at_the_reference_level_is_quiet(tmp_path, engine):
    live = with_gaps(live_frame(1000), REFERENCE_GAPS, seed=5)
    rules = [
        {"when": "missing_share > reference + 0.05"},
        {"when": "out_of_range_share > 0.05"},
        {"when": "new_category_share > 0.01"},
        {"when": "missing_columns > 0"},
        {"when": "new_columns > 0"},
        {"when": "type_changes > 0"},
    ]
    result = run(project(tmp_path, live, rules), engine)
    assert result.outcome == "ok", result.evaluation.error
    assert not any(o.breached for o in result.observations)
    assert table(engine, Alert) == [] and table(engine, Notification) == []
    values = {(m["metric"], m["feature"]): m["value"] for m in table(engine, Metric)}
    assert values[("new_category_share", "country")] == 0.0
    assert values[("missing_columns", "")] == values[("new_columns", "")] == values[("type_changes", "")] == 0.0


def test_a_parquet_file_with_the_index_pandas_wrote_has_no_new_column(tmp_path, engine):
    # Shuffled before it was written: pandas stores the index as __index_level_0__, no column of the data.
    live = with_gaps(live_frame(1000), REFERENCE_GAPS, seed=5).sample(frac=1.0, random_state=1)
    result = run(project(tmp_path, live, [{"when": "new_columns > 0"}]), engine)
    assert result.outcome == "ok", result.evaluation.error
    assert result.evaluation.evidence["new_columns"] == []
    assert table(engine, Alert) == []


def test_the_shares_are_those_pandas_computes_on_the_same_data(tmp_path):
    """evidently computes the shares; an independent pandas computation over the same rows agrees."""
    rng = np.random.default_rng(8)
    reference = with_gaps(reference_frame(), REFERENCE_GAPS, seed=3)
    reference["flag"] = rng.choice([True, False, None], len(reference), p=[0.7, 0.2, 0.1])
    path = tmp_path / "reference.parquet"
    reference.to_parquet(path)
    live = with_gaps(live_frame(700, seed=9), {"amount": 0.13, "country": 0.02, "account_age_days": 0.01}, seed=6)
    live["amount"] = live["amount"] * rng.choice([1.0, 1000.0], 700, p=[0.8, 0.2])  # some past the reference's max
    live.loc[[5, 6], "amount"] = [np.inf, -np.inf]  # outside any range
    live["amount"] = live["amount"].astype(object)
    live.loc[[7, 8, 9], "amount"] = ["12.5", "n/a", "7"]  # text is not a number: neither in nor out of range
    live["country"] = live["country"].where(rng.random(700) > 0.1, "BR")  # a category the reference lacks
    live.loc[[1, 2], "country"] = "ES"
    live["account_age_days"] = live["account_age_days"] + rng.choice([0, 4000], 700, p=[0.9, 0.1])
    live["flag"] = rng.choice([True, None], 700, p=[0.95, 0.05])
    features = [*FEATURES, "flag"]

    spec = DataQualitySpec(name="q", kind="data_quality", every="5m", window="1h")
    found = data_quality(spec, Window(T0 - timedelta(hours=1), T0, live), load_reference(path, features), features)
    assert found.outcome == "ok"
    got = {(v.metric, v.feature): v for v in found.values}

    def numbers(column: pd.Series) -> pd.Series:
        return column[column.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))].astype(float).dropna()

    for feature in features:
        assert got[("missing_share", feature)].value == pytest.approx(live[feature].isna().mean())
        assert got[("missing_share", feature)].reference == pytest.approx(reference[feature].isna().mean())
    for feature in ("amount", "account_age_days"):
        values, known = numbers(live[feature]), reference[feature].dropna()
        outside = ((values < known.min()) | (values > known.max())).mean()
        assert got[("out_of_range_share", feature)].value == pytest.approx(outside)
        assert got[("out_of_range_share", feature)].reference is None  # 0 by definition: no anchor
    assert 0.1 < got[("out_of_range_share", "amount")].value < 0.3
    for feature in ("country", "flag"):
        present = live[feature].dropna()
        assert got[("new_category_share", feature)].value == pytest.approx(
            (~present.isin(set(reference[feature].dropna()))).mean()
        )
    assert got[("new_category_share", "country")].value > 0.05
    assert got[("new_category_share", "flag")].value == 0.0
    assert ("out_of_range_share", "country") not in got and ("new_category_share", "amount") not in got
    [country] = [q for q in found.evidence["quality"] if q["feature"] == "country"]
    assert list(country["new_values"]) == ["BR", "ES"] and country["new_values"]["ES"] == 2


def schema_files(root) -> None:
    """Two files of the window: the older lacks account_age_days and has a new column, the newer has its
    amount as text."""
    old, new = live_frame(300, end=T0 - timedelta(minutes=30), span=timedelta(minutes=20), seed=3), live_frame(300, seed=4)
    old.drop(columns="account_age_days").assign(device_type="ios").to_parquet(root / "data" / "live-0001.parquet")
    new.assign(amount=new["amount"].round(2).astype(str)).to_parquet(root / "data" / "live-0002.parquet")


def test_a_file_without_a_feature_a_new_column_and_a_type_change_are_counted_and_named(tmp_path, engine):
    rules = [{"when": "missing_columns > 0"}, {"when": "new_columns > 0"}, {"when": "type_changes > 0"}]
    loaded = project(tmp_path, live_frame(10), rules)
    (tmp_path / "data" / "live-0001.parquet").unlink()
    schema_files(tmp_path)

    result = run(loaded, engine)
    assert result.outcome == "breach"
    values = {(v.metric, v.feature): v.value for v in result.evaluation.values}
    assert (values[("missing_columns", "")], values[("new_columns", "")], values[("type_changes", "")]) == (1, 1, 1)
    evidence = result.evaluation.evidence
    assert evidence["missing_columns"] == ["account_age_days"] and evidence["new_columns"] == ["device_type"]
    assert evidence["type_changes"] == [{"feature": "amount", "reference_type": "number", "type": "text"}]
    assert values[("missing_share", "account_age_days")] == pytest.approx(0.5)  # the older file's rows
    assert sorted(a["rule"] for a in table(engine, Alert)) == ["missing_columns > 0", "new_columns > 0", "type_changes > 0"]

    # ignore_columns: a column the data has always had is not new
    check = loaded.checks.models[MODEL].check(CHECK).model_copy(update={"ignore_columns": ["device_type"]})
    model = loaded.checks.models[MODEL]
    again = Evaluator(engine, loaded.config, FixedClock(T0)).run(model, check, dry_run=True)
    assert {(v.metric, v.value) for v in again.evaluation.values if v.metric == "new_columns"} == {("new_columns", 0.0)}


def test_a_drift_check_on_the_same_files_still_refuses_the_missing_column(tmp_path, sqlite_engine):
    """Only data_quality reads a missing feature as missing values; for the other kinds it is an error."""
    config = write_project(tmp_path, live=live_frame(10))
    (tmp_path / "data" / "live-0001.parquet").unlink()
    schema_files(tmp_path)
    loaded = Project.load(config)
    model = loaded.checks.models[MODEL]
    result = Evaluator(sqlite_engine, loaded.config, FixedClock(T0)).run(model, model.check("feature-drift"))
    assert result.outcome == "error"
    assert "live-0001.parquet: missing column(s) account_age_days" in result.evaluation.error


def test_a_sql_table_without_a_feature_and_with_a_new_column(tmp_path, engine, database_url):
    """The prediction log lives in the test database (SQLite or PostgreSQL); its columns are looked up on
    every run, so a column dropped since the first run is seen."""
    live = live_frame(200)
    log = sa.Table(
        "predictions",
        sa.MetaData(),
        sa.Column("request_id", sa.String(40)),
        sa.Column("created_at", sa.DateTime),
        sa.Column("amount", sa.Float),
        sa.Column("country", sa.String(4)),
        sa.Column("score", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("device_type", sa.String(10)),
    )
    with engine.begin() as conn:
        log.create(conn)
        conn.execute(
            log.insert(),
            [
                {
                    **{k: r[k] for k in ("request_id", "amount", "country", "score", "latency_ms")},
                    "created_at": r["created_at"].replace(tzinfo=None),
                    "device_type": "ios",
                }  # fmt: skip
                for r in live.to_dict("records")
            ],
        )
    config = write_project(tmp_path, checks=[{"name": CHECK, "kind": "data_quality", "every": "5m", "window": "1h",
                                              "alert": [{"when": "missing_columns > 0"}]}])  # fmt: skip
    checks = tmp_path / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(checks.read_text())
    del model["source"]["path"]
    model["source"].update(kind="sql", url=database_url, table="predictions")
    checks.write_text(yaml.safe_dump(model, sort_keys=False))
    loaded = Project.load(config)
    assert not loaded.checks.issues, loaded.checks.issues

    result = run(loaded, engine)
    assert result.outcome == "breach", result.evaluation.error
    assert result.evaluation.evidence["missing_columns"] == ["account_age_days"]
    assert result.evaluation.evidence["new_columns"] == ["device_type"]
    values = {(v.metric, v.feature): v.value for v in result.evaluation.values}
    assert values[("missing_share", "account_age_days")] == 1.0 and values[("missing_share", "amount")] == 0.0
    assert values[("type_changes", "")] == 0.0
    [alert] = table(engine, Alert)
    assert alert["rule"] == "missing_columns > 0"


def test_over_the_ingest_api_a_feature_key_it_was_not_told_of_is_a_new_column(tmp_path, engine):
    import orjson

    from monitor.ingest.rows import validate_predictions
    from monitor.ingest.sampler import Sampler
    from monitor.sources.ingest import feature_types

    (tmp_path / "checks").mkdir()
    (tmp_path / "data").mkdir()
    with_gaps(reference_frame(), REFERENCE_GAPS, seed=3).to_parquet(tmp_path / "data" / "reference.parquet")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"database": {"url": "sqlite:///unused.db"}, "owners": {"team": {}}}))
    check = {"name": CHECK, "kind": "data_quality", "every": "5m", "window": "1h", "alert": [{"when": "new_columns > 0"}]}
    model = {"model": "stream", "owner": "team", "source": {"kind": "ingest", "features": FEATURES},
             "reference": {"path": "data/reference.parquet"}, "checks": [check]}  # fmt: skip
    (tmp_path / "checks" / "stream.yaml").write_text(yaml.safe_dump(model))
    loaded = Project.load(tmp_path / "config.yaml")
    assert not loaded.checks.issues, loaded.checks.issues
    stream = loaded.checks.models["stream"]

    rows = live_frame(100, seed=5).to_dict("records")
    body = b"\n".join(
        orjson.dumps(
            {
                "id": r["request_id"],
                "ts": r["created_at"].isoformat(),
                "prediction": r["score"],
                "features": {
                    "amount": r["amount"],
                    "country": r["country"],
                    "account_age_days": r["account_age_days"],
                    "device": "ios",
                },
            }
        )  # fmt: skip
        for r in rows
    )
    parsed = validate_predictions(
        body, feature_types(stream.source, load_reference(tmp_path / "data" / "reference.parquet", [])), T0.timestamp()
    )
    assert parsed.rejected == []
    sampler = Sampler(engine, FixedClock(T0), capacity=1000)
    sampler.add("stream", parsed.rows, rejected=0, received=T0.timestamp())
    sampler.flush()

    result = Evaluator(engine, loaded.config, FixedClock(T0)).run(stream, stream.check(CHECK))
    assert result.outcome == "breach", result.evaluation.error
    assert result.evaluation.evidence["new_columns"] == ["device"]
    assert result.evaluation.evidence["missing_columns"] == []
    [alert] = table(engine, Alert)
    assert (alert["model"], alert["rule"]) == ("stream", "new_columns > 0")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_text_file_without_a_feature_and_with_a_new_column(tmp_path, sqlite_engine, fmt):
    project(tmp_path, live_frame(10), [{"when": "missing_columns > 0"}])
    (tmp_path / "data" / "live-0001.parquet").unlink()
    checks = tmp_path / "checks" / "fraud-scorer.yaml"
    checks.write_text(checks.read_text().replace("data/live-*.parquet", "data/live-*"))
    loaded = Project.load(tmp_path / "config.yaml")
    rows = live_frame(200).drop(columns="account_age_days").assign(device_type="ios")
    path = tmp_path / "data" / f"live-0001.{fmt}"
    if fmt == "csv":
        rows.to_csv(path, index=False)
    else:
        rows.assign(created_at=rows["created_at"].map(lambda t: t.isoformat())).to_json(path, orient="records", lines=True)

    result = run(loaded, sqlite_engine)
    assert result.outcome == "breach", result.evaluation.error
    evidence = result.evaluation.evidence
    assert (evidence["missing_columns"], evidence["new_columns"], evidence["type_changes"]) == (
        ["account_age_days"],
        ["device_type"],
        [],
    )
    values = {(v.metric, v.feature): v.value for v in result.evaluation.values}
    assert values[("missing_share", "account_age_days")] == 1.0
    assert values[("missing_share", "amount")] == 0.0 and values[("new_category_share", "country")] == 0.0


def test_the_status_page_charts_a_per_feature_rule_by_its_worst_feature(tmp_path):
    live = with_gaps(live_frame(1000), {"amount": 0.20, "country": 0.05}, seed=4)
    loaded = project(tmp_path, live, [{"when": "missing_share > 0.15", "severity": "warning"}])
    clock = FixedClock(T0)
    daemon = Daemon(loaded, clock=clock, console=io.StringIO())
    daemon.prepare()
    model = loaded.checks.models[MODEL]
    for _ in range(3):
        daemon.evaluate(model, model.check(CHECK))
        clock.advance(timedelta(minutes=5))
    page = render_status(daemon.engine, daemon.checks_shown(), {}, now=clock.now())
    daemon.engine.dispose()
    chart = re.search(r"missing_share \(worst feature\)</small> <svg.*?<title>([^<]*)</title>", page)
    assert chart is not None, page
    assert chart[1] == "3 values, 0.2 to 0.2, last 0.2"  # amount's share, the worst of the three features
