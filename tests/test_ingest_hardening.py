"""Hardening of the ingest API, over real loopback sockets against the real daemon (see test_ingest_api):

- one bad value does not lose the request: rows holding ``NaN`` or ``Infinity`` (which orjson refuses)
  are rejected by index, naming the field, and the others are kept, whether the array is compact,
  pretty-printed or sent as JSON lines; the counts always match the rows sent;
- cross-site writes: a POST must be declared as JSON or JSON lines, a foreign ``Origin`` is refused,
  and the ``Host`` must be the address the daemon listens on (DNS rebinding) unless configured.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml
from test_ingest_api import AUTH, LABELS, MODEL, PREDICTIONS, TOKEN, accepted_in_db, row, running, stored, write_ingest_project

from monitor.client import MonitorClient
from monitor.server.hosts import url_host

NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
NAN_AT = 6


@pytest.fixture
def no_token(tmp_path):
    """The daemon on loopback without a token: the case a page in the user's browser could write to."""
    with running(write_ingest_project(tmp_path, token=None)) as pair:
        yield pair


@pytest.fixture
def with_token(tmp_path):
    with running(write_ingest_project(tmp_path)) as pair:
        yield pair


def ten_rows_one_nan() -> list[dict]:
    rows = [row(f"r{i}", amount=float(i)) for i in range(10)]
    rows[NAN_AT]["features"]["amount"] = float("nan")
    return rows


def assert_nine_and_the_nan_named(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (9, 1), body
    [error] = body["errors"]
    assert (error["index"], error["id"]) == (NAN_AT, f"r{NAN_AT}")
    assert "feature 'amount' is NaN" in error["reason"]


# -- one bad value ----------------------------------------------------------------------------------


@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "pretty-printed"])
def test_an_array_with_one_nan_takes_the_nine_others_and_names_the_tenth(with_token, indent):
    daemon, client = with_token
    body = json.dumps(ten_rows_one_nan(), indent=indent).encode()  # the stdlib writes NaN, as pandas users do
    assert b"NaN" in body and (indent is None) == (b"\n" not in body)

    assert_nine_and_the_nan_named(client.post(PREDICTIONS, content=body, headers=AUTH | JSON))

    assert accepted_in_db(daemon) == 9
    assert stored(daemon, "SELECT sum(rejected) FROM ingest_stats WHERE model = :m", m=MODEL)[0][0] == 1
    kept = {r[0] for r in stored(daemon, "SELECT row_id FROM samples WHERE model = :m", m=MODEL)}
    assert kept == {f"r{i}" for i in range(10) if i != NAN_AT}


def test_json_lines_with_a_nan_on_one_line_reject_that_line_only(with_token):
    daemon, client = with_token
    rows = ten_rows_one_nan()
    rows[2]["latency_ms"] = float("inf")
    body = b"\n".join(json.dumps(r).encode() for r in rows) + b"\n"

    response = client.post(PREDICTIONS, content=body, headers=AUTH | NDJSON)

    assert response.status_code == 400
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (8, 2)
    assert [(e["index"], e["id"]) for e in result["errors"]] == [(2, "r2"), (NAN_AT, f"r{NAN_AT}")]
    assert "latency_ms is Infinity" in result["errors"][0]["reason"]
    assert "feature 'amount' is NaN" in result["errors"][1]["reason"]
    assert accepted_in_db(daemon) == 8


def test_a_nan_on_the_first_line_of_json_lines_is_still_json_lines(with_token):
    daemon, client = with_token
    rows = ten_rows_one_nan()
    rows.insert(0, rows.pop(NAN_AT))
    body = b"\n".join(json.dumps(r).encode() for r in rows)
    response = client.post(PREDICTIONS, content=body, headers=AUTH | NDJSON)
    assert (response.json()["accepted"], response.json()["rejected"]) == (9, 1)
    assert response.json()["errors"][0]["index"] == 0
    assert accepted_in_db(daemon) == 9


def test_a_broken_pretty_printed_array_is_one_bad_document_not_a_hundred_bad_rows(with_token):
    daemon, client = with_token
    body = json.dumps([row(f"r{i}") for i in range(10)], indent=2).encode()[:-40]  # cut short
    response = client.post(PREDICTIONS, content=body, headers=AUTH | JSON)
    assert response.status_code == 400
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (0, 0)
    assert result["error"].startswith("body is not JSON (line ")
    assert stored(daemon, "SELECT count(*) FROM ingest_stats WHERE model = :m", m=MODEL)[0][0] == 0


def test_a_value_that_cannot_be_stored_or_echoed_is_rejected_by_row(with_token):
    """The stdlib parser also reads what orjson would refuse: an overflowing number, a lone surrogate.
    Such a row is named (its unprintable id left out) and the answer is still JSON."""
    daemon, client = with_token
    body = (
        b'[{"id": "big", "ts": %d, "features": {"amount": 1e400, "country": "DE"}, "prediction": 1},'
        b' {"id": "\\ud800", "features": {"amount": 1, "country": "DE"}, "prediction": 1},'
        b' {"id": "fine", "features": {"amount": NaN, "country": "DE"}, "prediction": -Infinity}]' % int(time.time())
    )
    response = client.post(PREDICTIONS, content=body, headers=AUTH | JSON)
    assert response.status_code == 400
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (0, 3)
    errors = result["errors"]
    assert (errors[0]["id"], errors[0]["index"]) == ("big", 0) and "feature 'amount' is Infinity" in errors[0]["reason"]
    assert "id" not in errors[1] and "not valid Unicode" in errors[1]["reason"]
    assert "feature 'amount' is NaN" in errors[2]["reason"] and "prediction is -Infinity" in errors[2]["reason"]
    assert accepted_in_db(daemon) == 0


