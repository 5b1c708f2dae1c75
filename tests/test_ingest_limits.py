"""Memory in bytes, not rows, over real loopback sockets against the real daemon (see test_ingest_api):

- a row whose compact JSON is larger than ``ingest.max_row_bytes``, or whose text value (a feature, the
  prediction, a label) is longer than ``ingest.max_text_chars``, is rejected by its index, its id and a
  reason naming the field, the limit and the key, in every form of body; the other rows are accepted
  and the counts add up to the rows sent;
- a row nested deeper than can be stored is rejected by row, and the writes go on;
- what is stored never exceeds the limits;
- past ``ingest.max_memory_bytes`` of sampled rows held in memory, new rows are refused with 429 and
  not counted.
"""

from __future__ import annotations

import json
import random
import re
import string
from pathlib import Path

import orjson
import pytest
import yaml
from test_ingest_api import AUTH, LABELS, MODEL, PREDICTIONS, accepted_in_db, metric_samples, row, running, stored, value_of
from test_ingest_api import write_ingest_project as write_project

MAX_ROW = 4096
MAX_TEXT = 100
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def write_ingest_project(root: Path, database_url: str | None = None, **ingest) -> Path:
    """test_ingest_api's project, with ingest settings of its own (bodies up to 1 MiB by default)."""
    config = write_project(root, database_url)
    document = yaml.safe_load(config.read_text())
    document["ingest"].update({"max_body_bytes": 1024 * 1024, "max_row_bytes": MAX_ROW, "max_text_chars": MAX_TEXT} | ingest)
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


@pytest.fixture
def limited(tmp_path):
    with running(write_ingest_project(tmp_path)) as pair:
        yield pair


def body(items: list[dict], form: str) -> tuple[bytes, dict]:
    if form == "array":
        return orjson.dumps(items), JSON
    if form == "pretty-printed":
        return json.dumps(items, indent=2).encode(), JSON
    if form == "object":
        [item] = items
        return orjson.dumps(item), JSON
    return b"\n".join(orjson.dumps(item) for item in items) + b"\n", NDJSON


def size(item: dict) -> int:
    return len(orjson.dumps(item))


@pytest.mark.parametrize("form", ["array", "pretty-printed", "json-lines", "object"])
def test_an_oversized_row_is_rejected_by_name_and_the_others_are_accepted(limited, form):
    daemon, client = limited
    big = row("big")
    big["features"]["embedding"] = [round(0.001 * i, 3) for i in range(1000)]  # some 6 KB of numbers
    items = [big] if form == "object" else [row("r0"), row("r1"), big, row("r3"), row("r4")]
    content, headers = body(items, form)

    response = client.post(PREDICTIONS, content=content, headers=AUTH | headers)

    assert response.status_code == 400, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (len(items) - 1, 1)
    [error] = result["errors"]
    assert (error["index"], error["id"]) == (items.index(big), "big")
    assert error["reason"] == (
        f"the row is {size(big):,} bytes of JSON, more than ingest.max_row_bytes ({MAX_ROW:,}): feature 'embedding'"
        f" takes {len(orjson.dumps(big['features']['embedding'])):,}; send large values elsewhere and a reference to them here"
    )
    assert accepted_in_db(daemon) == len(items) - 1
    assert stored(daemon, "SELECT sum(rejected) FROM ingest_stats WHERE model = :m", m=MODEL)[0][0] == 1
    kept = {r[0] for r in stored(daemon, "SELECT row_id FROM samples WHERE model = :m", m=MODEL)}
    assert kept == {item["id"] for item in items if item is not big}


def test_a_ten_megabyte_value_is_one_rejected_row_not_ten_megabytes_held(tmp_path):
    """The issue's case: one row carrying 10 MB. It is refused by row, and neither the memory of the
    sample nor the database holds it; its huge id is not echoed back either."""
    with running(write_ingest_project(tmp_path, max_body_bytes=16 * 1024 * 1024, max_row_bytes=65536)) as (daemon, client):
        huge = row("x" * 300, blob="z" * 10_000_000)
        response = client.post(PREDICTIONS, content=orjson.dumps([row("fine"), huge]), headers=AUTH | JSON)
        assert response.status_code == 400 and len(response.content) < 1000
        [error] = response.json()["errors"]
        assert "id" not in error
        assert error["reason"].startswith("the row is 10,000,")
        assert "more than ingest.max_row_bytes (65,536): blob takes 10,000,002" in error["reason"]
        assert daemon.sampler.held_bytes() < 10_000
        assert accepted_in_db(daemon) == 1
        largest = stored(daemon, "SELECT max(length(CAST(features AS TEXT))) FROM samples WHERE model = :m", m=MODEL)[0][0]
        assert largest < 100


