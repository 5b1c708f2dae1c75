"""The ``probe`` kind, end to end: a real HTTP server on loopback that the test starts, a check file
written as a team would, and real evaluations through the daemon (its evaluate and its outbox) on
SQLite and PostgreSQL, with a FixedClock for windows and the SLO period.

- An endpoint that is up, then slow (past the timeout), erroring (500) and down (its port closed),
  then up again: ``up``, ``latency_ms``, ``status_code``, ``availability`` over a rule's window and the
  SLO's burn rates and budget follow; each rule has ONE episode for the outage, and the recovery
  resolves it (the page after its 5m window is clean, the ticket after its 30m one).
- The SLO's rules keep their episodes over a restart, and end when ``slo:`` is removed; the status
  page shows the failed attempt.
- A healthy endpoint is quiet, and a dashboard's query tells the windows of one metric apart.
- ``expect`` reads a JSON path of the answer, with JSON's equality (true is not 1, "2" is not 2); an
  answer too large to read for it is down, its status code kept.
- A target that hangs, or trickles its answer a byte at a time, is cut at the timeout (wall time).
- Header values from ``${VAR}`` are sent, and never stored, logged or shown.
- A probe-only model (no source) through ``monitor validate`` and ``monitor check``.
- A probe that hangs holds no worker another check needs.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from factories import T0, live_frame, write_project

from monitor.checks import probe
from monitor.checks.base import Window
from monitor.checks.probe import ProbeSpec
from monitor.cli import main
from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.server.status import CheckShown, render_status
from monitor.storage.tables import Alert, Base, CheckRun, Metric, Notification

MODEL = "scorer-endpoint"
EVERY = timedelta(seconds=30)
TIMEOUT_S = 1.0  # a healthy loopback answer on a loaded CI machine stays well inside it
SECRET = "tok-3f9a1c77e2b04d5a"


class Endpoint:
    """A model endpoint on loopback: ``up`` (200, ``{"status": "ok"}``), ``slow`` (answers only once the
    phase is over, long past any timeout), ``error`` (500) or ``down`` (nothing listens on its port)."""

    def __init__(self, body: dict | None = None) -> None:
        self.mode = "up"
        self.body = body or {"status": "ok"}
        self.headers: list[dict[str, str]] = []
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def _listen(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.headers.append(dict(self.headers))
                if endpoint.mode == "slow":
                    endpoint._release.wait(30)
                status, body = (500, b"oops") if endpoint.mode == "error" else (200, json.dumps(endpoint.body).encode())
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the probe gave up on a slow answer and went

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server

    def set(self, mode: str) -> None:
        if self.mode == "slow":  # the held answers go out (to nobody: the probes were cut)
            self._release.set()
            self._release = threading.Event()
        if mode == "down" and self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        elif mode != "down" and self._server is None:
            self._listen()
        self.mode = mode

    def close(self) -> None:
        self._release.set()
        self.set("down")


@pytest.fixture
def endpoint():
    served = Endpoint()
    yield served
    served.close()


CHECK_FILE = """\
model: scorer-endpoint
owner: fraud-team
checks:
  - name: endpoint
    kind: probe
    url: {url}
    every: 30s
    timeout: 1s
    headers:
      Authorization: Bearer ${{PROBE_TOKEN}}
    expect: {{path: status, equals: ok}}
    alert:
      - id: availability
        when: availability < 99%
        window: 10m
        severity: critical
    slo:
      objective: 99.9%
      period: 30d