def test_labels_with_a_nan_reject_that_label_only(with_token):
    daemon, client = with_token
    assert client.post(PREDICTIONS, json=[row(f"p{i}") for i in range(3)], headers=AUTH).status_code == 202
    body = json.dumps([{"id": "p0", "label": 1}, {"id": "p1", "label": float("nan")}, {"id": "p2", "label": 0}], indent=2)
    response = client.post(LABELS, content=body, headers=AUTH | JSON)
    assert response.status_code == 400
    result = response.json()
    assert (result["accepted"], result["rejected"], result["matched"]) == (2, 1, 2)
    assert result["errors"][0]["index"] == 1 and "label is NaN" in result["errors"][0]["reason"]


# -- cross-site writes ---------------------------------------------------------------------------------


def test_a_text_plain_post_is_415_and_names_the_accepted_types(no_token):
    daemon, client = no_token
    body = json.dumps([row("csrf")])
    for declared in ("text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = client.post(PREDICTIONS, content=body, headers={"Content-Type": declared})
        assert response.status_code == 415, (declared, response.text)
        assert "application/json" in response.json()["error"] and "application/x-ndjson" in response.json()["error"]
    for declared in ("application/json", "Application/JSON; charset=utf-8", "application/x-ndjson", "application/jsonl"):
        assert client.post(PREDICTIONS, content=body, headers={"Content-Type": declared}).status_code == 202, declared
    assert accepted_in_db(daemon) == 4


def test_a_foreign_origin_is_403_and_nothing_is_counted(no_token):
    daemon, client = no_token
    port = daemon.http.port
    for origin in ("https://evil.example", f"http://evil.example:{port}", "http://localhost:3000", "null"):
        for headers in (JSON, {"Content-Type": "text/plain"}):
            response = client.post(PREDICTIONS, json=[row("csrf")], headers=headers | {"Origin": origin})
            assert response.status_code == 403, (origin, response.text)
            assert "Origin" in response.json()["error"]
        assert client.get("/", headers={"Origin": origin}).status_code == 403
    assert accepted_in_db(daemon) == 0
    # The daemon's own origin, as its status page would send it, is taken.
    same = client.post(PREDICTIONS, json=[row("ok")], headers={"Origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 202
    assert accepted_in_db(daemon) == 1


def test_a_foreign_host_is_misdirected_dns_rebinding_gets_nothing(no_token):
    daemon, client = no_token
    port = daemon.http.port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"10.0.0.1:{port}"):
        for method, path in (("GET", "/"), ("GET", "/metrics"), ("GET", "/healthz"), ("POST", PREDICTIONS)):
            kwargs = {"json": [row("rebound")]} if method == "POST" else {}
            response = client.request(method, path, headers={"Host": host}, **kwargs)
            assert response.status_code == 421, (host, path, response.text)
            assert "misdirected" in response.json()["error"] and "server.allowed_hosts" in response.json()["error"]
    assert client.get("/", headers={"Host": "bad host"}).status_code == 400
    assert accepted_in_db(daemon) == 0
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", f"[::1]:{port}", "localhost"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_and_the_public_urls_name_admit_a_proxy(tmp_path):
    config = write_ingest_project(tmp_path, token=None)
    document = yaml.safe_load(config.read_text())
    document["server"]["allowed_hosts"] = ["monitor.internal", "proxy.example:8443"]
    document["server"]["public_url"] = "https://monitor.example.com/ml"  # where its links are opened: a name of its own
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    with running(config) as (daemon, client):
        assert client.get("/healthz", headers={"Host": "monitor.example.com"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "monitor.internal:8321"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "Monitor.Internal"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "proxy.example:8443"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "proxy.example:9000"}).status_code == 421
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 421
        reached = client.post(
            PREDICTIONS,
            json=[row("via-proxy")],
            headers={"Host": "monitor.internal", "Origin": "https://monitor.internal"},
        )
        assert reached.status_code == 202 and accepted_in_db(daemon) == 1


def test_a_public_url_names_one_host_never_any():
    assert url_host("https://monitor.example.com:8443/ml") == ["monitor.example.com"]
    assert url_host("http://*/") == [] and url_host("http://*.example.com/") == []  # not allowed_hosts' "*"
    assert url_host(None) == []


def test_the_python_client_still_delivers(with_token):
    """It sends JSON lines declared as application/x-ndjson, with no Origin, to the daemon's own address."""
    daemon, client = with_token
    sender = MonitorClient(daemon.http.url, MODEL, token=TOKEN, flush_interval=0.05)
    try:
        for i in range(25):
            sender.log_prediction(f"c{i}", {"amount": float(i), "country": "DE"}, 0.5, latency_ms=3.0)
        assert sender.flush(timeout=20)
        sender.log_label("c0", 1)
        assert sender.flush(timeout=20)
        stats = sender.stats()
    finally:
        sender.close()
    assert stats["last_error"] is None, stats
    assert (stats["sent"].predictions, stats["rejected"].total, stats["dropped"].total) == (25, 0, 0)
    assert stats["sent"].labels == 1
    assert accepted_in_db(daemon) == 25
    assert stored(daemon, "SELECT label FROM samples WHERE model = :m AND row_id = 'c0'", m=MODEL)[0][0] in (1, "1")
