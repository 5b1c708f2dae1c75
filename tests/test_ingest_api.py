"""The HTTP API of a running daemon, over real loopback sockets: ingest of predictions and labels
(bad rows named, good rows counted and used), auth, 404, 413, 429, health, metrics and the status page.

Every test starts the real daemon in-process (``Daemon(Project.load(config))``) on 127.0.0.1:0 and
talks to it with httpx. The checks have a long ``every``: the scheduler runs each once at start-up,
and the tests then call ``daemon.evaluate`` themselves.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from daemons import serving
from prometheus_client.parser import text_string_to_metric_families

from monitor.daemon.service import Daemon
from monitor.storage.tables import Sample

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "scorer"
PREDICTIONS = f"/v1/models/{MODEL}/predictions"
LABELS = f"/v1/models/{MODEL}/labels"
MAX_BODY = 8192
HOSTILE = "<script>alert('owned')</script>"


def write_ingest_project(
    root: Path, database_url: str | None = None, *, token: str | None = TOKEN, max_concurrent: int = 1
) -> Path:
    """A config with an ingest model ``scorer`` (amount: number, country: text, from its reference)
    and a files model ``batch-job`` whose only file has a hostile column name; returns the config path."""
    (root / "checks").mkdir(parents=True, exist_ok=True)
    (root / "data" / "batch").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    pd.DataFrame({"amount": rng.lognormal(3.0, 1.0, 1000), "country": rng.choice(["US", "DE", "FR"], 1000)}).to_parquet(
        root / "data" / "reference.parquet"
    )
    (root / "data" / "batch" / "scores.csv").write_text(f"{HOSTILE},amount\n1,2.5\n")
    server = {"listen": "127.0.0.1:0"}
    if token is not None:
        server["token"] = token
    config = {
        "database": {"url": database_url or f"sqlite:///{root / 'monitor.db'}"},
        "server": server,
        "ingest": {"max_body_bytes": MAX_BODY, "max_concurrent_requests": max_concurrent},
        "checks_dir": "checks",
        "owners": {"fraud-team": {"mention": ["@dana"]}},
    }
    scorer = {
        "model": MODEL,
        "owner": "fraud-team",
        "source": {"kind": "ingest", "features": ["amount", "country"]},
        "reference": {"path": str(root / "data" / "reference.parquet")},
        "checks": [
            {"name": "feature-drift", "kind": "drift", "every": "1d", "window": "1h"},
            {
                "name": "latency",
                "kind": "latency",
                "every": "1d",
                "window": "1h",
                "min_rows": 5,
                "alert": [{"when": "p99_ms > 1", "severity": "warning"}],
            },
        ],
    }
    batch = {
        "model": "batch-job",
        "owner": "fraud-team",
        "source": {
            "kind": "files",
            "path": str(root / "data" / "batch" / "*.csv"),
            "timestamp": "scored_at",
            "id": "row_id",
            "features": ["amount"],
        },
        "checks": [{"name": "volume", "kind": "volume", "every": "1d", "window": "1h"}],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "checks" / f"{MODEL}.yaml").write_text(yaml.safe_dump(scorer, sort_keys=False))
    (root / "checks" / "batch-job.yaml").write_text(yaml.safe_dump(batch, sort_keys=False))
    return root / "config.yaml"


def running(config_path: Path):
    """The daemon of a project whose every check file loads (see daemons.serving)."""
    return serving(config_path, clean=True)


@pytest.fixture
def api(tmp_path, database_url):
    """The daemon and an httpx client, on SQLite and on PostgreSQL."""
    with running(write_ingest_project(tmp_path, database_url)) as pair:
        yield pair


@pytest.fixture
def sqlite_api(tmp_path):
    """The daemon and an httpx client, on SQLite only: for what does not depend on the database."""
    with running(write_ingest_project(tmp_path)) as pair:
        yield pair


def row(row_id, *, ts: float | None = None, amount=12.5, country="DE", latency=20.0, **extra) -> dict:
    out = {
        "id": row_id,
        "ts": time.time() - 30 if ts is None else ts,
        "features": {"amount": amount, "country": country},
        "prediction": 0.25,
        "latency_ms": latency,
    }
    out.update(extra)
    return out


def lines(*items) -> bytes:
    """A JSON-lines body; a ``bytes`` item is sent as it is (a line that is not JSON)."""
    return b"\n".join(item if isinstance(item, bytes) else orjson.dumps(item) for item in items) + b"\n"


def stored(daemon: Daemon, sql: str, **params):
    daemon.sampler.flush()
    with daemon.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def accepted_in_db(daemon: Daemon) -> int:
    return stored(daemon, "SELECT coalesce(sum(accepted), 0) FROM ingest_stats WHERE model = :m", m=MODEL)[0][0]


def metric_samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value_of(samples: list, name: str, **labels) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


# -- predictions --------------------------------------------------------------------------------------


def test_a_mixed_request_names_each_bad_row_and_takes_every_good_one(api):
    daemon, client = api
    now = time.time()
    good = [row(f"good-{i}", ts=now - 60 + i, amount=float(10 + i), latency=float(5 + i)) for i in range(40)]
    bad = {  # index in the body -> (id or None, what the reason must say)
        3: (row("bad-missing") | {"features": {"amount": 3.0}}, "bad-missing", "missing feature 'country'"),
        7: (row("bad-type", amount="12.5"), "bad-type", "feature 'amount': expected a number, got str"),
        12: (row("bad-ts", ts="yesterday"), "bad-ts", "bad timestamp 'yesterday'"),
        13: (b'{"id": "bad-json", "features": {', None, "line 14 is not JSON"),
        20: ({k: v for k, v in row("x").items() if k != "id"}, None, "missing id"),
        21: (b"this is not json either", None, "line 22 is not JSON"),
        30: (row("bad-millis", ts=now * 1000), "bad-millis", "bad timestamp"),
    }
    items, good_left = [], iter(good)
    for index in range(len(good) + len(bad)):
        items.append(bad[index][0] if index in bad else next(good_left))

    response = client.post(PREDICTIONS, content=lines(*items), headers=AUTH | {"Content-Type": "application/x-ndjson"})

    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (40, 7)
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == sorted(bad)
    for index, (_, row_id, reason) in bad.items():
        assert errors[index].get("id") == row_id, errors[index]
        assert reason in errors[index]["reason"], errors[index]

    # Counted: the exact sums, once written.
    assert stored(daemon, "SELECT sum(accepted), sum(rejected) FROM ingest_stats WHERE model = :m", m=MODEL)[0] == (40, 7)
    # Used: every good row is in the sample, and the checks see them all.
    ids = {r[0] for r in stored(daemon, "SELECT row_id FROM samples WHERE model = :m", m=MODEL)}
    assert ids == {r["id"] for r in good}
    model = daemon.project.checks.models[MODEL]
    drift = daemon.evaluate(model, model.check("feature-drift"))
    # 40 rows are read, and are too few for a fixed threshold's test (docs/drift.md, "Sample sizes")
    assert (drift.outcome, drift.evaluation.sample_size) == ("insufficient_data", 40)
    assert "amount 40 of 100 (a p-value test)" in drift.evaluation.error
    latency = daemon.evaluate(model, model.check("latency"))
    assert latency.evaluation.sample_size == 40
    p99 = next(v.value for v in latency.evaluation.values if v.metric == "p99_ms")
    below, above = np.sort([r["latency_ms"] for r in good])[[38, 39]]  # the exact p99 lies between these
    assert below * 0.995 <= p99 <= above * 1.005


def test_one_object_and_an_array_are_accepted_too(sqlite_api):
    daemon, client = sqlite_api
    one = client.post(PREDICTIONS, json=row("single"), headers=AUTH)
    many = client.post(PREDICTIONS, json=[row(f"array-{i}") for i in range(5)], headers=AUTH)
    assert (one.status_code, one.json()) == (202, {"accepted": 1, "rejected": 0})
    assert (many.status_code, many.json()) == (202, {"accepted": 5, "rejected": 0})
    assert accepted_in_db(daemon) == 6


def test_rows_the_database_cannot_hold_are_rejected_and_the_others_are_still_written(api):
    """A 300-character id, a NUL in an id or an over-long model_version would fail the write of every
    waiting bucket on PostgreSQL, again and again: they are rejected at the door instead."""
    daemon, client = api
    response = client.post(
        PREDICTIONS,
        headers=AUTH,
        json=[row("fine-1"), row("x" * 300), row("nul\u0000id"), row("fine-2", model_version="v" * 150), row("fine-3")],
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["index"] for e in errors] == [1, 2, 3]
    assert "id must be at most 200 characters" in errors[0]["reason"]
    assert "id must be at most 200 characters, without NUL" in errors[1]["reason"]
    assert "model_version must be text of at most 100 characters" in errors[2]["reason"]
    assert response.json()["accepted"] == 2
    assert accepted_in_db(daemon) == 2
    assert daemon.sampler.backlog() == 0  # written, nothing stuck behind a row the database refused


def test_a_probability_is_a_number_from_0_to_1_or_null_and_is_stored(api):
    """The model's score beside its decision: ``probability`` is kept in samples.probability."""
    daemon, client = api
    response = client.post(
        PREDICTIONS,
        headers=AUTH,
        json=[
            row("scored", prediction=1, probability=0.83),
            row("edge", prediction=0, probability=0),
            row("unscored", prediction=0, probability=None),
            row("too-high", probability=1.5),
            row("as-text", probability="0.3"),
            row("as-bool", probability=True),
            row("negative", probability=-0.01),
        ],
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 4)
    assert [(e["index"], e["id"], e["reason"]) for e in body["errors"]] == [
        (3, "too-high", "probability must be a number from 0 to 1, or null, not 1.5"),
        (4, "as-text", "probability must be a number from 0 to 1, or null, not '0.3'"),
        (5, "as-bool", "probability must be a number from 0 to 1, or null, not true"),
        (6, "negative", "probability must be a number from 0 to 1, or null, not -0.01"),
    ]
    kept = dict(stored(daemon, "SELECT row_id, probability FROM samples WHERE model = :m", m=MODEL))
    assert kept == {"scored": 0.83, "edge": 0.0, "unscored": None}


