"""Slow and many clients, over real loopback sockets against the real daemon (see test_ingest_api):

- a request's head must be complete within ``server.header_timeout`` (one deadline for the whole head,
  re-armed after each answer on a keep-alive connection), else the connection is closed;
- a body must be received whole within ``server.body_timeout``, else 408 and the connection closed;
- a permit (``ingest.max_concurrent_requests``) is held only while a body is parsed and stored, so
  slow senders cannot lock a normal client out; ``ingest.max_requests_per_client`` bounds one address;
- ``server.max_connections`` caps the open connections, ``server.max_connections_per_client`` those of one address;
- a client that hangs up mid-body is one log line (then at most one a minute), its traceback at debug.

Clients of other addresses are sockets bound to 127.0.0.2 and up, which Linux routes to loopback.
Waits are selects on the socket, or polls of what the daemon shows, each bounded by a deadline.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import logging
import select
import socket
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from test_ingest_api import AUTH, PREDICTIONS, TOKEN, accepted_in_db, lines, row, running, write_ingest_project

SLACK = 5.0  # on top of a configured timeout: what a loaded machine may add before the server acts


def configured(root: Path, database_url: str | None = None, *, max_concurrent: int = 1, server=None, ingest=None) -> Path:
    """The ingest project of test_ingest_api, with these ``server`` and ``ingest`` keys on top."""
    config = write_ingest_project(root, database_url, max_concurrent=max_concurrent)
    document = yaml.safe_load(config.read_text())
    document["server"].update(server or {})
    document["ingest"].update(ingest or {})
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


def connect(daemon, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection to the daemon from the loopback address ``source``."""
    return socket.create_connection(("127.0.0.1", daemon.http.port), timeout=30, source_address=(source, 0))