"""


def write_probe_project(root: Path, url: str, database_url: str, check_file: str = CHECK_FILE) -> Path:
    """A daemon config and one probe-only check file (no source, no reference); returns the config path."""
    (root / "checks").mkdir(parents=True, exist_ok=True)
    config = {
        "database": {"url": database_url},
        "server": {"listen": "127.0.0.1:0"},
        "checks_dir": "checks",
        "owners": {"fraud-team": {"slack": "#fraud-alerts", "mention": ["@dana"]}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "checks" / f"{MODEL}.yaml").write_text(check_file.format(url=url))
    return root / "config.yaml"


class Deployment:
    """The daemon on a probe-only project, driven run by run on a FixedClock (a run every 30s)."""

    def __init__(self, root: Path, url: str, database_url: str, check_file: str = CHECK_FILE) -> None:
        project = Project.load(write_probe_project(root, url, database_url, check_file))
        assert not project.checks.issues, project.checks.issues
        self.clock = FixedClock(T0)
        self.console = io.StringIO()
        self.daemon = Daemon(project, clock=self.clock, console=self.console)
        self.daemon.prepare()
        self.model = project.checks.models[MODEL]
        self.check = self.model.checks[0]
        self.engine = self.daemon.engine

    def run(self, times: int = 1) -> list:
        results = []
        for _ in range(times):
            result = self.daemon.evaluate(self.model, self.check)
            assert result is not None
            results.append(result)
            self.daemon.outbox.deliver_due()
            self.clock.advance(EVERY)
        return results

    def series(self, metric: str, window: timedelta | None = None) -> list[float]:
        """One value per run, oldest first; of a windowed metric, the one over ``window``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Metric.value, Metric.window_start, Metric.window_end).where(Metric.metric == metric).order_by(Metric.id)
            ).all()
        return [v for v, start, end in rows if window is None or end - start == window]

    def by_run(self, metric: str) -> dict[int, float]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(Metric.run_id, Metric.value).where(Metric.metric == metric)).all())

    def runs(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(CheckRun.id, CheckRun.outcome, CheckRun.error).order_by(CheckRun.id)).all()

    def alerts(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(Alert.id, Alert.rule_key, Alert.severity, Alert.state, Alert.fired, Alert.resolved).order_by(Alert.id)
            ).all()

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def deployment(tmp_path, database_url, endpoint, monkeypatch):
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    deployed = Deployment(tmp_path, endpoint.url, database_url)
    yield deployed
    deployed.close()