def test_a_row_from_the_future_is_rejected_and_an_old_one_is_still_taken(sqlite_api):
    """A minute past now is never dropped from memory nor deleted by retention: beyond a few minutes
    of clock skew such a row is refused."""
    daemon, client = sqlite_api
    now = time.time()
    response = client.post(
        PREDICTIONS,
        headers=AUTH,
        json=[
            row("skewed", ts=now + 120),
            row("tomorrow", ts=now + 86_400),
            row("last-month", ts=now - 30 * 86_400),
            row("year-9000", ts="9000-01-01T00:00:00Z"),
        ],
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    reason = "timestamp is in the future (more than 5 minutes ahead of the daemon's clock)"
    errors = [(e["index"], e["id"], e["reason"]) for e in body["errors"]]
    assert errors == [(1, "tomorrow", reason), (3, "year-9000", reason)]
    assert {r[0] for r in stored(daemon, "SELECT row_id FROM samples WHERE model = :m", m=MODEL)} == {"skewed", "last-month"}


def test_an_unknown_model_is_404_and_names_the_models_that_take_rows(sqlite_api):
    daemon, client = sqlite_api
    response = client.post("/v1/models/fraud-scorre/predictions", json=row("a"), headers=AUTH)
    assert response.status_code == 404
    message = response.json()["error"]
    assert "'fraud-scorre'" in message and MODEL in message
    assert "batch-job" not in message  # a files model does not take posted rows
    assert client.post("/v1/models/batch-job/predictions", json=row("a"), headers=AUTH).status_code == 404


def test_without_the_token_or_with_a_wrong_one_it_is_401_and_nothing_is_counted(sqlite_api):
    daemon, client = sqlite_api
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        for path in (PREDICTIONS, LABELS):
            response = client.post(path, json=[row("a")], headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert accepted_in_db(daemon) == 0
    assert client.post(PREDICTIONS, json=[row("a")], headers=AUTH).status_code == 202


def test_a_config_without_a_token_accepts_without_auth(tmp_path):
    with running(write_ingest_project(tmp_path, token=None)) as (daemon, client):
        response = client.post(PREDICTIONS, json=[row("a"), row("b")])
        assert (response.status_code, response.json()["accepted"]) == (202, 2)
        assert accepted_in_db(daemon) == 2


def test_a_body_past_the_limit_is_413_whether_its_length_is_declared_or_streamed(sqlite_api):
    daemon, client = sqlite_api
    big = lines(*[row(f"big-{i}") for i in range(200)])
    assert len(big) > MAX_BODY
    declared = client.post(PREDICTIONS, content=big, headers=AUTH)
    assert declared.status_code == 413 and str(MAX_BODY) in declared.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = client.post(PREDICTIONS, content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    assert accepted_in_db(daemon) == 0
    assert client.post(PREDICTIONS, content=lines(row("small")), headers=AUTH).status_code == 202


def test_a_slow_body_holds_no_permit_and_is_taken_whole_when_it_ends(sqlite_api):
    """``max_concurrent_requests: 1``: a request whose body is still on its way does not take the only
    permit (a permit stands for parsing and storing), so another client is served meanwhile."""
    daemon, client = sqlite_api
    held = lines(*[row(f"held-{i}") for i in range(10)])
    address = ("127.0.0.1", daemon.http.port)
    sock = socket.create_connection(address, timeout=30)
    try:
        head = (
            f"POST {PREDICTIONS} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {len(held)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + held[:50])
        for i in range(3):  # the held body is being received all along
            served = client.post(PREDICTIONS, content=lines(row(f"meanwhile-{i}")), headers=AUTH)
            assert served.status_code == 202, served.text
        assert not select.select([sock], [], [], 0)[0]  # and the held request is not answered yet
        sock.sendall(held[50:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"202" and orjson.loads(body)["accepted"] == 10, answer
    assert accepted_in_db(daemon) == 13


def test_429_with_retry_after_when_too_much_waits_to_be_written(sqlite_api):
    daemon, client = sqlite_api
    daemon.sampler.max_dirty_buckets = 0  # as if the database had fallen far behind
    try:
        refused = client.post(PREDICTIONS, json=[row("late-1"), row("late-2")], headers=AUTH)
    finally:
        daemon.sampler.max_dirty_buckets = 10_000
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert accepted_in_db(daemon) == 0  # refused means not counted: the client sends again
    again = client.post(PREDICTIONS, json=[row("late-1"), row("late-2")], headers=AUTH)
    assert again.status_code == 202
    assert accepted_in_db(daemon) == 2


# -- labels -------------------------------------------------------------------------------------------


def test_labels_match_sampled_predictions_and_bad_label_rows_are_named(api):
    daemon, client = api
    now = time.time()
    recent = [row(f"recent-{i}", ts=now - 20) for i in range(10)]
    older = [row(f"older-{i}", ts=now - 600) for i in range(10)]  # its minute is written and leaves memory
    assert client.post(PREDICTIONS, json=recent + older, headers=AUTH).status_code == 202
    daemon.sampler.flush()
    assert daemon.sampler.open_buckets() == 1  # only the recent minute is still in memory

    response = client.post(
        LABELS,
        headers=AUTH,
        json=[
            {"id": "recent-0", "label": 1},
            {"id": "older-0", "label": 0},
            {"id": "recent-1", "label": True},
            {"id": "never-sent", "label": 1},
            {"label": 1},
            {"id": "older-1"},
            {"id": "older-2", "label": "fraud"},
            {"id": "older-4", "label": [1]},
        ],
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["accepted"], body["rejected"], body["matched"]) == (5, 3, 4)
    assert [(e["index"], e.get("id"), e["reason"]) for e in body["errors"]] == [
        (4, None, "missing id"),
        (5, "older-1", "missing label (a number, text or true/false)"),
        (7, "older-4", "label must be a number, text or true/false, got a list"),
    ]

    more = client.post(
        LABELS,
        headers=AUTH | {"Content-Type": "application/x-ndjson"},
        content=lines({"id": "recent-2", "label": 0}, {"id": "older-3", "label": 1}),
    )
    assert (more.status_code, more.json()) == (202, {"accepted": 2, "rejected": 0, "matched": 2})

    daemon.sampler.flush()
    samples = Sample.__table__
    with daemon.engine.connect() as conn:
        labelled = dict(conn.execute(sa.select(samples.c.row_id, samples.c.label).where(samples.c.label.is_not(None))).all())
    assert labelled == {"recent-0": 1, "older-0": 0, "recent-1": True, "older-2": "fraud", "recent-2": 0, "older-3": 1}


def test_labels_the_database_cannot_take_are_503_and_the_retry_counts_them_once(api):
    daemon, client = api
    older = [row(f"older-{i}", ts=time.time() - 600) for i in range(3)]  # written, then out of memory
    assert client.post(PREDICTIONS, json=older, headers=AUTH).status_code == 202
    daemon.sampler.flush()
    labels = [{"id": "older-0", "label": 1}, {"id": "older-1", "label": 0}]
    with daemon.sampler._flushing:  # no flush meanwhile: it would fail too, and log it
        with daemon.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE samples RENAME TO samples_away"))
        try:
            refused = client.post(LABELS, json=labels, headers=AUTH)
        finally:
            with daemon.engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE samples_away RENAME TO samples"))
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    again = client.post(LABELS, json=labels, headers=AUTH)
    assert (again.status_code, again.json()) == (202, {"accepted": 2, "rejected": 0, "matched": 2})
    assert stored(daemon, "SELECT sum(labels) FROM ingest_stats WHERE model = :m", m=MODEL)[0][0] == 2


# -- health, metrics, status page ------------------------------------------------------------------------


def test_healthz_and_metrics_report_ingest_evaluations_deliveries_and_check_values(sqlite_api):
    daemon, client = sqlite_api
    health = client.get("/healthz")
    assert health.status_code == 200 and health.headers["content-type"].startswith("application/json")
    assert health.json()["status"] == "ok" and health.json()["uptime_s"] >= 0

    client.post(
        PREDICTIONS,
        headers=AUTH,
        content=lines(*[row(f"m-{i}", latency=float(10 + i)) for i in range(20)], row("bad", amount="x"), b"nope"),
    )
    daemon.sampler.flush()  # evaluations read what is written (twice a second by the daemon itself)
    model = daemon.project.checks.models[MODEL]
    result = daemon.evaluate(model, model.check("latency"))  # p99_ms > 1: a breach, so a notification
    assert result.outcome == "breach"
    p99 = next(v.value for v in result.evaluation.values if v.metric == "p99_ms")

    deadline = time.monotonic() + 10
    while True:
        text = client.get("/metrics").text
        samples = metric_samples(text)
        sent = [s for s in samples if s.name == "monitor_notification_attempts_total"]
        if sent or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert value_of(samples, "monitor_ingest_rows_total", model=MODEL, result="accepted") == 20
    assert value_of(samples, "monitor_ingest_rows_total", model=MODEL, result="rejected") == 2
    assert value_of(samples, "monitor_evaluations_total", model=MODEL, check="latency", outcome="breach") == 1
    assert value_of(samples, "monitor_evaluations_total", model=MODEL, check="latency", outcome="insufficient_data") == 1
    assert value_of(samples, "monitor_evaluations_total", model="batch-job", check="volume", outcome="error") >= 1
    assert value_of(samples, "monitor_evaluation_duration_seconds_count", model=MODEL, check="latency") == 2
    assert value_of(samples, "monitor_notification_attempts_total", receiver="console", result="sent") == 1
    assert value_of(samples, "monitor_check_value", model=MODEL, check="latency", metric="p99_ms", feature="") == p99
    assert value_of(samples, "monitor_ingest_sample_rows_in_memory") == 20
    assert value_of(samples, "monitor_last_success_timestamp_seconds") > 0

    health = client.get("/healthz").json()
    assert health["last_success"] is not None and health["last_success_age_s"] < 60


def test_the_status_page_is_html_and_escapes_what_it_shows(sqlite_api):
    daemon, client = sqlite_api
    batch = daemon.project.checks.models["batch-job"]
    failed = daemon.evaluate(batch, batch.check("volume"))  # the file's column name is in the error text
    assert failed.outcome == "error" and HOSTILE in failed.evaluation.error
    with daemon.engine.begin() as conn:  # and a hostile value straight in the table dashboards read too
        conn.execute(
            sa.text("UPDATE check_runs SET error = error || ' <img src=x onerror=alert(1)> <b>bold</b>' WHERE id = :id"),
            {"id": failed.run_id},
        )

    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.lstrip().lower().startswith("<!doctype html>")
    assert "<script>" not in page.text and "<img" not in page.text and "<b>bold" not in page.text
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "batch-job" in page.text and MODEL in page.text