def head(daemon, length: int, *, close: bool = False, path: str = PREDICTIONS) -> bytes:
    """The head of a POST of ``length`` bytes of JSON lines."""
    text = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.http.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\n"
    )
    return (text + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def answer(sock: socket.socket, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """The next response on ``sock``: status, headers (lower-case names), body."""
    sock.settimeout(timeout)
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    response.close()  # the socket stays open; only http.client's file over it is closed
    return response.status, {name.lower(): value for name, value in response.getheaders()}, body


def post(daemon, body: bytes, *, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One whole request on a connection of its own, from ``source``."""
    with connect(daemon, source) as sock:
        sock.sendall(head(daemon, len(body), close=True) + body)
        return answer(sock)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the daemon closes ``sock`` within ``seconds``; what it sends meanwhile is read and dropped."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    return False


def start_slow(daemon, body: bytes, source: str = "127.0.0.1") -> socket.socket:
    """A request whose head and the first half of whose body are sent; the rest is up to the test."""
    sock = connect(daemon, source)
    sock.sendall(head(daemon, len(body)) + body[: len(body) // 2])
    return sock


def wait_in_flight(daemon, source: str = "127.0.0.1", timeout: float = 15) -> None:
    """Until the daemon refuses ``source`` for its requests in flight (``max_requests_per_client`` held).

    The probe's body is empty: while the slow requests are not all being received yet it is a 400 that
    counts nothing."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, text = post(daemon, b"", source=source)
        if status == 429:
            return
        assert status == 400, text
        assert time.monotonic() < deadline, f"the slow requests of {source} never came to be in flight"


def healthz(daemon) -> bytes:
    """A whole ``GET /healthz`` request."""
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{daemon.http.port}\r\n\r\n".encode()


def hold_open(daemon, sockets: list[socket.socket], count: int, source: str = "127.0.0.1") -> None:
    """Open ``count`` connections from ``source`` into ``sockets``, each served once, then kept open by a
    head begun (no keep-alive expiry)."""
    for _ in range(count):
        sock = connect(daemon, source)
        sockets.append(sock)
        sock.sendall(healthz(daemon))
        assert answer(sock)[0] == 200  # accepted and served: one of the ``count``
        sock.sendall(healthz(daemon)[:10])


def served_once_one_closed(daemon, source: str = "127.0.0.1", timeout: float = 15) -> int:
    """The status of a ``GET /healthz`` on a new connection from ``source``, tried until one is answered:
    the server sees a client's close a moment later, and until then a newcomer is still past the cap."""
    deadline = time.monotonic() + timeout
    while True:
        with connect(daemon, source) as sock:
            try:
                sock.sendall(healthz(daemon))
                return answer(sock, timeout=SLACK)[0]
            except (ConnectionError, http.client.HTTPException):
                assert time.monotonic() < deadline, f"no connection from {source} was served after one closed"


def served_once_free(client: httpx.Client, body: bytes, timeout: float = 15) -> httpx.Response:
    """Post ``body`` until it is not refused for the requests in flight (a hang-up is noticed by the server
    a moment after the client's close); returns the answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.post(PREDICTIONS, content=body, headers=AUTH)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response


# -- the head -------------------------------------------------------------------------------------------


@pytest.fixture
def quick_heads(tmp_path):
    """``header_timeout: 300ms``; bodies have long enough."""
    with running(configured(tmp_path, server={"header_timeout": "300ms", "body_timeout": "30s"})) as pair:
        yield pair


def test_half_sent_headers_and_a_silent_connection_are_closed_at_the_header_deadline(quick_heads, caplog):
    """The half-sent head is a warning; the connection that sent nothing is only idle (a browser's
    preconnect, say), closed with a line at debug level."""
    caplog.set_level(logging.DEBUG, logger="monitor.server")
    daemon, client = quick_heads
    started = time.monotonic()
    half = connect(daemon)
    silent = connect(daemon)
    half.sendall(head(daemon, 10)[:30])  # half of the request line and no more
    try:
        assert closed_within(half, 0.3 + SLACK)
        assert closed_within(silent, 0.3 + SLACK)
        assert time.monotonic() - started >= 0.3  # the deadline closed them, not something sooner
        half_port, silent_port = half.getsockname()[1], silent.getsockname()[1]
    finally:
        half.close()
        silent.close()
    assert client.get("/healthz").status_code == 200  # the server itself is fine
    said = sorted((r.levelname, r.getMessage()) for r in caplog.records if r.name == "monitor.server")
    within = "within 0.3s (server.header_timeout)"
    assert said == [  # sorted: the two deadlines end together, and either may be handled first
        ("DEBUG", f"closed an idle connection from 127.0.0.1:{silent_port}: no request {within}"),
        ("WARNING", f"closed a connection from 127.0.0.1:{half_port}: no complete request headers {within}"),
    ]


def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline_for_the_whole_head(quick_heads):
    """One deadline for the head, not one per byte: sending a byte every 20 ms would keep a per-read
    timeout of 300 ms from ever firing, and this head would take over 6 s."""
    daemon, _ = quick_heads
    trickled = head(daemon, 10) + b"".join(f"X-Padding-{i}: {'x' * 20}\r\n".encode() for i in range(10))
    assert len(trickled) * 0.02 > 6
    sock = connect(daemon)
    started = time.monotonic()
    closed = False
    try:
        for byte in trickled:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if select.select([sock], [], [], 0.02)[0]:  # the pace of the trickle, watching for the close
                closed = closed_within(sock, 0)
                break
        closed = closed or closed_within(sock, 0.3 + SLACK)
        cut_after = time.monotonic() - started
    finally:
        sock.close()
    assert closed and 0.3 <= cut_after < 0.3 + SLACK, cut_after


def test_the_deadline_ends_with_the_head_and_starts_again_after_each_answer(quick_heads):
    """A body may take longer than the header deadline (it has its own), a keep-alive connection serves
    one request after another, and the next head must again be whole within the deadline."""
    daemon, _ = quick_heads
    body = lines(*[row(f"kept-{i}") for i in range(5)])
    with connect(daemon) as sock:
        sock.sendall(head(daemon, len(body)) + body[:40])
        assert not select.select([sock], [], [], 0.9)[0]  # three header deadlines: neither closed nor answered
        sock.sendall(body[40:])
        status, headers, text = answer(sock)
        assert status == 202, text
        assert headers.get("connection") != "close"

        again = lines(row("kept-again"))
        sock.sendall(head(daemon, len(again)) + again)
        assert answer(sock)[0] == 202  # the same connection

        sock.sendall(head(daemon, 10)[:20])  # the next head, begun and not finished
        started = time.monotonic()
        assert closed_within(sock, 0.3 + SLACK)
        assert time.monotonic() - started >= 0.25
    assert accepted_in_db(daemon) == 6


# -- the body -------------------------------------------------------------------------------------------


def test_a_stalled_body_is_408_and_closed_and_nothing_is_counted(tmp_path, caplog):
    """``body_timeout: 300ms`` and one request in flight per client: the 408 frees the client's slot."""
    caplog.set_level(logging.INFO, logger="monitor.server")
    config = configured(tmp_path, server={"body_timeout": "300ms"}, ingest={"max_requests_per_client": 1})
    with running(config) as (daemon, client):
        body = lines(*[row(f"stalled-{i}") for i in range(10)])
        started = time.monotonic()
        with start_slow(daemon, body) as sock:
            status, headers, text = answer(sock)
            waited = time.monotonic() - started
            assert status == 408, text
            assert headers["connection"] == "close"
            assert b"body not received within 0.3s" in text
            assert closed_within(sock, SLACK)
        assert 0.3 <= waited < 0.3 + SLACK, waited
        assert accepted_in_db(daemon) == 0

        whole = client.post(PREDICTIONS, content=body, headers=AUTH)
        assert (whole.status_code, whole.json()) == (202, {"accepted": 10, "rejected": 0})
        assert accepted_in_db(daemon) == 10
    said = [r.getMessage() for r in caplog.records if r.name == "monitor.server" and r.levelno >= logging.WARNING]
    assert said == ["answered 408 to 127.0.0.1: its body was not received whole within 0.3s (server.body_timeout)"]


def test_eight_slow_bodies_do_not_lock_a_normal_client_out(tmp_path):
    """The issue's case: slow senders used to hold the ingest permits while their bodies trickled in,
    and a normal client got 429 for 38 requests of 39. Here 8 slow bodies from 8 addresses (more than
    the 2 permits) are being received while a normal client is served every time."""
    config = configured(tmp_path, max_concurrent=2, ingest={"max_requests_per_client": 1})
    with running(config) as (daemon, client):
        body = lines(*[row(f"slow-{i}") for i in range(4)])
        sources = [f"127.0.0.{i}" for i in range(2, 10)]
        held = {source: start_slow(daemon, body, source) for source in sources}
        try:
            for source in sources:  # each slow request is in the app, its body being received
                wait_in_flight(daemon, source)
            for i in range(20):
                served = client.post(PREDICTIONS, content=lines(row(f"normal-{i}")), headers=AUTH)
                assert served.status_code == 202, (i, served.text)
            assert not select.select(list(held.values()), [], [], 0)[0]  # none of the slow ones answered
            for source, sock in held.items():  # and each is taken whole once its body ends
                sock.sendall(body[len(body) // 2 :])
                status, _, text = answer(sock)
                assert status == 202, (source, text)
        finally:
            for sock in held.values():
                sock.close()
        assert accepted_in_db(daemon) == 20 + 8 * 4


def test_one_client_is_limited_to_its_requests_in_flight_and_others_are_not(tmp_path):
    config = configured(tmp_path, max_concurrent=1, ingest={"max_requests_per_client": 2})
    with running(config) as (daemon, client):
        body = lines(*[row(f"held-{i}") for i in range(3)])
        first, second = start_slow(daemon, body), start_slow(daemon, body)
        try:
            wait_in_flight(daemon)
            refused = client.post(PREDICTIONS, content=lines(row("refused")), headers=AUTH)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"] == "more than 2 requests in flight from 127.0.0.1; retry shortly"
            status, _, text = post(daemon, lines(row("elsewhere")), source="127.0.0.2")
            assert status == 202, text  # another address is not held back

            for sock in (first, second):
                sock.sendall(body[len(body) // 2 :])
                assert answer(sock)[0] == 202
        finally:
            first.close()
            second.close()
        assert accepted_in_db(daemon) == 1 + 2 * 3  # the refused row was not counted: its sender retries it
        again = client.post(PREDICTIONS, content=lines(row("refused")), headers=AUTH)
        assert again.status_code == 202, again.text
        assert accepted_in_db(daemon) == 1 + 2 * 3 + 1


def test_a_client_hanging_up_mid_body_is_one_line_without_a_traceback(tmp_path, caplog):
    """Once, at INFO; its traceback at DEBUG only; a second hang-up within the minute adds no line."""
    caplog.set_level(logging.DEBUG, logger="monitor.server")
    uvicorn_log = logging.getLogger("uvicorn")  # it does not propagate: listen to it directly
    uvicorn_log.addHandler(caplog.handler)
    config = configured(tmp_path, ingest={"max_requests_per_client": 1})
    try:
        with running(config) as (daemon, client):
            body = lines(*[row(f"gone-{i}") for i in range(10)])
            for attempt in range(2):
                sock = start_slow(daemon, body)
                wait_in_flight(daemon)
                sock.close()
                # Served once the hung-up request has let go of the client's only slot.
                served = served_once_free(client, lines(row(f"after-{attempt}")))
                assert served.status_code == 202, served.text
            assert accepted_in_db(daemon) == 2  # the two after; nothing of the hung-up bodies
    finally:
        uvicorn_log.removeHandler(caplog.handler)

    loud = [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith(("monitor.server", "uvicorn"))]
    assert [(r.name, r.levelname, r.getMessage()) for r in loud] == [
        ("monitor.server", "INFO", "127.0.0.1 hung up before its body was received whole; nothing of that request was taken")
    ]
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
    assert not any("Traceback" in r.getMessage() or "Exception in ASGI" in r.getMessage() for r in caplog.records)
    [traced] = [r for r in caplog.records if r.name == "monitor.server" and r.levelno == logging.DEBUG and r.exc_info]
    assert "hung up" in traced.getMessage()


# -- connections ----------------------------------------------------------------------------------------


def test_a_connection_past_the_cap_is_closed_at_once_and_one_is_served_when_another_closes(tmp_path, caplog):
    """``max_connections: 3``, with a header deadline of 30 s so that only the cap closes anything."""
    caplog.set_level(logging.WARNING, logger="monitor.server")
    config = configured(tmp_path, server={"max_connections": 3, "header_timeout": "30s"})
    with running(config) as (daemon, _):
        open_: list[socket.socket] = []
        try:
            hold_open(daemon, open_, 3)

            past = connect(daemon)
            try:
                assert closed_within(past, SLACK)  # at once: well before its 30 s header deadline
            finally:
                past.close()

            open_.pop().close()
            assert served_once_one_closed(daemon) == 200
            assert all(not closed_within(sock, 0) for sock in open_)  # the others are still open
        finally:
            for sock in open_:
                sock.close()
    refusals = [r.getMessage() for r in caplog.records if r.name == "monitor.server"]
    assert refusals and all(m.endswith(": 3 open already (server.max_connections)") for m in refusals), refusals
    assert len(refusals) == 1  # the first refusal is said, the rest within the minute only counted


def test_a_connection_past_the_cap_of_its_address_is_closed_at_once_while_other_addresses_are_served(tmp_path, caplog):
    """``max_connections_per_client: 3``: a fourth connection from 127.0.0.2 is closed at once, while
    127.0.0.3 and 127.0.0.1 (/healthz) are served; once one of the three closes, 127.0.0.2 is served again."""
    caplog.set_level(logging.WARNING, logger="monitor.server")
    config = configured(tmp_path, server={"max_connections_per_client": 3, "header_timeout": "30s"})
    with running(config) as (daemon, client):
        open_: list[socket.socket] = []
        try:
            hold_open(daemon, open_, 3, "127.0.0.2")

            for _ in range(2):  # the second is refused as the first: a refusal does not count for good
                past = connect(daemon, "127.0.0.2")
                try:
                    assert closed_within(past, SLACK)  # at once: well before its 30 s header deadline
                finally:
                    past.close()

            with connect(daemon, "127.0.0.3") as other:  # another address is not held back by 127.0.0.2
                other.sendall(healthz(daemon))
                assert answer(other)[0] == 200
            assert client.get("/healthz").status_code == 200  # httpx, from 127.0.0.1

            open_.pop().close()
            assert served_once_one_closed(daemon, "127.0.0.2") == 200
            assert all(not closed_within(sock, 0) for sock in open_)  # the others are still open
        finally:
            for sock in open_:
                sock.close()
        counts = daemon.http._server.config.http.per_client  # the protocol class's count per address
        deadline = time.monotonic() + 15
        while "127.0.0.2" in counts or "127.0.0.3" in counts:  # every connection, refused ones too, left it
            assert time.monotonic() < deadline, counts
            time.sleep(0.02)
    refusals = [r.getMessage() for r in caplog.records if r.name == "monitor.server"]
    assert refusals == [refusals[0]], refusals  # the first refusal is said, the rest within the minute only counted
    assert refusals[0].startswith("closed a connection from 127.0.0.2:"), refusals
    assert refusals[0].endswith(": 3 open already from 127.0.0.2 (server.max_connections_per_client)"), refusals


# -- the permits ----------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_429_with_retry_after_while_the_only_permit_is_held_by_a_body_being_stored(tmp_path, database_url):
    """``max_concurrent_requests: 1``. A row of a minute three hours ago is not in memory: the sampler
    reads that minute back from ingest_stats, which another session holds locked, so that request holds
    the only permit while it is being stored. Another request meanwhile is 429; once the lock is let go
    the first is taken, and the refused one is taken when sent again."""
    config = configured(tmp_path, database_url, max_concurrent=1)
    with running(config) as (daemon, client):
        locker = sa.create_engine(database_url)
        lock = locker.connect()
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            lock.begin()
            lock.execute(sa.text("LOCK TABLE ingest_stats IN ACCESS EXCLUSIVE MODE"))
            old = lines(row("three-hours-ago", ts=time.time() - 3 * 3600))

            def send_old() -> httpx.Response:
                with httpx.Client(base_url=daemon.http.url, timeout=60) as own:
                    return own.post(PREDICTIONS, content=old, headers=AUTH)

            first = pool.submit(send_old)
            deadline = time.monotonic() + 15
            blocked = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query ILIKE 'SELECT%ingest_stats%'"
            )
            # Autocommit: within one transaction PostgreSQL shows the same snapshot of pg_stat_activity.
            with locker.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
                while not watch.scalar(blocked):  # the first request's read waits for the lock: it has the permit
                    assert not first.done(), first.result().text
                    assert time.monotonic() < deadline, "the first request never reached the database"
                    time.sleep(0.02)

            refused = client.post(PREDICTIONS, content=lines(row("meanwhile")), headers=AUTH)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"] == "too many requests in flight; retry shortly"
            assert not first.done()
        finally:
            lock.rollback()  # let go of the lock whatever happened, or the daemon's stop would wait on it
            lock.close()
            locker.dispose()
        taken = first.result(timeout=30)
        pool.shutdown()
        assert (taken.status_code, taken.json()) == (202, {"accepted": 1, "rejected": 0})
        assert accepted_in_db(daemon) == 1  # the refused row was not counted: its sender retries it
        again = client.post(PREDICTIONS, content=lines(row("meanwhile")), headers=AUTH)
        assert again.status_code == 202, again.text
        assert accepted_in_db(daemon) == 2


def test_bodies_being_received_at_once_are_bounded_in_bytes_and_one_is_served_once_they_end(tmp_path, caplog):
    """``ingest.max_receiving_bytes``: what slow senders hold in memory is bounded over all connections
    (each of them from its own address, so the per-client limit is not what stops them). A body let in
    reserves its declared length, so it is always received whole."""
    body = lines(*[row(f"held-{i}", country="x" * 200) for i in range(12)])  # some 4 KB
    budget = 2 * len(body) + 16  # room for two bodies being received, not for a third
    config = configured(tmp_path, max_concurrent=1, ingest={"max_body_bytes": len(body), "max_receiving_bytes": budget})
    with running(config) as (daemon, client), caplog.at_level(logging.WARNING, logger="monitor.server"):
        held = [start_slow(daemon, body, source=f"127.0.0.{2 + i}") for i in range(2)]
        try:
            third = start_slow(daemon, body, source="127.0.0.9")
            try:
                status, headers, text = answer(third)
            finally:
                third.close()
            assert status == 429, text
            assert int(headers["retry-after"]) >= 1 and headers["connection"] == "close"
            for sock in held:
                sock.sendall(body[len(body) // 2 :])
                assert answer(sock)[0] == 202
        finally:
            for sock in held:
                sock.close()
        assert accepted_in_db(daemon) == 2 * 12  # nothing of the refused body was counted
        again = served_once_free(client, body)
        assert again.status_code == 202, again.text
        assert accepted_in_db(daemon) == 3 * 12
    assert [r.getMessage() for r in caplog.records if "max_receiving_bytes" in r.getMessage()] == [
        f"answered 429 to 127.0.0.9: more than {budget:,} bytes of bodies being received at once (ingest.max_receiving_bytes)"
    ]