def test_an_outage_is_one_episode_per_rule_with_availability_and_burn_rates_following(deployment, endpoint):
    healthy = deployment.run(30)  # 15 minutes
    phases = {}
    for mode, runs in (("slow", 4), ("error", 6), ("down", 6)):
        endpoint.set(mode)
        began = time.monotonic()
        phases[mode] = deployment.run(runs)
        if mode == "slow":  # each attempt cut at the timeout, not left to hang for 30 s
            assert time.monotonic() - began < runs * (TIMEOUT_S + 0.7)
    endpoint.set("up")
    recovery = deployment.run(70)  # 35 minutes
    outage = phases["slow"] + phases["error"] + phases["down"]

    # Every attempt is stored: up, how long it took, the status when one came, and what went wrong.
    assert deployment.series("up") == [1.0] * 30 + [0.0] * 16 + [1.0] * 70
    latency, status = deployment.by_run("latency_ms"), deployment.by_run("status_code")
    for result in phases["slow"]:
        assert TIMEOUT_S * 1000 <= latency[result.run_id] < TIMEOUT_S * 1000 + 700
        assert result.run_id not in status
    assert {status[r.run_id] for r in healthy + recovery} == {200.0}
    assert {status[r.run_id] for r in phases["error"]} == {500.0}
    assert not {r.run_id for r in phases["down"]} & status.keys()
    errors = {run.id: run.error for run in deployment.runs()}
    assert {errors[r.run_id] for r in phases["slow"]} == {"attempt failed: no answer within the timeout of 1s"}
    assert {errors[r.run_id] for r in phases["error"]} == {"attempt failed: HTTP 500, expected 2xx"}
    assert {errors[r.run_id] for r in phases["down"]} == {"attempt failed: could not connect: ECONNREFUSED (Connection refused)"}
    assert {errors[r.run_id] for r in healthy + recovery} == {None}
    # A failed attempt is a run like any other (a breach while its rules hold), never an error run.
    assert {r.outcome for r in outage} == {"breach"}
    assert "error" not in {run.outcome for run in deployment.runs()}
    assert healthy[-1].outcome == "ok" and recovery[-1].outcome == "ok"

    # availability over the rule's 10m window: 20 attempts, this one included.
    availability = deployment.series("availability", timedelta(minutes=10))
    assert availability[: 30 - 10 + 1] == [1.0] * 21  # judged from the 10th attempt on
    assert availability[21] == pytest.approx(19 / 20)  # the first failed attempt
    assert min(availability) == pytest.approx(4 / 20)  # 16 of the last 20 failed
    assert availability[-1] == 1.0
    # The SLO's burn rate over each of its alerts' windows, and its budget over the period.
    burn_5m = deployment.series("burn_rate", timedelta(minutes=5))
    assert max(burn_5m) == pytest.approx(1000)  # ten failures in ten: 100% errors / 0.1% budget
    assert burn_5m[-1] == 0.0
    for window in (timedelta(minutes=30), timedelta(hours=1), timedelta(hours=6), timedelta(days=30)):
        assert deployment.series("burn_rate", window), window
    budget = deployment.series("error_budget_remaining", timedelta(days=30))
    assert budget[0] == 1.0
    # 30 days of a probe every 30s is 86,400 attempts; 0.1% of them, 86.4, may fail: 16 did.
    assert budget[-1] == pytest.approx(1 - 16 / 86.4)

    # One episode per rule for the whole outage, and each resolved by the recovery.
    alerts = deployment.alerts()
    assert [(a.rule_key, a.severity, a.state) for a in alerts] == [
        ("availability", "critical", "resolved"),
        ("slo-page", "critical", "resolved"),
        ("slo-ticket", "warning", "resolved"),
    ]
    first_failure = T0 + 30 * EVERY
    assert {a.fired for a in alerts} == {first_failure}
    recovered = first_failure + 16 * EVERY
    resolved = {a.rule_key: a.resolved - recovered + EVERY for a in alerts}
    # Each resolves at the first run whose window (this attempt included) holds no failure: the page's
    # 5m, the availability rule's 10m, the ticket's 30m (its 6h window still burns past 6x).
    assert resolved == {
        "slo-page": timedelta(minutes=5),
        "availability": timedelta(minutes=10),
        "slo-ticket": timedelta(minutes=30),
    }
    with deployment.engine.connect() as conn:
        sent = conn.execute(
            sa.select(Notification.alert_id, Notification.event, Notification.status).order_by(Notification.id)
        ).all()
        [incident] = set(conn.scalars(sa.select(Alert.incident_id)))
    # The three are one incident, told once as it opens, as each of the first two resolves, and at its end.
    assert sent == [(incident, event, "sent") for event in ("firing", "updated", "updated", "resolved")]

    told = deployment.console.getvalue()
    assert "[FIRING critical] scorer-endpoint / endpoint: burn_rate = " in told
    assert "burn_rate: 32.26 over 1h, 100 over 5m; the rule holds while each is > 14.4" in told
    assert "error_budget_remaining: 0.9884 over the last 30d" in told
    assert "attempt failed: no answer within the timeout of 1s" in told
    assert "window: last 1h and 5m (" in told
    assert "also firing: availability < 99%, 0.95 (critical)" in told


def test_slo_episodes_outlive_a_restart_and_end_with_their_slo(deployment, endpoint):
    """The SLO's rules are the check's own: a restart keeps their open episodes, and removing ``slo:``
    from the file closes them, as it would a rule removed from ``alert:``."""
    deployment.run(30)
    endpoint.set("error")
    deployment.run(2)
    # The status page's detail column shows what the last attempt found, and each run's bar when and why.
    page = render_status(deployment.engine, {MODEL: [CheckShown("endpoint", "probe")]}, {})
    assert "attempt failed: HTTP 500, expected 2xx" in page
    bars = re.findall(r"<span class='(\w+)' title='([^']*)'></span>", page)
    assert bars[-1] == (
        "breach",
        f"{deployment.clock.now() - EVERY:%Y-%m-%d %H:%M:%S} UTC breach: attempt failed: HTTP 500, expected 2xx",
    )
    assert bars[-3][0] == "ok" and bars[-3][1].endswith(" UTC ok")
    firing = {a.rule_key for a in deployment.alerts() if a.state == "firing"}
    assert firing == {"availability", "slo-page", "slo-ticket"}

    restarted = Daemon(Project.load(deployment.daemon.project.config_path), clock=deployment.clock)
    restarted.prepare()  # closes the episodes no rule of the files can move
    assert {a.rule_key for a in deployment.alerts() if a.state == "firing"} == firing
    restarted.engine.dispose()

    path = deployment.daemon.project.config_path.parent / "checks" / f"{MODEL}.yaml"
    path.write_text(path.read_text().split("    slo:")[0])
    edited = Daemon(Project.load(deployment.daemon.project.config_path), clock=deployment.clock)
    edited.prepare()
    edited.engine.dispose()
    assert {(a.rule_key, a.state) for a in deployment.alerts()} == {
        ("availability", "firing"),
        ("slo-page", "resolved"),
        ("slo-ticket", "resolved"),
    }


