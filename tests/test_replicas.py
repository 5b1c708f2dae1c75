"""Three ``monitor run`` replicas on one PostgreSQL: each run once per interval across them, a killed
replica's checks taken over within one interval, every notification sent once, ingest through two
replicas counted exactly. Then the pieces on their own: the lease, the liveness of a replica, and the
outbox's recovery leaving a live replica's claims alone (on SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import httpx
import pytest
import sqlalchemy as sa
import yaml
from conftest import PG_HINT, PG_URL, SLACK_TOKEN, _postgres_database, checkout_env
from fakes.slack_api import FakeSlackAPI

from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.reload import fingerprint
from monitor.daemon.service import Daemon
from monitor.ingest.sampler import Sampler
from monitor.sources import SourceContext
from monitor.sources.base import TS
from monitor.sources.ingest import IngestSource, IngestSpec
from monitor.storage import db, leases
from monitor.storage.replicas import Replicas, database_now, this_machine
from monitor.storage.tables import CheckLease, CheckRun, IngestStat, Notification, Replica, table
from tests.factories import T0 as DATA_T0
from tests.factories import live_frame, write_project
from tests.test_slack_delivery import build, fake_slack, posts

TOKEN = "replica-test-token"
EVERY_S = 1
VOLUME_EVERY = timedelta(seconds=EVERY_S)


def write_fleet_project(root: Path, database_url: str, slack_url: str) -> Path:
    """An ingest model with a volume check every second that fires while under 600 rows, and a latency
    check every 2s; Slack on loopback; every replica listens on a port of its own (``:0``)."""
    (root / "checks").mkdir(parents=True)
    config = {
        "database": {"url": database_url},
        "server": {"listen": "127.0.0.1:0", "token": TOKEN},
        "checks_dir": "checks",
        "owners": {"fraud-team": {"slack": "#fraud-alerts"}},
        "notifiers": {"slack": {"token": "xoxb-test", "base_url": slack_url}},
    }
    model = {
        "model": "scorer",
        "owner": "fraud-team",
        "source": {"kind": "ingest", "features": ["amount"], "feature_types": {"amount": "number"}},
        "checks": [
            {"name": "volume", "kind": "volume", "every": f"{EVERY_S}s", "window": "10m", "start_grace": "1s",
             "alert": [{"when": "rows < 600", "severity": "critical"}]},
            {"name": "latency", "kind": "latency", "every": "2s", "window": "10m", "min_rows": 1},
        ],
    }  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "checks" / "scorer.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return root / "config.yaml"


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database (these tests are about PostgreSQL's locking: no SQLite run)."""
    if not PG_URL:
        pytest.skip(PG_HINT)
    yield from _postgres_database()


class ReplicaProcess:
    """One ``monitor run`` process, its log in a file, its HTTP API's address read from the log."""

    def __init__(self, config: Path, name: str) -> None:
        self.log = config.parent / f"{name}.log"
        env = {k: v for k, v in checkout_env().items() if k != "MONITOR_CONFIG"}
        with self.log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                            stdout=subprocess.DEVNULL, stderr=out, env=env)  # fmt: skip
        self.url = ""

    def wait_started(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "monitor started" not in (text := self.log.read_text()):
            assert self.process.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.1)
        found = re.search(r"HTTP API on (http://\S+)", text)
        assert found, text
        self.url = found[1].rstrip("/")

    def post(self, rows: list[dict]) -> None:
        response = httpx.post(f"{self.url}/v1/models/scorer/predictions", json=rows,
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)  # fmt: skip
        assert response.status_code == 202, response.text[:500]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=60) == 0, self.log.read_text()
        return self.log.read_text()


def runs_of(engine: sa.Engine, check: str, model: str = "scorer") -> list[datetime]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                sa.select(CheckRun.started).where(CheckRun.model == model, CheckRun.check == check).order_by(CheckRun.started)
            )
        )


def holder_of(engine: sa.Engine, job: str) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(sa.select(CheckLease.holder).where(CheckLease.job == job))


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


