"""Listening beyond loopback, the status page, /metrics and /healthz need the bearer token too, unless
the config makes them public (``server.public``); on loopback they stay open. Over real sockets."""

from __future__ import annotations

import httpx
import pytest
import yaml
from test_ingest_api import AUTH, running, write_ingest_project


def beyond_loopback(root, public: list[str] | None = None):
    config = write_ingest_project(root)
    data = yaml.safe_load(config.read_text())
    data["server"]["listen"] = "0.0.0.0:0"  # every interface; the test itself only calls 127.0.0.1
    if public is not None:
        data["server"]["public"] = public
    config.write_text(yaml.safe_dump(data))
    return config


def local(daemon) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{daemon.http.port}", timeout=30)


@pytest.mark.parametrize("path", ["/", "/metrics", "/healthz"])
def test_beyond_loopback_every_read_needs_the_token(tmp_path, path):
    with running(beyond_loopback(tmp_path)) as (daemon, _), local(daemon) as client:
        refused = client.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "server.public" in refused.json()["error"]
        assert client.get(path, headers=AUTH).status_code == 200


def test_what_the_config_makes_public_needs_none(tmp_path):
    with running(beyond_loopback(tmp_path, public=["healthz", "metrics"])) as (daemon, _), local(daemon) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/").status_code == 401  # the status page was not made public


def test_on_loopback_reads_stay_open(tmp_path):
    with running(write_ingest_project(tmp_path)) as (_, client):
        assert [client.get(path).status_code for path in ("/", "/metrics", "/healthz")] == [200, 200, 200]