def test_a_healthy_endpoint_is_quiet(deployment):
    results = deployment.run(100)  # 50 minutes
    assert {r.outcome for r in results} == {"ok"}
    assert set(deployment.series("up")) == {1.0}
    assert set(deployment.series("availability")) == {1.0}
    assert set(deployment.series("burn_rate")) == {0.0}
    assert set(deployment.series("error_budget_remaining")) == {1.0}
    assert all(latency < TIMEOUT_S * 1000 for latency in deployment.series("latency_ms"))
    assert deployment.alerts() == []
    assert deployment.console.getvalue() == ""
    # A dashboard tells the windows of one metric apart by their length (the query of docs/alerting.md).
    lasting = {
        "postgresql": "window_end - window_start = interval '1 hour'",
        "sqlite": "round((julianday(window_end) - julianday(window_start)) * 86400) = 3600",
    }[deployment.engine.dialect.name]
    query = f"SELECT value, sample_size FROM metrics WHERE metric = 'burn_rate' AND {lasting} ORDER BY time"
    with deployment.engine.connect() as conn:
        hourly = conn.execute(sa.text(query)).all()
    assert len(hourly) == 100 - 9 and hourly[-1] == (0.0, 100)  # judged from the 10th attempt on
    # Until a window holds enough attempts its rules wait, and the run says so.
    first = results[0].evaluation.evidence["windows_not_judged"]
    assert {"window": "10m", "values": 1, "needed": 10} in first
    assert "windows_not_judged" not in results[20].evaluation.evidence


@pytest.fixture(scope="module")
def json_endpoint():
    served = Endpoint(body={"version": 2.0, "checks": [{"ok": True, "state": "warm"}, {"ok": 1, "state": "ready"}]})
    yield served
    served.close()


@pytest.mark.parametrize(
    ("expect", "error"),
    [
        ({"path": "checks[1].state", "equals": "ready"}, None),
        ({"path": "$.version", "equals": 2}, None),  # 2 is 2.0
        ({"path": "checks[0].ok", "equals": True}, None),
        ({"path": "checks[1].ok", "equals": True}, "checks[1].ok is 1, expected true"),  # 1 is not true
        ({"path": "version", "equals": "2"}, 'version is 2.0, expected "2"'),
        ({"path": "checks[2].state", "equals": "ready"}, "no checks[2] in the response"),
        ({"path": "model.name", "equals": "x"}, "no model in the response"),
    ],
)
def test_expect_reads_a_json_path_of_the_answer(json_endpoint, expect, error):
    spec = ProbeSpec.model_validate({"name": "p", "kind": "probe", "url": json_endpoint.url, "every": "30s", "expect": expect})
    evaluation = probe.evaluate(spec, Window(T0 - EVERY, T0, pd.DataFrame()), None, [])
    values = {v.metric: v.value for v in evaluation.values}
    assert (values["up"], values["status_code"]) == (0.0 if error else 1.0, 200.0)
    assert evaluation.error == (f"attempt failed: {error}" if error else None)
    assert evaluation.outcome == "ok"


def test_an_answer_too_large_for_expect_is_down_with_its_status_kept():
    served = Endpoint(body={"status": "ok", "padding": "x" * (probe.MAX_BODY_BYTES + 1)})
    try:
        spec = ProbeSpec.model_validate(
            {"name": "p", "kind": "probe", "url": served.url, "every": "30s", "expect": {"path": "status", "equals": "ok"}}
        )
        evaluation = probe.evaluate(spec, Window(T0 - EVERY, T0, pd.DataFrame()), None, [])
    finally:
        served.close()
    values = {v.metric: v.value for v in evaluation.values}
    assert (values["up"], values["status_code"]) == (0.0, 200.0)
    assert evaluation.error == "attempt failed: the response is larger than 1024 KiB: too large to read for expect"