class FleetRun:
    """The three replicas' run, started when collection ends (``@pytest.mark.background``): it mostly
    waits on their schedules, so it goes on beside the other tests. Its scenario runs on a thread; the
    test waits for what it found."""

    def __init__(self) -> None:
        self.found: dict = {}
        self.error: BaseException | None = None
        self._root = Path(tempfile.mkdtemp(prefix="monitor-fleet-"))
        self._databases = _postgres_database() if PG_URL else None
        self._replicas: list[ReplicaProcess] = []
        self._slack = FakeSlackAPI(SLACK_TOKEN).start()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            if self._databases is not None:
                self._scenario(next(self._databases))
        except BaseException as exc:  # handed to the test, which raises it
            self.error = exc

    def _scenario(self, url: str) -> None:
        config = write_fleet_project(self._root, url, self._slack.url)
        engine = db.create_engine(url)
        replicas = self._replicas = [ReplicaProcess(config, f"replica-{i}") for i in range(3)]
        for replica in replicas:
            replica.wait_started()
        wait_until(lambda: len(runs_of(engine, "volume")) >= 5, 60, "five runs of the volume check")
        # The replica that runs the volume check now is killed: its checks move to the others.
        holder = holder_of(engine, "scorer/volume")
        with engine.connect() as conn:
            pids = dict(conn.execute(sa.select(Replica.id, Replica.pid)).all())
        victim = next(r for r in replicas if r.process.pid == pids[holder])
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        killed_at = datetime.now(UTC)
        wait_until(lambda: len([t for t in runs_of(engine, "volume") if t > killed_at]) >= 5, 60, "runs after the kill")
        # 300 rows through each survivor: the volume check counts 600 and the alert resolves.
        survivors = [r for r in replicas if r is not victim]
        now = time.time()
        for number, replica in enumerate(survivors):
            replica.post([{"id": f"r{number}-{i}", "ts": now - 5, "features": {"amount": float(i)}, "prediction": 0.5,
                          "latency_ms": 10.0}
                          for i in range(300)])  # fmt: skip
        # Both checks fired (the latency check on its third run without rows: failing_runs) and resolve.
        wait_until(lambda: Counter((n.event, n.status) for n in notifications(engine)) == {("firing", "sent"): 2, ("resolved", "sent"): 2},
                   60, "both alerts fired and resolved, each told")  # fmt: skip
        logs = [replica.stop() for replica in survivors]
        with engine.connect() as conn:
            counted = conn.execute(
                sa.select(sa.func.sum(IngestStat.accepted), sa.func.count(sa.distinct(IngestStat.writer))).where(
                    IngestStat.model == "scorer"
                )
            ).one()
        self.found = {"logs": logs, "killed_at": killed_at, "volume": runs_of(engine, "volume"),
                      "latency": runs_of(engine, "latency"), "counted": tuple(counted), "sent": notifications(engine),
                      "posted": Counter(c.body["metadata"]["event_payload"]["key"] for c in self._slack.requests
                                        if c.method in ("chat.postMessage", "chat.update") and c.ok)}  # fmt: skip
        engine.dispose()

    def result(self, timeout: float = 180) -> dict:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the fleet's run did not end"
        if self.error is not None:
            raise self.error
        return self.found

    def stop(self) -> None:
        self._thread.join(timeout=180)
        for replica in self._replicas:
            if replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait(timeout=30)
        self._slack.stop()
        if self._databases is not None:
            next(self._databases, None)  # drops the database
        shutil.rmtree(self._root, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.background(start=FleetRun)
def test_three_replicas_run_each_check_once_per_interval_take_over_a_killed_one_and_count_ingest_exactly(background):
    if not PG_URL:
        pytest.skip(PG_HINT)
    found = background.result()
    logs, killed_at, volume, latency, sent = (found[k] for k in ("logs", "killed_at", "volume", "latency", "sent"))
    counted, posted = found["counted"], found["posted"]

    for text in logs:
        assert "Traceback" not in text, text
    # Once per interval across the three: no two runs of a check closer than the interval less the
    # lease's slack (and a little for the scheduler's own timing), whoever ran them.
    for runs, every in ((volume, VOLUME_EVERY), (latency, timedelta(seconds=2))):
        gaps = [(b - a).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
        assert min(gaps) >= (every - leases.slack(every)).total_seconds() - 0.15, gaps
    # Taken over within one interval: the first run after the kill came within an interval of it (the
    # survivors' schedules are the fleet's, so the run due next is taken when due), and none was missed.
    first_after = min(t for t in volume if t > killed_at)
    assert (first_after - killed_at).total_seconds() <= EVERY_S + 0.5, first_after - killed_at
    gaps = [(b - a).total_seconds() for a, b in zip(volume, volume[1:], strict=False)]
    assert max(gaps) <= EVERY_S + 0.5, gaps
    # Every notification once: each alert's firing, then its resolution, each posted to Slack once.
    by_alert: dict[int, list[str]] = {}
    for n in sent:
        by_alert.setdefault(n.alert_id, []).append(n.event)
    assert list(by_alert.values()) == [["firing", "resolved"], ["firing", "resolved"]], sent
    assert len(posted) == 4 and set(posted.values()) == {1}, posted
    # Ingest through two replicas: the exact count, from two writers.
    assert counted == (600, 2)


def notifications(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(Notification.alert_id, Notification.event, Notification.status).order_by(Notification.id)
            ).all()
        )


# -- the pieces ------------------------------------------------------------------------------------------
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_a_run_is_taken_once_per_interval_whichever_replica_asks(engine):
    asked = [("a", T0), ("b", T0 + timedelta(seconds=20)), ("a", T0 + MINUTE), ("b", T0 + MINUTE + timedelta(seconds=20)),
             ("b", T0 + 2 * MINUTE + timedelta(seconds=20)), ("c", T0 + 3 * MINUTE - timedelta(seconds=3))]  # fmt: skip
    answers = [(who, leases.take(engine, "m/c", MINUTE, who, now=at)) for who, at in asked]
    # a takes the first two; at 2m a did not ask (dead), so b took it late; c, 3 s early, is in the slack.
    assert [who for who, answer in answers if answer.taken] == ["a", "a", "b", "c"]
    # Told "not yet", a replica is told when: the fleet's grid, from the last due time (b's late start
    # at 2m20s did not push it back to 3m20s).
    assert [answer.next_due for _, answer in answers if not answer.taken] == [T0 + MINUTE, T0 + 2 * MINUTE]
    assert leases.take(engine, "m/c", MINUTE, "a", now=T0 + 3 * MINUTE) == leases.Answer(False, T0 + 4 * MINUTE)  # c took 3m's


def test_an_edit_runs_at_once_on_the_replica_that_reloaded_it_only(engine):
    assert leases.take(engine, "m/c", MINUTE, "a", "v1", fresh=True, now=T0).taken
    assert not leases.take(engine, "m/c", MINUTE, "a", "v1", now=T0 + timedelta(seconds=10)).taken
    assert leases.take(engine, "m/c", MINUTE, "a", "v2", fresh=True, now=T0 + timedelta(seconds=10)).taken  # reloaded
    # b has not reloaded yet (its files arrive later): its runs of v1 keep to the grid, no extra run.
    assert not leases.take(engine, "m/c", MINUTE, "b", "v1", now=T0 + timedelta(seconds=30)).taken
    assert not leases.take(engine, "m/c", MINUTE, "b", "v2", fresh=True, now=T0 + timedelta(seconds=40)).taken  # then it does
    assert leases.take(engine, "m/c", MINUTE, "b", "v2", now=T0 + timedelta(seconds=70)).taken


def test_the_schedule_watch_reads_recorded_runs_and_a_removed_check_leaves_no_lease(engine):
    assert leases.take(engine, "m/c", MINUTE, "a", now=T0).taken
    assert leases.last_recorded(engine) == {}  # taken is not recorded: a run that never records is still late
    leases.note_recorded(engine, "m/c", T0 + timedelta(seconds=1))
    leases.note_recorded(engine, "m/c", T0)  # an older run recorded after a newer one does not move it back
    assert leases.last_recorded(engine) == {"m/c": T0 + timedelta(seconds=1)}
    leases.forget(engine, ["m/c"])
    assert leases.last_recorded(engine) == {}


@pytest.mark.postgres
def test_a_row_another_replica_is_taking_is_skipped_not_waited_for(postgres_url):
    engine = db.create_engine(postgres_url)
    db.upgrade(engine)
    assert leases.take(engine, "m/c", MINUTE, "a", now=T0).taken
    with engine.connect() as holding:  # another replica, in the middle of taking the next run
        holding.execute(sa.select(table(CheckLease)).where(CheckLease.job == "m/c").with_for_update())
        started = time.monotonic()
        assert leases.take(engine, "m/c", MINUTE, "b", now=T0 + MINUTE) == leases.Answer(False, None)
        assert time.monotonic() - started < 5
        holding.rollback()
    assert leases.take(engine, "m/c", MINUTE, "b", now=T0 + MINUTE).taken
    engine.dispose()


def test_a_replica_is_gone_when_its_beats_stop_or_its_process_on_this_machine_ended(engine):
    here = Replicas(engine, FixedClock(T0))
    here.beat()
    with engine.connect() as conn:
        now = database_now(conn, here.clock)  # PostgreSQL's own clock: replicas on several hosts agree on it
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    machine = this_machine()
    with engine.begin() as conn:
        rows = [
            {"id": "elsewhere-live", "host": "other-host", "pid": 1, "started": now, "seen": now - timedelta(seconds=10)},
            {"id": "elsewhere-silent", "host": "other-host", "pid": 2, "started": now, "seen": now - timedelta(minutes=2)},
            {"id": "here-ended", "host": machine, "pid": int(ended.stdout), "started": now, "seen": now},
            {"id": "here-running", "host": machine, "pid": os.getppid(), "started": now, "seen": now},
            {"id": "here-my-pid", "host": machine, "pid": os.getpid(), "started": now, "seen": now},
            # Another container with this host name (host networking): its pid means nothing here.
            {"id": "same-name-other-namespace", "host": socket.gethostname(), "pid": int(ended.stdout), "started": now,
             "seen": now},
        ]  # fmt: skip
        conn.execute(sa.insert(table(Replica)), rows)
    assert here.live() == {here.id, "elsewhere-live", "here-running", "same-name-other-namespace"}
    here.leave()
    with engine.connect() as conn:
        assert here.id not in set(conn.scalars(sa.select(Replica.id)))


def test_a_replica_beats_on_while_its_checks_hold_every_worker(engine):
    clock = FixedClock(T0)
    here = Replicas(engine, clock)
    with patch("monitor.storage.replicas.BEAT_EVERY", timedelta(milliseconds=50)), here.beating():
        time.sleep(0.01)  # the first beat is at once; then the thread's, whatever the caller does
        with engine.connect() as conn:
            first = conn.scalar(sa.select(Replica.seen).where(Replica.id == here.id))
        clock.advance(timedelta(seconds=10))
        wait_until(lambda: seen_of(engine, here.id) > first, 5, "a beat from the thread")


def seen_of(engine: sa.Engine, replica_id: str) -> datetime:
    with engine.connect() as conn:
        return conn.scalar(sa.select(Replica.seen).where(Replica.id == replica_id))


@pytest.fixture
def slack_at_t0():
    server = fake_slack(FixedClock(DATA_T0))
    yield server
    server.stop()


def test_a_starting_replica_leaves_a_live_replicas_delivery_in_hand_and_settles_a_gone_ones(tmp_path, engine, slack_at_t0):
    p = build(tmp_path, engine, FixedClock(DATA_T0), slack_at_t0.url)
    p.evaluate()
    [notification_id] = p.outbox._due(200)
    assert p.outbox._claim(notification_id)
    with engine.begin() as conn:  # claimed by a replica on another machine that beats
        now = database_now(conn, p.clock)
        conn.execute(sa.update(table(Notification)).values(claimed_by="elsewhere"))
        conn.execute(sa.insert(table(Replica)).values(id="elsewhere", host="other-host", pid=1, started=now, seen=now))
    starting = p.restart()
    assert starting.outbox.recover() == 0 and starting.outbox.recover_stale() == 0
    assert [n.status for n in starting.notifications()] == ["sending"]
    with starting.engine.begin() as conn:  # its beats stop: the machine is lost
        conn.execute(sa.update(table(Replica)).values(seen=now - timedelta(minutes=1)))
    assert starting.outbox.recover_stale() == 1  # by whichever replica looks next, not only at a start
    assert [n.status for n in starting.notifications()] == ["pending"]


def test_a_replica_paused_past_its_lease_does_not_send_what_another_settled_meanwhile(tmp_path, engine, slack_at_t0):
    p = build(tmp_path, engine, FixedClock(DATA_T0), slack_at_t0.url)
    p.evaluate()
    [notification_id] = p.outbox._due(200)
    paused = p.outbox
    assert paused._claim(notification_id)  # and then it stops (SIGSTOP, a frozen machine) before Slack is called
    other = p.restart()  # another replica: the paused one's row is not beaten, so it is gone
    assert other.outbox.recover_stale() == 1 and other.outbox.deliver_due() == 1
    assert paused._deliver(notification_id) == 0  # it resumes where it stopped: the claim is not its any more
    assert len(posts(slack_at_t0)) == 1
    assert [(n.status, n.claimed_by) for n in other.notifications()] == [("sent", other.outbox.replicas.id)]


def test_ingest_through_three_replicas_counts_exactly_and_reads_one_uniform_sample(engine):
    """A burst minute of 10,000 rows through one replica, 20 quiet minutes of 30 rows split over three:
    every row must be as likely to be read. The burst's reservoir keeps 50 of 10,000 (0.5%), so the quiet
    minutes' 600 rows are owed 3 rows of the sample; rounding each of their 60 small reservoirs on its
    own would give them none (or, rounding up, 60)."""
    start = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    samplers = [Sampler(engine, FixedClock(start), capacity=50, seed=i, writer=f"replica-{i}") for i in range(3)]
    samplers[0].add("m", sample_rows(10_000, start), rejected=0, received=start.timestamp())
    for minute in range(1, 21):
        at = start + timedelta(minutes=minute)
        for number, sampler in enumerate(samplers):
            sampler.add("m", sample_rows(10, at, prefix=f"q{minute}-{number}-"), rejected=0, received=at.timestamp())
    for sampler in samplers:
        sampler.flush()
    source = IngestSource(IngestSpec(kind="ingest", features=["u"]), SourceContext("m", engine))
    end = start + timedelta(minutes=21)
    assert source.summary(start, end).rows == 10_600  # exact, over three writers
    read = source.read(start, end)
    quiet = read[read[TS] >= start + timedelta(minutes=1)]
    assert (len(read) - len(quiet), len(quiet)) == (50, 3)


def sample_rows(n: int, minute: datetime, *, prefix: str = "r") -> list[dict]:
    base = minute.timestamp()
    return [{"id": f"{prefix}{i}", "ts": base + (i % 60), "features": {"u": i}, "prediction": 0.5, "latency_ms": 1.0}
            for i in range(n)]  # fmt: skip


def test_a_replica_started_between_two_runs_moves_onto_the_fleets_schedule(tmp_path):
    """Its first run is refused (the fleet's next is not due yet): it runs at the fleet's next due time,
    not a whole interval later (a daily check restarted just before its run would skip a day)."""
    checks = [{"name": "latency", "kind": "latency", "every": "10s", "window": "1h", "min_rows": 10}]  # slack: 1 s
    config = write_project(tmp_path, live=live_frame(1200, end=datetime.now(UTC)), checks=checks)
    project = Project.load(config)
    engine = db.create_engine(project.config.database.url)
    db.upgrade(engine)
    due = datetime.now(UTC) + timedelta(seconds=3)
    with engine.begin() as conn:
        conn.execute(sa.insert(table(CheckLease)), [
            {"job": f"{name}/{check.name}", "next_due": due, "spec": fingerprint(model, check)}
            for name, model in project.checks.models.items() for check in model.checks
        ])  # fmt: skip
    daemon = Daemon(project, console=io.StringIO())
    daemon.start()
    try:
        wait_until(lambda: len(runs_of(engine, "latency", model="fraud-scorer")) >= 1, 20, "the run at the fleet's due time")
    finally:
        daemon.stop()
    [first] = runs_of(engine, "latency", model="fraud-scorer")
    # At the fleet's due time, within the slack before it and the scheduler's own timing after it; its
    # own schedule would have come round 10 s after its start.
    assert due - timedelta(seconds=1) <= first <= due + timedelta(seconds=1.5), (first - due).total_seconds()
    engine.dispose()
