"""The dead man's switch: while healthy the daemon pings its heartbeat URL (GET), while it has a problem
it pings ``/fail`` with the problems, as Healthchecks.io expects; a ping that cannot go out is logged
without the URL (it holds the check's secret). A real HTTP server on loopback."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor.daemon.heartbeat import Heartbeat
from monitor.health import Health

SECRET = "5f1e2d9a-0c3b-4c77-9a8e-ping"


class PingServer:
    def __init__(self) -> None:
        self.pings: list[tuple[str, str, str]] = []
        pings = self.pings

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                pings.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/{SECRET}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pings():
    server = PingServer()
    yield server
    server.stop()


def test_healthy_pings_and_a_problem_pings_fail_with_it(pings):
    health = Health()
    heartbeat = Heartbeat(pings.url, health)
    assert heartbeat.beat()
    health.failing("delivery", "3 notification(s) undelivered for more than 10m")
    assert heartbeat.beat()
    health.recovered("delivery")
    assert heartbeat.beat()
    assert pings.pings == [
        ("GET", f"/ping/{SECRET}", ""),
        ("POST", f"/ping/{SECRET}/fail", "delivery: 3 notification(s) undelivered for more than 10m"),
        ("GET", f"/ping/{SECRET}", ""),
    ]


def test_a_ping_that_cannot_go_out_is_logged_once_without_its_url(pings, caplog):
    url = pings.url
    pings.stop()
    heartbeat = Heartbeat(url, Health())
    with caplog.at_level(logging.INFO, logger="monitor"):
        assert not heartbeat.beat()
        assert not heartbeat.beat()
    told = [r.getMessage() for r in caplog.records if r.name.startswith("monitor")]
    assert told == ["heartbeat not sent: ConnectError; trying again next time"]
    assert SECRET not in caplog.text