@pytest.mark.parametrize("form", ["array", "json-lines"])
def test_a_row_nested_too_deeply_to_be_stored_is_rejected_and_writes_go_on(limited, form):
    """orjson reads 1,024 levels; the JSON encoder that stores a row gave up near 1,000, and that one row
    failed the write of every waiting bucket, again and again. It is rejected by row instead."""
    daemon, client = limited
    items = [row("r0"), row("deep") | {"prediction": "DEEP"}, row("nested-but-fine") | {"prediction": "SHALLOW"}]
    content, headers = body(items, form)
    content = content.replace(b'"DEEP"', b"[" * 999 + b"]" * 999).replace(b'"SHALLOW"', b"[" * 250 + b"]" * 250)
    response = client.post(PREDICTIONS, content=content, headers=AUTH | headers)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"index": 1, "id": "deep", "reason": "the row is nested more than 254 levels deep"}]
    assert accepted_in_db(daemon) == 2
    assert daemon.sampler.backlog() == 0  # written: nothing stuck behind a row the database cannot take


def test_a_too_long_text_is_rejected_by_name_and_length_counts_characters(limited):
    daemon, client = limited
    items = [
        row("at-the-limit", country="D" * MAX_TEXT),
        row("one-more", country="D" * (MAX_TEXT + 1)),
        row("accented", country="é" * MAX_TEXT),  # 200 bytes, 100 characters: taken
        row("accented-long", country="é" * (MAX_TEXT + 1)),
        row("long-prediction", prediction="p" * 150),
        row("long-extra") | {"features": {"amount": 1.0, "country": "DE", "note": "n" * 500}},
    ]
    response = client.post(PREDICTIONS, json=items, headers=AUTH)
    assert response.status_code == 400
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 4)
    assert [(e["index"], e["id"], e["reason"]) for e in result["errors"]] == [
        (1, "one-more", "feature 'country' is 101 characters of text, more than ingest.max_text_chars (100)"),
        (3, "accented-long", "feature 'country' is 101 characters of text, more than ingest.max_text_chars (100)"),
        (4, "long-prediction", "prediction is 150 characters of text, more than ingest.max_text_chars (100)"),
        (5, "long-extra", "feature 'note' is 500 characters of text, more than ingest.max_text_chars (100)"),
    ]
    kept = {r[0] for r in stored(daemon, "SELECT row_id FROM samples WHERE model = :m", m=MODEL)}
    assert kept == {"at-the-limit", "accented"}

    labels = client.post(
        LABELS, json=[{"id": "at-the-limit", "label": "fraud"}, {"id": "accented", "label": "f" * 101}], headers=AUTH
    )
    assert labels.status_code == 400
    assert (labels.json()["accepted"], labels.json()["matched"]) == (1, 1)
    assert labels.json()["errors"] == [
        {"index": 1, "id": "accented", "reason": "label is 101 characters of text, more than ingest.max_text_chars (100)"}
    ]


@pytest.mark.parametrize(
    "sent",
    ["1e15", "9e15", "-1e15", "1E15", "1e-7", "5e-324", "1.7976931348623157e308", "1e22", "0.1", "1e5", "-0",
     "18446744073709551615", "123456789012345678901234", '"\\u00e9"', '"\\b"', '"\\u0001"', '"\\ud83d\\ude00"',
     '"\\/"', '"\u00e9\u20ac"', "true", "null", "[]", "{}"],
)  # fmt: skip
def test_no_value_grows_more_than_four_and_a_half_times_from_what_was_sent(sent):
    """Why a row sent in at most a fifth of max_row_bytes need not be measured (rows._GROWTH): what orjson
    writes for a value read from ``sent`` is at most 4.5 times as long, whichever parser read it."""
    from monitor.ingest.rows import _GROWTH, _lenient_loads

    try:
        value = orjson.loads(sent)
    except orjson.JSONDecodeError:  # an integer past 64 bits: the stdlib parser reads it, as the daemon does
        value = _lenient_loads(sent.encode())
    assert len(orjson.dumps(value)) <= 4.5 * len(sent.encode()) < _GROWTH * len(sent.encode())