class Hanging:
    """A target that takes the connection and then answers nothing (``trickle``: its status line and then
    one byte of a header every 50 ms, so that no single read ever waits long)."""

    def __init__(self, trickle: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.trickle = trickle
        self.stop = threading.Event()
        self.connections = 0
        self.arrived = threading.Semaphore(0)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self.arrived.release()
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            if self.trickle:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.stop.wait(0.05):
                    try:
                        conn.sendall(b"X")
                    except OSError:
                        return
            self.stop.wait(30)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_target_that_hangs_is_cut_at_the_timeout_and_counted_down(tmp_path, sqlite_engine, trickle, monkeypatch):
    target = Hanging(trickle)
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    deployed = Deployment(tmp_path, f"http://127.0.0.1:{target.port}/healthz", f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        began = time.monotonic()
        [result] = deployed.run()
        took = time.monotonic() - began
    finally:
        target.close()
        deployed.close()
    assert target.connections == 1
    assert took < TIMEOUT_S + 1.5  # cut at the timeout, not left to hang (30 s); generous for a loaded machine
    values = {v.metric: v.value for v in result.evaluation.values}
    assert values["up"] == 0.0 and TIMEOUT_S * 1000 <= values["latency_ms"] < TIMEOUT_S * 1000 + 1000
    assert "status_code" not in values
    assert result.evaluation.error == "attempt failed: no answer within the timeout of 1s"
    assert result.evaluation.evidence["failure"] == "timeout"


def test_header_values_from_the_environment_are_sent_and_never_stored_or_logged(tmp_path, database_url, monkeypatch, caplog):
    # The endpoint even echoes the token back where expect reads: the failure names it blanked.
    endpoint = Endpoint(body={"status": f"Bearer {SECRET}"})
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    deployed = Deployment(tmp_path, endpoint.url, database_url)
    try:
        deployed.run(15)
        endpoint.set("error")
        deployed.run(3)
        tables = {}
        with deployed.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                tables[table.name] = [tuple(row) for row in conn.execute(sa.select(table))]
    finally:
        endpoint.close()
        deployed.close()
    assert {h["Authorization"] for h in endpoint.headers} == {f"Bearer {SECRET}"}
    assert len(endpoint.headers) == 18
    assert tables["metrics"] and tables["check_runs"] and tables["notifications"]
    stored = repr(tables)
    assert SECRET not in stored
    assert 'attempt failed: status is "***", expected "ok"' in stored
    assert SECRET not in caplog.text and "PROBE_TOKEN" not in caplog.text
    assert "attempt failed: status is" in caplog.text  # the runs were logged, blanked
    assert SECRET not in deployed.console.getvalue()


@pytest.mark.parametrize(
    ("token", "echo"),
    [
        (SECRET, f"denied: key {SECRET} unknown"),  # the token alone, without the Bearer before it
        ('q"uo\\te-9f2c', 'denied: key q"uo\\te-9f2c unknown'),  # shown JSON-escaped: q\"uo\\te-9f2c
        ("k9", "denied: key k9 unknown"),  # shorter than 4 characters
        (SECRET, "x" * 60 + f" {SECRET} " + "y" * 300),  # where the long text is cut
    ],
    ids=["part", "json-escaped", "short", "cut"],
)
def test_a_header_secret_the_endpoint_echoes_in_part_is_blanked(token, echo):
    endpoint = Endpoint(body={"status": echo})
    try:
        spec = ProbeSpec.model_validate(
            {
                "name": "p",
                "kind": "probe",
                "url": endpoint.url,
                "every": "30s",
                "headers": {"Authorization": f"Bearer {token}"},
                "expect": {"path": "status", "equals": "ok"},
            }
        )
        evaluation = probe.evaluate(spec, Window(T0 - EVERY, T0, pd.DataFrame()), None, [])
    finally:
        endpoint.close()
    assert endpoint.headers[0]["Authorization"] == f"Bearer {token}"
    error = evaluation.error or ""
    assert "***" in error and error.endswith(', expected "ok"')
    for shown in (token, json.dumps(token)[1:-1], token[:8]):
        assert shown not in error
    if len(echo) < 100:
        assert error == 'attempt failed: status is "denied: key *** unknown", expected "ok"'


def test_a_partly_echoed_secret_is_not_stored_logged_or_notified(tmp_path, monkeypatch, caplog):
    endpoint = Endpoint(body={"status": f"denied: key {SECRET} unknown"})
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    deployed = Deployment(tmp_path, endpoint.url, f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        deployed.run(12)  # the availability rule fires: a notification is made and sent
        with deployed.engine.connect() as conn:
            tables = {t.name: [tuple(row) for row in conn.execute(sa.select(t))] for t in Base.metadata.sorted_tables}
    finally:
        endpoint.close()
        deployed.close()
    assert tables["check_runs"] and tables["notifications"]
    stored = repr(tables)
    assert 'attempt failed: status is "denied: key *** unknown", expected "ok"' in stored
    assert SECRET not in stored and SECRET not in caplog.text and SECRET not in deployed.console.getvalue()


PROBE_ONLY = """\
model: scorer-endpoint
owner: fraud-team
checks:
  - name: endpoint
    kind: probe
    url: {url}
    every: 1m
    timeout: 2s
    expect_status: [200, 204]
"""


def test_a_probe_only_model_validates_and_checks_from_the_command_line(tmp_path, endpoint, capsys, monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = write_probe_project(tmp_path, endpoint.url, f"sqlite:///{tmp_path / 'monitor.db'}", PROBE_ONLY)

    assert main(["validate", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 model(s), 1 check(s) valid")

    assert main(["check", f"{MODEL}/endpoint", "--dry-run", "--config", str(config)]) == 0  # no database yet
    out = capsys.readouterr().out
    assert "scorer-endpoint/endpoint: ok" in out and "dry run: nothing stored" in out
    assert not (tmp_path / "monitor.db").exists()

    assert main(["check", f"{MODEL}/endpoint", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "  up                    1\n" in out and "  status_code           200\n" in out and "  latency_ms " in out
    assert "stored run #1" in out

    endpoint.set("down")
    assert main(["check", f"{MODEL}/endpoint", "--config", str(config)]) == 0  # a down endpoint is a value
    out = capsys.readouterr().out
    assert "  up                    0\n" in out
    assert "attempt failed: could not connect: ECONNREFUSED (Connection refused)" in out


def test_a_hanging_probe_holds_no_worker_another_check_needs(tmp_path):
    """One worker for the checks over rows; two probes hang on a target for their whole timeout, both at
    once, while the volume check runs and is recorded."""
    target = Hanging()
    write_project(
        tmp_path,
        live=live_frame(200, end=T0),
        checks=[{"name": "volume", "kind": "volume", "every": "1h", "window": "1h"}],
    )
    probes = "\n".join(
        f"  - name: probe-{i}\n    kind: probe\n    url: http://127.0.0.1:{target.port}/\n    every: 1m\n    timeout: 10s"
        for i in range(2)
    )
    (tmp_path / "checks" / "endpoint.yaml").write_text(f"model: endpoint\nowner: fraud-team\nchecks:\n{probes}\n")
    daemon = Daemon(Project.load(tmp_path / "config.yaml"), workers=1)
    try:
        daemon.start()
        assert target.arrived.acquire(timeout=10) and target.arrived.acquire(timeout=10)  # both probes in flight
        deadline = time.monotonic() + 10
        runs: list = []
        while time.monotonic() < deadline and not runs:
            with daemon.engine.connect() as conn:
                runs = conn.execute(sa.select(CheckRun.model, CheckRun.check)).all()
            time.sleep(0.05)  # polling for a run the daemon records, not waiting out a duration
        assert runs == [("fraud-scorer", "volume")]  # recorded while both probes still hang
    finally:
        target.close()
        daemon.stop()
