"""The long-running daemon: every check on its schedule, the outbox delivering, until SIGTERM or SIGINT.

Each check is an APScheduler interval job that first runs at start-up; a check never overlaps itself
(``max_instances=1``) and runs it missed while the process was busy collapse into one (``coalesce``).
Kinds that wait on something outside (``own_workers``: a probe, up to its timeout) run on an executor
of their own, so they neither wait for the other checks nor hold the workers those need.
On a stop signal no new evaluation starts, running ones finish (each writes in one transaction, so
none is half-written), the outbox finishes the delivery in hand, and the process exits.

Replicas on one PostgreSQL each schedule everything; a run due is done by the replica that takes its
lease (monitor/storage/leases.py), so each check runs once per interval across them and a dead
replica's checks move within one interval. The daemon's own jobs over the whole database (the
schedule watch, repeats, retention) are leased alike; its file watch, heartbeat and HTTP API are each
replica's. Each replica's row in ``replicas`` (monitor/storage/replicas.py) tells the others it lives.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from monitor.alerting.maintenance import maintenance_silences
from monitor.alerting.silences import SilenceRule
from monitor.checks import CHECKS
from monitor.checks.base import CheckSpec
from monitor.checks.performance import ingest_classes
from monitor.clock import Clock, SystemClock
from monitor.config import ConfigError
from monitor.config.durations import format_duration
from monitor.config.loader import check_file_paths, load_check_files, load_config
from monitor.config.models import DaemonConfig, ModelConfig, is_loopback
from monitor.daemon.closing import close_orphans
from monitor.daemon.evaluator import Evaluator, RunResult
from monitor.daemon.evidence import EvidenceBuilder
from monitor.daemon.heartbeat import Heartbeat
from monitor.daemon.project import Project
from monitor.daemon.reload import (
    WATCH_EVERY_S,
    Changes,
    FilesWatch,
    changes,
    config_changes,
    fingerprint,
    merged,
    scheduled,
)
from monitor.daemon.repeats import owe_repeats
from monitor.daemon.workers import Workers
from monitor.evidence.store import EvidenceStore, signature
from monitor.health import Health, LogThrottle, in_one_line
from monitor.ingest.retention import delete_expired
from monitor.ingest.rows import RowLimits
from monitor.ingest.sampler import Sampler
from monitor.logs import bind, log_context
from monitor.notifiers import own_alerts
from monitor.notifiers.outbox import Outbox
from monitor.notifiers.own_alerts import OwnAlerts
from monitor.notifiers.registry import Receivers
from monitor.sources import SourceError
from monitor.sources.ingest import IngestModel, feature_types
from monitor.sources.reference import load_reference
from monitor.storage import db, leases
from monitor.storage.replicas import GONE_AFTER, Replicas
from monitor.storage.retention import prune
from monitor.storage.tables import CheckRun
from monitor.telemetry import Telemetry

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from monitor.server.app import ServerState
    from monitor.server.http import HttpServer
    from monitor.server.status import CheckShown

log = logging.getLogger("monitor.daemon")


def describe(result: RunResult) -> str:
    """The one log line of an evaluation (of a check split by model_version: each version's, in turn)."""
    split = bool(result.versions)
    parts = []
    for part in result.parts:
        text = ""
        if split:
            text = f" [model_version {part.model_version or 'none'}] {part.outcome}"
        elif part.model_version:  # a version_compare's candidate
            text = f" [model_version {part.model_version}]"
        if values := ", ".join(f"{v.metric}={v.value:.4g}" for v in part.evaluation.values if not v.feature):
            text += f" {values}"
        text += f" ({part.evaluation.sample_size} rows{'' if split else f', {result.duration_s:.2f}s'})"
        if part.evaluation.error:
            text += f": {part.evaluation.error}"
        parts.append(text)
    line = f"{result.model}/{result.check}: {result.outcome}" + ";".join(parts)
    if split:
        line += f" ({result.duration_s:.2f}s)"
    for change in result.changes:
        version = f" [model_version {change.model_version}]" if change.model_version else ""
        line += f"; {change.rule}{' [' + change.feature + ']' if change.feature else ''}{version} -> {change.state}"
    return line


def guarded_reads(listen: str, public: Iterable[str]) -> frozenset[str]:
    """The read endpoints that need the token: beyond loopback, all but the public ones."""
    if is_loopback(listen.rpartition(":")[0]):
        return frozenset()
    return frozenset({"status", "metrics", "healthz"}) - set(public)


APART = "apart"
"""The scheduler's executor for the kinds with ``own_workers`` (probes)."""
ALIGNED_WITHIN_S = 0.05
"""A replica's next run of a check this near the fleet's is on its grid already (no reschedule)."""
APART_WORKERS = 32
"""Its threads at most: 32 probes that each hang for a 5s timeout every 30s still start on time."""


# The conditions of Health the daemon itself reports (the outbox reports "delivery", the sampler "ingest").
RECORDING = "recording"
CHECKS_LOADED = "checks"
CHECK_FILES = "check files"
CONFIG = "config"  # the daemon config on disk, read again at a reload


def no_checks_loaded(project: Project) -> str:
    """Why nothing is watched: each problem of the check files (the first few), or that there are none."""
    issues = project.checks.issues
    if not issues:
        return f"no check file in {project.checks_dir}: nothing is watched; add one (it is loaded within {WATCH_EVERY_S} s)"
    shown = "; ".join(str(issue) for issue in issues[:3])
    more = f"; and {len(issues) - 3} more in the log" if len(issues) > 3 else ""
    return f"no check file loaded, so nothing is watched: {shown}{more}; fix them (monitor validate): they are loaded again within {WATCH_EVERY_S} s"


class StartupError(Exception):
    """The daemon cannot start: one line saying what to change."""


def why_not_recorded(exc: sa.exc.SQLAlchemyError) -> str:
    """What a failed write means for the person reading the log: the database down is not bad data."""
    if isinstance(exc, StaleDataError):
        return "one of its alerts was changed meanwhile by another writer (a close by hand, another daemon)"
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or getattr(exc, "connection_invalidated", False):
        return f"the database is unavailable: {in_one_line(exc)}"
    if isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError)):
        return f"the database refused a value of this run: {in_one_line(exc)}"
    return f"database error: {in_one_line(exc)}"