def test_a_stored_row_never_exceeds_the_limits(limited):
    """Rows of random sizes on both sides of both limits, in every form of body: each answer adds up to
    the rows sent, exactly the rows within the limits are taken, and none stored is past them."""
    daemon, client = limited
    rng = random.Random(12)
    sent, taken, answered = 0, set(), {"accepted": 0, "rejected": 0}
    for request in range(12):
        items = []
        for i in range(rng.randint(1, 12)):
            text = "".join(rng.choices(string.ascii_letters + "é€", k=rng.randint(0, 2 * MAX_TEXT)))
            numbers = [rng.random() for _ in range(rng.choice([0, 50, 150, 250]))]
            items.append(row(f"q{request}-{i}", country=text) | {"prediction": numbers or 0.5})
        within = {item["id"] for item in items if size(item) <= MAX_ROW and len(item["features"]["country"]) <= MAX_TEXT}
        form = ["array", "pretty-printed", "json-lines"][request % 3]
        response = client.post(PREDICTIONS, content=body(items, form)[0], headers=AUTH | body(items, form)[1])
        result = response.json()
        assert result["accepted"] + result["rejected"] == len(items), result
        assert result["accepted"] == len(within)
        assert {e["id"] for e in result.get("errors", [])} == {item["id"] for item in items} - within
        sent += len(items)
        taken |= within
        answered["accepted"] += result["accepted"]
        answered["rejected"] += result["rejected"]
    assert 0 < len(taken) < sent  # both sides of the limits were sent

    samples = stored(daemon, "SELECT row_id, features, prediction, latency_ms FROM samples WHERE model = :m", m=MODEL)
    assert {s[0] for s in samples} == taken
    for row_id, features, prediction, latency in samples:
        features, prediction = (json.loads(v) if isinstance(v, str) else v for v in (features, prediction))
        assert size({"id": row_id, "features": features, "prediction": prediction, "latency_ms": latency}) <= MAX_ROW
        assert all(len(value) <= MAX_TEXT for value in features.values() if isinstance(value, str))
    counts = stored(daemon, "SELECT sum(accepted), sum(rejected) FROM ingest_stats WHERE model = :m", m=MODEL)[0]
    assert counts == (answered["accepted"], answered["rejected"])


def test_past_the_memory_bound_rows_are_refused_with_429_and_not_counted(tmp_path):
    with running(write_ingest_project(tmp_path, max_memory_bytes=1024 * 1024)) as (daemon, client):
        accepted, refused = 0, None
        for request in range(100):
            batch = [row(f"m{request}-{i}", country="c" * MAX_TEXT, prediction=[0.5] * 500) for i in range(50)]
            response = client.post(PREDICTIONS, json=batch, headers=AUTH)
            if response.status_code == 429:
                refused = response
                break
            assert response.status_code == 202, response.text
            accepted += response.json()["accepted"]
        assert refused is not None, "never refused"
        assert int(refused.headers["Retry-After"]) >= 1
        assert re.fullmatch(
            r"the sampled rows held in memory \(about 1\.\d MiB\) reached ingest.max_memory_bytes \(1\.0 MiB\);"
            r" nothing of this request was taken, retry shortly",
            refused.json()["error"],
        )
        held = daemon.sampler.held_bytes()
        assert 1024 * 1024 <= held < 1024 * 1024 + 50 * 4 * 1024  # past the bound by one request at most
        assert accepted_in_db(daemon) == accepted  # nothing of the refused request counted
        assert 1024 * 1024 // (4 * 1024) < accepted < 1024 * 1024 // 2048  # each row some 2.5 to 4 KB in memory
        samples = metric_samples(client.get("/metrics").text)
        assert value_of(samples, "monitor_ingest_sample_bytes_in_memory") == held
        assert value_of(samples, "monitor_ingest_unwritten_rows") == 0