def _owner_written(path: Path, owners: Mapping[str, object]) -> str | None:
    """The owner a check file that does not load names, read as a plain top-level ``owner: NAME`` line
    (not parsed as YAML: the file is broken, and may be hostile); None when it names no known one."""
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in itertools.islice(lines, 10_000):
                match = _OWNER_LINE.match(line)
                if match and match["name"] in owners:
                    return match["name"]
    except OSError:
        return None
    return None


_OWNER_LINE = re.compile(r"^owner:\s*[\"']?(?P<name>[A-Za-z0-9._-]+)[\"']?\s*(?:#.*)?$")


def _headline(check: CheckSpec) -> tuple[str | None, Literal["max", "min"] | None]:
    """The metric the status page charts for a check, and whether of its worst feature (``max``, ``min``):
    its first rule's over the whole window, else its first rule's per feature, the worst feature's at
    each run (the highest for a rule on ``>``)."""
    kind = CHECKS[check.kind]
    whole = next((rule.when.metric for rule in check.alert if rule.when.metric in kind.dataset_metrics), None)
    if whole is not None or not check.alert:
        return whole, None
    first = check.alert[0].when
    return first.metric, "min" if first.lower_is_worse else "max"


def _shown(path: Path, base: Path) -> Path:
    """A check file's path as its owners know it: relative to the project when it lies inside."""
    try:
        return path.resolve().relative_to(base.resolve())
    except ValueError:
        return path


class Daemon:
    def __init__(
        self,
        project: Project,
        *,
        clock: Clock | None = None,
        console=None,
        engine: Engine | None = None,
        workers: int = 4,
        health: Health | None = None,
    ) -> None:
        self.project = project
        self.clock = clock or SystemClock()
        self.engine = engine or db.create_engine(project.config.database.url)
        self._sqlite_lock = db.SqliteLock(self.engine)  # one daemon per SQLite file, taken at start
        self.replicas = Replicas(self.engine, self.clock)  # this daemon among those on its database
        self.telemetry = Telemetry()
        self.health = health or Health()  # what blinds the daemon right now: /healthz, the status page, the log
        self._failing_checks = LogThrottle(log)  # a check that errors on every run is logged as one condition
        self._late_runs = LogThrottle(log)  # runs starting late: one line, then one a minute
        self._due: dict[str, datetime] = {}  # by job: when its submitted run was due (the scheduler's clock)
        self._fingerprints: dict[str, str] = {}  # by check's job: what it runs, as its lease knows it
        self._fresh: set[str] = set()  # checks (re)loaded and not run since: an edit runs at once
        self._beating = contextlib.ExitStack()  # this replica's row beaten while the daemon runs
        self._last_recorded: dict[str, datetime] = {}  # by check: when its last recorded run started
        self._console = console  # a receiver of its own for the console (monitor demo), kept for a reload
        receivers = Receivers(project.config, console)
        self.receivers = receivers
        self.own_alerts = OwnAlerts(receivers)  # when monitoring itself fails: a file, a check's schedule
        self._started = self.clock.now()  # a check is late only once it has had the time to run
        self.evaluator = Evaluator(self.engine, project.config, self.clock, receivers, evidence_url=self.evidence_url)
        self.evidence = EvidenceStore(project.base_dir / project.config.evidence_dir)
        self._evidence_builder = EvidenceBuilder(self.evidence, self.evaluator)
        self.outbox = Outbox(
            self.engine,
            receivers,
            self.clock,
            on_attempt=self.telemetry.record_delivery,
            health=self.health,
            give_up_after=project.config.notifiers.give_up_after,
            per_minute=project.config.notifiers.per_minute,
            platform_owner=project.config.platform_owner,
            maintenance=self._maintenance,
            replicas=self.replicas,
        )
        ingest = project.config.ingest
        self.sampler = Sampler(
            self.engine,
            self.clock,
            capacity=ingest.sample_per_minute,
            max_held_bytes=ingest.max_memory_bytes,
            max_unwritten_rows=ingest.max_unwritten_rows,
            health=self.health,  # reports "ingest" while the rows it accepted cannot be written
            writer=self.replicas.id,  # its rows of each minute, beside other replicas'
        )
        self.http: HttpServer | None = None
        self._server_state: ServerState | None = None
        self.workers = workers
        self._stop = threading.Event()
        self._background_stop = threading.Event()
        self._scheduler: BackgroundScheduler | None = None
        self._reload = threading.Event()  # set by the watch, done by the main loop
        self._signals: deque[int] = deque()  # noted by the signal handler, read by the main loop
        self._reloading = threading.Lock()
        self._watch: FilesWatch | None = None
        self._workers: Workers | None = None
        self._threads: list[threading.Thread] = []

    def evaluate(self, model: ModelConfig, check: CheckSpec) -> RunResult | None:
        with log_context(model=model.model, check=check.name):  # on each line of the run, in JSON logs
            return self._evaluate(model, check)

    def _scheduled_run(self, model: ModelConfig, check: CheckSpec) -> RunResult | None:
        """A run the scheduler found due: this replica's to do only if it takes the run's lease; if the
        fleet's next run is later, this replica's schedule moves onto it."""
        job = f"{model.model}/{check.name}"
        answer = self._take(job, check.every, self._fingerprints.get(job), fresh=job in self._fresh)
        if not answer.taken:
            self._due.pop(job, None)
            self.telemetry.record_elsewhere(model.model, check.name)
            if answer.next_due is not None:
                self._align(job, check.every, answer.next_due)
            return None
        self._fresh.discard(job)
        result = self.evaluate(model, check)
        if result is not None:
            try:
                leases.note_recorded(self.engine, job, self._last_recorded[job])
            except sa.exc.SQLAlchemyError as exc:  # the next recorded run notes it; the watch reads runs meanwhile
                log.warning("%s: recorded, but not noted for the schedule watch (%s)", job, why_not_recorded(exc))
        return result

    def _align(self, job: str, every: timedelta, next_due: datetime) -> None:
        """Move this replica's schedule of ``job`` onto the fleet's (its next run at ``next_due``, then
        every interval): all replicas then ask at the same moments, and the first to lock the row runs it."""
        scheduler = self._scheduler
        current = scheduler.get_job(job) if scheduler is not None else None
        if scheduler is None or current is None or current.next_run_time is None:
            return
        if abs((current.next_run_time - next_due).total_seconds()) > ALIGNED_WITHIN_S:
            scheduler.reschedule_job(job, trigger="interval", seconds=every.total_seconds(), start_date=next_due)

    def _evaluate(self, model: ModelConfig, check: CheckSpec) -> RunResult | None:
        self._note_start(model, check)
        started = self.clock.now()
        try:
            result = self.evaluator.run(model, check)
        except sa.exc.SQLAlchemyError as exc:
            # Nothing was recorded (one transaction): the next run of this check tries again. Every check
            # fails alike while the database is down, so this is one condition, not a line per run.
            self.health.failing(
                RECORDING,
                f"{model.model}/{check.name}: evaluated but not recorded ({why_not_recorded(exc)}); the next run tries again",
                exc_info=exc,
            )
            return None
        self.health.recovered(RECORDING)  # a write went through: the database takes them again
        bind(run_id=result.run_id)
        name = f"{result.model}/{result.check}"
        self._last_recorded[name] = started
        if result.outcome == "error":
            # Recorded on every run; logged when it starts, then at most once a minute with a count.
            self._failing_checks.log(name, logging.WARNING, describe(result))
        else:
            self._failing_checks.clear(name)
            (log.warning if result.outcome == "breach" else log.info)(describe(result))
        for part in result.parts:  # a failing check is a problem of the daemon's too (/healthz, the status page)
            self._report_failing(part)
        # A check split by model_version has no one value of a metric to show: its versions' are in the metrics table.
        values = [] if result.versions else result.evaluation.values
        self.telemetry.record_run(result.model, result.check, result.outcome, result.duration_s, values)
        if result.changes and self._changed_while_running(model, check):
            # A reload replaced this check while it ran: an episode it opened of a rule now gone is closed
            # as the reload closed the others (the reload looked before this run was recorded).
            self.close_orphans()
        if result.notifications_owed:
            self.outbox.wake()
        if self.http is not None:  # a serving daemon's reports, after the messages are owed: they never wait on it
            self._evidence_builder.after(model, check, result)
        return result

    def _changed_while_running(self, model: ModelConfig, check: CheckSpec) -> bool:
        current = self.project.checks.models.get(model.model)
        if current is None:
            return True
        now = next((c for c in current.checks if c.name == check.name), None)
        return now is None or fingerprint(current, now) != fingerprint(model, check)

    def _take(self, job: str, every: timedelta, spec: str | None = None, *, fresh: bool = False) -> leases.Answer:
        """Whether this replica does the run of ``job`` due now (another may have taken it)."""
        try:
            # PostgreSQL's clock for replicas on hosts whose clocks differ; on SQLite (one machine) the daemon's.
            now = None if self.engine.dialect.name == "postgresql" else self.clock.now()
            return leases.take(self.engine, job, every, self.replicas.id, spec, fresh=fresh, now=now)
        except sa.exc.SQLAlchemyError as exc:  # it could not be recorded either: health says so, the next run tries
            self.health.failing(RECORDING, f"{job}: not run ({why_not_recorded(exc)}); the next run tries again", exc_info=exc)
            return leases.Answer(False)

    def _note_start(self, model: ModelConfig, check: CheckSpec) -> None:
        """How late this run starts after it was due (the scheduler said when, on submitting it): in
        /metrics, and in the log at most once a minute when it is late, since a daemon too busy for
        its checks watches less than its files say."""
        due = self._due.pop(f"{model.model}/{check.name}", None)
        if due is None:  # not the scheduler's (monitor check, a test)
            return
        delay = (datetime.now(UTC) - due).total_seconds()
        late = delay > max(1.0, check.every.total_seconds() / 10)
        self.telemetry.record_start(model.model, check.name, delay, late)
        if late:
            self._late_runs.log("late", logging.WARNING,
                                f"{model.model}/{check.name} started {delay:.1f}s after it was due: the daemon is busier "
                                f"than its {self.workers} workers keep up with (monitor_evaluations_late in /metrics)")  # fmt: skip

    def _on_scheduler_event(self, event) -> None:
        """The scheduler's word on a check's run: submitted (when it was due), not run because its last
        run still runs, or missed."""
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

        model, _, check = str(event.job_id).partition("/")
        if not check:  # the daemon's own jobs (heartbeat, schedule, repeats)
            return
        if event.code == EVENT_JOB_SUBMITTED and event.scheduled_run_times:
            self._due[event.job_id] = max(event.scheduled_run_times)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.telemetry.record_not_run(model, check, "still_running")
        elif event.code == EVENT_JOB_MISSED:
            self.telemetry.record_not_run(model, check, "missed")

    def _report_failing(self, result: RunResult) -> None:
        condition = f"check {result.model}/{result.check}" + (f" [{result.model_version}]" if result.model_version else "")
        failing = result.failing
        if failing is not None and failing.breached:
            why = result.evaluation.error or result.outcome
            self.health.failing(condition, f"its last {failing.value:g} runs failed: {why}")
        else:
            self.health.recovered(condition)

    def prepare(self) -> None:
        """What comes before the first evaluation: say which files were skipped, migrate, and close the
        episodes that edited files left without a rule."""
        for issue in self.project.checks.issues:
            log.error("check file skipped: %s", issue)
        for warning in self.project.checks.warnings:
            log.warning("check file loaded, but: %s", warning)
        self._say_check_files()
        db.upgrade(self.engine)  # by one replica at a time (an advisory lock on PostgreSQL)
        self._settle_files()
        kinds = {check.kind for model in self.project.checks.models.values() for check in model.checks}
        for kind in sorted(kinds):
            warm_up = CHECKS[kind].warm_up
            if warm_up is not None:
                warm_up()

    def _say_check_files(self) -> None:
        """The check files that do not load, on /healthz (their models are not watched, or watched as they
        last loaded); no check at all, likewise."""
        checks = self.project.checks
        if checks.issues:
            broken = {Path(issue.file).resolve() for issue in checks.issues}
            kept = {Path(path).resolve() for path in checks.files.values()} & broken  # their last good versions run
            files = sorted({_shown(path, self.project.base_dir) for path in broken - kept})
            said = (
                [f"{len(files)} check file(s) skipped, their models not watched: {', '.join(map(str, files))}"] if files else []
            )
            if kept:
                shown = sorted(_shown(path, self.project.base_dir) for path in kept)
                said.append(f"{len(kept)} check file(s) do not load, their last good versions run: {', '.join(map(str, shown))}")
            self.health.failing(CHECK_FILES, "; ".join(said) + " (monitor validate says why)")
        else:
            self.health.recovered(CHECK_FILES)
        if not self.project.checks.models:
            self.health.failing(CHECKS_LOADED, no_checks_loaded(self.project))
        else:
            self.health.recovered(CHECKS_LOADED)

    def _settle_files(self) -> None:
        """Tell the owners of files that do not load, and close what edited files left without a rule: on
        PostgreSQL one replica at a time, so two replicas starting (or reloading) together tell once."""
        with db.one_at_a_time(self.engine, "check files"):
            self.tell_skipped_files()
            self.close_orphans()

    def tell_skipped_files(self) -> None:
        """A check file that does not load is an alert of monitor's own, to its owner (else the config's
        platform_owner) with its problems; one that loads again resolves it."""
        own, now = self.own_alerts, self.clock.now()
        skipped: dict[str, list] = {}
        kept = {Path(path).resolve() for path in self.project.checks.files.values()}  # their last good versions run
        for issue in self.project.checks.issues:
            skipped.setdefault(str(_shown(Path(issue.file), self.project.base_dir)), []).append(issue)
        with Session(self.engine) as session:
            told = False
            for shown, issues in skipped.items():
                owner = _owner_written(Path(issues[0].file), self.project.config.owners) or self.project.config.platform_owner
                running = (
                    "its last good version keeps running until the file is mended"
                    if Path(issues[0].file).resolve() in kept
                    else "its model is not watched until the file is mended"
                )
                details = [str(issue) for issue in issues[:10]] + [
                    f"{running} ({len(issues)} problem(s); monitor validate says the same)"
                ]
                rule = f"check file {shown} does not load"
                told |= own.raise_(session, own_alerts.CHECK_FILES, shown, owner or "platform", rule, details, now)
            for alert in own.all_open(session, own_alerts.CHECK_FILES):
                if alert.feature not in skipped:
                    told |= own.clear(session, own_alerts.CHECK_FILES, alert.feature, f"{alert.feature} loads again", now)
            session.commit()
        if told:
            self.outbox.wake()

    def close_orphans(self) -> None:
        """Close the episodes of rules that are no longer in their files (edited, removed)."""
        checks = self.project.checks
        files = {model: _shown(path, self.project.base_dir) for model, path in checks.files.items()}
        closed = close_orphans(self.engine, checks.models, files, self.clock.now(), every_file_loaded=not checks.issues)
        if closed:
            self.outbox.wake()

    def _maintenance(self, now: datetime) -> list[SilenceRule]:
        """The check files' maintenance windows in force at ``now``, as silences (read from the files
        as loaded, so an edited file takes effect at the reload that loads it)."""
        windows = {name: model.maintenance for name, model in self.project.checks.models.items() if model.maintenance}
        return maintenance_silences(windows, now)

    def watch_schedule(self) -> None:
        """A check that has not run for twice its interval (its workers stuck behind slow checks, a
        scheduler that lost it) is an alert of monitor's own to its owner, and a problem on /healthz;
        its next run resolves both. Checked every minute, from twice a check's interval after the start."""
        now = self.clock.now()
        own = self.own_alerts
        try:
            recorded = leases.last_recorded(self.engine)  # the runs every replica recorded
            with Session(self.engine) as session:
                told = False
                alerted = {alert.feature for alert in own.all_open(session, own_alerts.SCHEDULE)}
                for model in self.project.checks.models.values():
                    for check in model.checks:
                        told |= self._watch_one(session, own, model, check, now, alerted, recorded)
                session.commit()
        except sa.exc.SQLAlchemyError as exc:  # the database is down: health says so already
            log.warning("schedule not checked (%s); the next minute tries again", why_not_recorded(exc))
            return
        if told:
            self.outbox.wake()

    def _watch_one(
        self, session: Session, own: OwnAlerts, model: ModelConfig, check: CheckSpec, now: datetime, alerted: set[str],
        recorded: Mapping[str, datetime],
    ) -> bool:  # fmt: skip
        """One check's schedule watched; ``alerted`` names the checks with an open schedule alert,
        ``recorded`` when each check's last recorded run began, on any replica."""
        name, late = f"{model.model}/{check.name}", check.every * 2
        if now - self._started < late:
            return False
        # This daemon's own record of its runs and the leases' of every replica's, so that a thousand
        # checks on time cost one query; the runs table for a check neither knows (a run from before).
        last = max(filter(None, (self._last_recorded.get(name), recorded.get(name))), default=None) or session.scalar(
            sa.select(sa.func.max(CheckRun.started)).where(CheckRun.model == model.model, CheckRun.check == check.name)
        )
        condition = f"check {name} not running"
        if last is not None and now - last <= late:
            self.health.recovered(condition)
            if name not in alerted:
                return False
            return own.clear(session, own_alerts.SCHEDULE, name, f"{name} runs again (last at {last:%Y-%m-%d %H:%M:%S} UTC)", now)
        since = f"its last run started {last:%Y-%m-%d %H:%M:%S} UTC" if last else "it has not run since the daemon started"
        self.health.failing(condition, f"{since}; it runs every {format_duration(check.every)}")
        rule = f"{name} has not run for {format_duration(late)}"
        details = [f"{since}; it runs every {format_duration(check.every)}",
                   "its workers may be held by slow checks (a source that hangs): see /healthz and the daemon's log"]  # fmt: skip
        return own.raise_(session, own_alerts.SCHEDULE, name, model.owner, rule, details, now)

    def repeat_firing(self) -> None:
        """Queue the repeats of firing incidents nobody acknowledged (monitor/daemon/repeats.py)."""
        try:
            owed = owe_repeats(self.engine, self.project.config.notifiers.repeat, self.clock.now())
        except sa.exc.SQLAlchemyError as exc:  # the database is down: health says so; the next minute tries again
            log.warning("repeats not queued (%s); the next minute tries again", why_not_recorded(exc))
            return
        if owed:
            self.outbox.wake()

    def apply_retention(self) -> None:
        """Each table past its retention, hourly: ingested samples (``ingest.retention``), metrics folded
        into hourly ones, old runs and delivered notifications (``retention``)."""
        now, retention = self.clock.now(), self.project.config.retention
        try:
            removed = delete_expired(self.engine, now - self.project.config.ingest.retention)
            # The raw rows a rule reads back (its baseline, its window, an SLO's period) stay raw.
            raw = max(retention.raw, self._history_read())
            pruned = prune(self.engine, raw_before=now - raw, hourly_before=now - retention.hourly,
                           runs_before=now - retention.runs, notifications_before=now - retention.notifications)  # fmt: skip
            reports = self.evidence.prune(now - retention.evidence)
        except sa.exc.SQLAlchemyError as exc:
            # Caught here, not by the scheduler (a traceback): an outage is told by health already, and
            # what is left is removed by the next hourly run.
            log.warning("retention: not done (%s); the next run tries again", why_not_recorded(exc))
            return
        if removed:
            log.info("retention: removed %d model-minutes of samples", removed)
        if pruned:
            log.info("retention: %s", pruned)
        if reports:
            log.info("retention: removed %d evidence report(s) older than %s", reports, format_duration(retention.evidence))

    def _history_read(self) -> timedelta:
        """The longest past any rule reads from ``metrics``: a baseline's period, a rule's own window, a
        kind's kept windows (an SLO's period), plus a day's margin."""
        longest = timedelta(0)
        for model in self.project.checks.models.values():
            for check in model.checks:
                kind = CHECKS[check.kind]
                kept = kind.kept_windows(check) if kind.kept_windows else frozenset()
                periods = [window for _, window in kept]
                for rule in check.alert:
                    periods += [*rule.windows, *([rule.baseline_period] if rule.uses("baseline") else [])]
                longest = max([longest, *periods])
        return longest + timedelta(days=1)

    def ingest_models(self) -> dict[str, IngestModel]:
        """What the ingest API checks the rows of every model whose source it is against: the type of
        each feature, and the classes a label must be one of (from its performance checks)."""
        out = {}
        for model in self.project.checks.models.values():
            if model.source is None or model.source.kind != "ingest":
                continue
            reference = None
            if model.reference is not None:
                try:
                    reference = load_reference(model.reference.path, []).for_source(model.source)
                except SourceError as exc:
                    log.warning(
                        "%s: reference not readable (%s): posted features are not type-checked, nor labels against its classes",
                        model.model,
                        exc,
                    )
            out[model.model] = IngestModel(feature_types(model.source, reference), ingest_classes(model.checks, reference))
        return out

    def _start_http(self) -> None:
        from monitor.server.app import ServerState, create_app
        from monitor.server.hosts import url_host
        from monitor.server.http import HttpServer
        from monitor.server.status import render_status

        config = self.project.config
        state = ServerState(
            models=self.ingest_models(),
            sampler=self.sampler,
            telemetry=self.telemetry,
            health=self.health,
            token=config.server.token.get_secret_value(),
            max_body_bytes=config.ingest.max_body_bytes,
            max_receiving_bytes=config.ingest.max_receiving_bytes,
            max_concurrent=config.ingest.max_concurrent_requests,
            body_timeout=config.server.body_timeout.total_seconds(),
            max_per_client=config.ingest.max_requests_per_client,
            row_limits=RowLimits(config.ingest.max_row_bytes, config.ingest.max_text_chars),
            status_page=lambda problems: render_status(self.engine, self.checks_shown(), problems),
            evidence=self.evidence.read,
            listen_host=config.server.listen.rpartition(":")[0],
            allowed_hosts=[*config.server.allowed_hosts, *url_host(config.server.public_url)],
            guarded_reads=guarded_reads(config.server.listen, config.server.public),
        )
        http = HttpServer(
            create_app(state),
            config.server.listen,
            header_timeout=config.server.header_timeout.total_seconds(),
            max_connections=config.server.max_connections,
            max_connections_per_client=config.server.max_connections_per_client,
        )
        self.http, self._server_state = http, state
        http.start()
        log.info("HTTP API on %s", http.url)

    def evidence_url(self, run_id: int) -> str | None:
        """Where a message's reader opens run ``run_id``'s evidence: server.public_url (else this daemon's
        own address), signed with the token when there is one (a browser sends no bearer token). None
        while the daemon serves no pages (a test's evaluation, before start): nothing would build it."""
        if self.http is None:
            return None
        server = self.project.config.server
        base = server.public_url or self.http.url
        token = server.token.get_secret_value()
        return f"{base.rstrip('/')}/evidence/{int(run_id)}" + (f"?sig={signature(token, run_id)}" if token else "")

    def checks_shown(self) -> dict[str, list[CheckShown]]:
        """Each model's checks as loaded now (the status page lists them, charting each one's first rule's
        metric; a reload changes them)."""
        from monitor.server.status import CheckShown

        return {
            name: [CheckShown(c.name, c.kind, *_headline(c)) for c in model.checks]
            for name, model in sorted(self.project.checks.models.items())
        }

    def _background(self, target, name: str) -> None:
        thread = threading.Thread(target=target, args=(self._background_stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        url = self.engine.url.render_as_string(hide_password=True)
        try:
            self._sqlite_lock.acquire()
        except db.SqliteInUse as exc:
            raise StartupError(str(exc)) from exc
        try:
            self.prepare()
            # Beaten from here on, on a thread of its own: the outbox, about to settle what gone replicas
            # left, must not take this one for one of them, nor may slow checks make it look gone.
            self._beating.enter_context(self.replicas.beating())
        except sa.exc.SQLAlchemyError as exc:
            raise StartupError(f"cannot use the database {url}: {why_not_recorded(exc)}") from exc
        processes = self.project.config.processes
        if processes:  # windows read and checks computed on every core (monitor/daemon/workers.py)
            self._workers = Workers(self.project.config_path, processes, self.evaluator)
            self.evaluator.compute = self._workers.compute
        self._background(self.outbox.run, "outbox")
        self._background(self.sampler.run, "sampler")
        try:
            self._start_http()
        except (OSError, TimeoutError) as exc:
            listen = self.project.config.server.listen
            raise StartupError(f"cannot serve on {listen}: {exc}; stop what holds it, or set server.listen") from exc
        try:  # the reports a stop (or a kill) left unbuilt, of the alerts still firing
            if owed := self._evidence_builder.catch_up(self.engine, self.project.checks.models):
                log.info("%d evidence report(s) of firing alerts not built before: building them", owed)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("evidence reports owed not looked for (%s): the alerts' links answer 404", why_not_recorded(exc))
        # A kind that waits on something outside (a probe, up to its timeout) has workers of its own, one
        # per such check up to APART_WORKERS: it never waits behind a drift check, nor holds up one.
        apart = sum(CHECKS[c.kind].own_workers for m in self.project.checks.models.values() for c in m.checks)
        # Threads are made as jobs need them: an idle executor for probes costs nothing, and a reload may add one.
        executors = {"default": ThreadPoolExecutor(self.workers), APART: ThreadPoolExecutor(max(1, min(apart, APART_WORKERS)))}
        scheduler = BackgroundScheduler(executors=executors, timezone="UTC")
        scheduler.add_listener(self._on_scheduler_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._scheduler = scheduler
        now = self.clock.now()
        jobs = scheduled(self.project.checks)
        for count, (model, check) in enumerate(jobs.values()):
            self._schedule(model, check, now + timedelta(milliseconds=50 * count))
        count = len(jobs)
        self._watch = FilesWatch(self.project.config_path, self.project.checks_dir)
        scheduler.add_job(self._look_at_files, "interval", seconds=WATCH_EVERY_S, id="watch", name="watch",
                          next_run_time=now + timedelta(seconds=WATCH_EVERY_S), max_instances=1, coalesce=True)  # fmt: skip
        heartbeat_url = self.project.config.heartbeat_url.get_secret_value()
        if heartbeat_url:  # on the scheduler: a daemon whose scheduler is stuck stops beating
            heartbeat = Heartbeat(heartbeat_url, self.health)
            every = self.project.config.heartbeat_every
            scheduler.add_job(heartbeat.beat, "interval", seconds=every.total_seconds(), id="heartbeat", name="heartbeat",
                              next_run_time=now + timedelta(seconds=5), max_instances=1, coalesce=True)  # fmt: skip
        # Over the whole database, so done by one replica a time (each takes the job's lease when due).
        for name, every, work in (("schedule", timedelta(minutes=1), self.watch_schedule),
                                  ("repeats", timedelta(minutes=1), self.repeat_firing),
                                  ("retention", timedelta(hours=1), self.apply_retention)):  # fmt: skip
            scheduler.add_job(self._fleet_job(name, every, work), "interval", seconds=every.total_seconds(), id=name,
                              name=name, next_run_time=now + timedelta(minutes=1), max_instances=1, coalesce=True)  # fmt: skip
        scheduler.start()
        others = self._other_replicas()
        log.info(
            "monitor started: %d checks of %d models, database %s%s",
            count,
            len(self.project.checks.models),
            self.engine.url.render_as_string(hide_password=True),
            f"; {others} other replica(s) share it (each run is done by one of them)" if others else "",
        )

    def _other_replicas(self) -> int:
        try:
            return len(self.replicas.live() - {self.replicas.id})
        except sa.exc.SQLAlchemyError:
            return 0

    def _fleet_job(self, name: str, every: timedelta, work: Callable[[], None]) -> Callable[[], None]:
        """``work`` as a job of the daemon's over the whole database: on the replica that takes its lease."""

        def run() -> None:
            if self._take(f"daemon:{name}", every).taken:
                work()

        return run

    def _schedule(self, model: ModelConfig, check: CheckSpec, first: datetime) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._scheduled_run,
            "interval",
            args=(model, check),
            executor=APART if CHECKS[check.kind].own_workers else "default",
            seconds=check.every.total_seconds(),
            id=f"{model.model}/{check.name}",
            name=f"{model.model}/{check.name}",
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(check.every.total_seconds())),
            replace_existing=True,
        )
        self._fingerprints[f"{model.model}/{check.name}"] = fingerprint(model, check)
        self._fresh.add(f"{model.model}/{check.name}")

    def reload(self) -> Changes:
        """The check files loaded again, file by file (monitor/daemon/reload.py): a changed check is
        scheduled anew and runs now, a removed one's episodes end with a notice, a file that no longer
        loads keeps its last good version and its owner is told. The daemon config is read again
        first: a broken one keeps the running one, a changed one applies but for the keys that need a
        restart (reload.RESTART_ONLY), and the check files are then checked against its owners."""
        with self._reloading:
            if self._watch is not None:
                self._watch.changed()  # what is loaded now is what the watch compares with next
            self._reload_config()
            project = self.project
            owners_from = project.config if project.config_path else None
            fresh = load_check_files(check_file_paths(project.checks_dir), owners_from, base_dir=project.base_dir)
            before, old = scheduled(project.checks), project.checks
            project.checks = merged(old, fresh)
            after = scheduled(project.checks)
            found = changes(before, after)
            if self._scheduler is not None:
                for job in found.removed:
                    self._scheduler.remove_job(job)
                    self._fingerprints.pop(job, None)
                    self._fresh.discard(job)
                now = self.clock.now()
                for count, job in enumerate(found.added + found.changed):
                    self._schedule(*after[job], now + timedelta(milliseconds=50 * count))
            new_issues = [issue for issue in fresh.issues if issue not in old.issues]
            kept = {Path(path).resolve() for path in project.checks.files.values()}
            for issue in new_issues:
                running = "its last good version keeps running" if Path(issue.file).resolve() in kept else "it is not watched"
                log.error("check file does not load, %s: %s", running, issue)
            if self._server_state is not None:  # the API takes rows for the models with an ingest source now
                self._server_state.models = self.ingest_models()
            self._say_check_files()
            self._settle_files()
            leases.forget(self.engine, found.removed)
            log.info("check files reloaded: %s; %d check file(s) do not load", found, len({i.file for i in fresh.issues}))
            return found

    def _reload_config(self) -> None:
        """The daemon config on disk read again: a broken one is a problem on /healthz and the running one
        is kept; a changed one applies now (owners, routes, receivers, retention, ...), but for the keys
        opened once at the start, which are said to wait for the next start."""
        if self.project.config_path is None:
            return
        try:
            on_disk = load_config(self.project.config_path)
        except ConfigError as exc:
            self.health.failing(CONFIG, f"the daemon config on disk does not load, the running one is kept: {in_one_line(exc)}")
            return
        self.health.recovered(CONFIG)
        config, applied, waiting = config_changes(self.project.config, on_disk)
        if waiting:
            log.warning("the daemon config changed on disk: %s take effect at the next start of monitor run", ", ".join(waiting))
        if applied:
            self._apply_config(config)
            log.info("daemon config reloaded: %s applied", ", ".join(applied))

    def _apply_config(self, config: DaemonConfig) -> None:
        """Run with ``config`` from now on: new receivers (a delivery in hand finishes with the old ones)."""
        receivers = Receivers(config, self._console)
        self.project.config = config
        self.receivers, self.own_alerts = receivers, OwnAlerts(receivers)
        self.evaluator.reconfigure(config, receivers)
        notifiers = config.notifiers
        self.outbox.reconfigure(receivers, give_up_after=notifiers.give_up_after, per_minute=notifiers.per_minute,
                                platform_owner=config.platform_owner)  # fmt: skip

    def _look_at_files(self) -> None:
        """The watch: reload when a check file or the config changed since the last look."""
        if self._watch is not None and self._watch.changed():
            self.request_reload()

    def request_reload(self) -> None:
        """From the watch (a thread): the main loop reloads."""
        self._reload.set()

    def stop(self) -> None:
        """No new rows, then no new evaluations; then the last samples are written and the last
        deliveries go out, so nothing accepted or owed is left behind."""
        self._stop.set()
        if self.http is not None:
            self.http.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self._evidence_builder.close()  # the report in hand is written; the next start builds the others
        if self._workers is not None:  # after the scheduler: no run waits on them any more
            self._workers.close()
            self._workers = None
        self._background_stop.set()
        self.outbox.wake()
        for thread in self._threads:
            thread.join(timeout=30)
        self._beating.close()
        try:
            self.replicas.leave()  # gone at once: what it might have left is the others' to settle now
        except sa.exc.SQLAlchemyError as exc:
            log.warning("replica row not removed (%s): the others take it for gone in %s", in_one_line(exc),
                        format_duration(GONE_AFTER))  # fmt: skip
        self.engine.dispose()
        self._sqlite_lock.release()
        log.info("monitor stopped")

    def _reload_safely(self) -> None:
        try:
            self.reload()
        except sa.exc.SQLAlchemyError as exc:  # the schedule changed; the notices wait for the next reload
            log.warning(
                "check files reloaded, but their episodes not settled (%s): the next reload tries again", why_not_recorded(exc)
            )

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def _signalled(self, signum: int, _frame: object) -> None:
        """A signal's handler only notes it: it runs between two bytecodes of the main thread, maybe inside
        an Event's lock, so taking one here (Event.set) could wait for ever (a burst of SIGHUPs did)."""
        self._signals.append(signum)

    def run_forever(self) -> int:
        """Start, block until SIGTERM or SIGINT, stop cleanly; reload on SIGHUP."""
        previous = {sig: signal.signal(sig, self._signalled) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self.start()
            while not self._stop.wait(0.25):
                signalled = {self._signals.popleft() for _ in range(len(self._signals))}
                if signalled - {signal.SIGHUP}:
                    break
                if signal.SIGHUP in signalled or self._reload.is_set():
                    self._reload.clear()
                    self._reload_safely()
            log.info("stop requested: finishing running checks")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
