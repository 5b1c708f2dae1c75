"""What each ``monitor`` sub-command does; argument parsing is in :mod:`monitor.cli`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.config import ConfigError
from monitor.config.durations import format_duration
from monitor.daemon.project import Project, default_config_path
from monitor.notifiers.message import format_number, links_told
from monitor.sources.base import SKIPPED_FILES
from monitor.text import one_line

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # how far back a replay may start


def _project(args: argparse.Namespace, files: list[Path] | None = None) -> Project | None:
    path = args.config or default_config_path()
    try:
        return Project.load(path, files)
    except ConfigError as exc:
        _say_error(args, str(exc))
        return None


def _say_error(args: argparse.Namespace, text: str) -> None:
    """A command's error: a plain line on stderr, or under ``--log-format json`` a log line like the
    daemon's others, so a log pipeline that parses every line also gets why the daemon did not start."""
    if getattr(args, "log_format", "text") == "json":
        logging.getLogger("monitor").error(text)
    else:
        print(text, file=sys.stderr)


def validate(args: argparse.Namespace) -> int:
    project = _project(args, args.files or None)
    if project is None:
        return 1
    if project.checks.issues:
        for issue in project.checks.issues:
            print(issue, file=sys.stderr)
        return 1
    models = project.checks.models
    checks = sum(len(m.checks) for m in models.values())
    print(f"ok: {len(models)} model(s), {checks} check(s) valid" + (f" ({project.config_path})" if project.config_path else ""))
    for warning in project.checks.warnings:  # valid, but likely not what is meant: said, not refused
        print(f"warning: {warning}", file=sys.stderr)
    if project.config_path is None:
        print("note: no config file (--config, $MONITOR_CONFIG or ./config.yaml), so owners were not checked", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload before the daemon is up has nothing to reload
    from monitor.daemon.service import Daemon, StartupError

    project = _project(args)
    if project is None:
        return 1
    if not project.checks.models and not project.checks.issues:
        _say_error(args, f"no check files in {project.checks_dir}: add one (see checks/ in the repository for examples)")
        return 1
    try:
        return Daemon(project).run_forever()
    except StartupError as exc:  # one line, what to change; nothing was evaluated
        _say_error(args, f"monitor: {exc}")
        return 2


def check(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from monitor.daemon.service import Daemon, why_not_recorded

    model_name, _, check_name = args.target.partition("/")
    project = _project(args)
    if project is None:
        return 1
    model = project.checks.models.get(model_name)
    if model is None:
        for issue in project.checks.issues:
            print(issue, file=sys.stderr)
        known = ", ".join(sorted(project.checks.models)) or "none"
        print(f"unknown model {model_name!r}; models: {known}", file=sys.stderr)
        return 1
    try:
        spec = model.check(check_name)
    except KeyError:
        print(f"unknown check {check_name!r} of {model_name}; checks: {', '.join(c.name for c in model.checks)}", file=sys.stderr)
        return 1
    daemon = Daemon(project)
    from monitor.storage import db

    read_alerts = True
    if args.dry_run:  # stores nothing, so it does not create or migrate the database either
        revision = db.existing_revision(daemon.engine)
        read_alerts = revision is not None
        problem = db.not_at_head(daemon.engine, revision) if read_alerts else None
        if problem:
            print(problem, file=sys.stderr)
            daemon.engine.dispose()
            return 1
    else:
        db.upgrade(daemon.engine)
    try:
        result = daemon.evaluator.run(model, spec, dry_run=args.dry_run, read_alerts=read_alerts)
    except sa.exc.SQLAlchemyError as exc:  # nothing was recorded: one transaction
        print(f"{args.target}: evaluated but not recorded ({why_not_recorded(exc)})", file=sys.stderr)
        daemon.engine.dispose()
        return 1
    _print_result(result)
    if args.dry_run:
        print("dry run: nothing stored, nobody notified" + ("" if read_alerts else " (no database yet, so no alert was read)"))
    else:
        sent = daemon.outbox.deliver_now()
        waiting = daemon.outbox.pending_count()
        runs = ", ".join(f"#{part.run_id}" for part in result.parts)
        print(
            f"stored run{'s' if len(result.parts) > 1 else ''} {runs}; {sent} notification(s) delivered"
            + (f", {waiting} waiting to retry" if waiting else "")
        )
    daemon.engine.dispose()
    return 1 if result.outcome == "error" else 0


def _print_result(result) -> None:
    """Every value of a run; of a check split by model_version, each version's in turn."""
    for part in result.parts:
        _print_part(part)
    # The changes of the whole run, once, after its last part (an episode of a version no longer seen included).
    for c in result.changes:
        which = f"alert #{c.alert_id}" if result.run_id is not None else "alert (dry run)"
        print(
            f"  {which} {c.rule}{' [' + c.feature + ']' if c.feature else ''}"
            + (f" [model_version {c.model_version}]" if c.model_version else "")
            + f" -> {c.state}"
            + (f" (notify: {c.notify})" if c.notify else "")
        )


def _print_part(result) -> None:
    evaluation = result.evaluation
    version = f" [model_version {result.model_version}]" if result.model_version else ""
    start, end = result.window_start, result.window_end
    ends = f"{end:%H:%M:%S}" if start.date() == end.date() else f"{end:%Y-%m-%d %H:%M:%S}"  # a day-long window
    size = evaluation.sample_size
    print(
        f"{result.model}/{result.check}{version}: {result.outcome}  window {start:%Y-%m-%d %H:%M:%S} to {ends} UTC, "
        f"{size:,} {'row' if size == 1 else 'rows'}"
    )
    if evaluation.error:
        print(f"  {evaluation.error}")
    for value in evaluation.values:
        if not value.feature:
            print(f"  {value.metric:<21} {value.value:.6g}")
    for window in result.windows:  # over a rule's own window (a probe's availability over 1h)
        span, over = format_duration(window.window), window.windowed
        for value in over.values:
            print(f"  {value.metric:<21} {value.value:.6g}  over {span}, {over.sample_size} values")
        if not over.values:
            print(f"  over {span}: {over.sample_size} value(s), {over.needed} needed: its rules are not judged yet")
    features = evaluation.evidence.get("features")
    if features:
        print(f"  {'feature':<24} {'method':<32} {'score':>12} {'threshold':>10}  drifted")
        for f in features:
            print(
                f"  {f['feature']:<24} {f['method']:<32} {f['score']:>12.4g} {f['threshold']:>10.4g}  {'YES' if f['drifted'] else 'no'}"
            )
    for f in evaluation.evidence.get("skipped", []):
        print(f"  skipped {f['feature']}: {f['reason']}")
    for f in evaluation.evidence.get("insufficient", []):
        print(f"  too few values of {f['feature']}: {f['values']:,} of the {f['needed']:,} {f['for']} needs")
    if "no_reference_range" in evaluation.evidence:
        print(f"  no reference range: {evaluation.evidence['no_reference_range']}")
    for path, reason in evaluation.evidence.get(SKIPPED_FILES, {}).items():
        print(f"  skipped file {path}: {reason}")
    for o in result.observations:
        print(
            f"  rule {o.rule.when.text!r}{' [' + one_line(o.feature) + ']' if o.feature else ''}: {'BREACHED' if o.breached else 'ok'} at {format_number(o.value, o.threshold)}"
            + (f" (threshold {format_number(o.threshold)})" if o.rule.when.anchor and o.band is None else "")
            + (f" (reference range {format_number(o.band[0])} to {format_number(o.band[1])})" if o.band is not None else "")
        )
    if result.observations:  # else the run is insufficient_data and its error says so already
        for w in result.waiting:
            print(f"  {w.reason}")


def database(args: argparse.Namespace) -> int:
    from monitor.storage import db

    project = _project(args)
    if project is None:
        return 1
    engine = db.create_engine(project.config.database.url)
    safe_url = engine.url.render_as_string(hide_password=True)
    if args.db_command == "upgrade":
        db.upgrade(engine)
        print(f"{safe_url}: at revision {db.current_revision(engine)} (head)")
    else:  # read-only: a fresh folder keeps no new, empty database file
        print(f"{safe_url}: at revision {db.existing_revision(engine) or 'none (empty database)'}")
    engine.dispose()
    return 0


def alerts(args: argparse.Namespace) -> int:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from monitor.storage import db
    from monitor.storage.tables import OPEN_STATES, Alert, Notification

    project = _project(args)
    if project is None:
        return 1
    engine = db.create_engine(project.config.database.url)
    revision = db.existing_revision(engine)  # read-only: never creates or migrates the database
    if revision is None and args.alerts_command in ("close", "show", "ack"):
        print(f"alert #{args.id} does not exist: {engine.url.render_as_string(hide_password=True)} has no monitor tables yet",
              file=sys.stderr)  # fmt: skip
        engine.dispose()
        return 1
    if revision is None:
        print(
            f"no alerts yet: {engine.url.render_as_string(hide_password=True)} has no monitor tables "
            "(the daemon creates them when it first runs)"
        )
        engine.dispose()
        return 0
    problem = db.not_at_head(engine, revision)
    if problem:
        print(problem, file=sys.stderr)
        engine.dispose()
        return 1
    if args.alerts_command == "close":
        code = _close_alert(project, engine, args.id, args.reason)
        engine.dispose()
        return code
    if args.alerts_command == "ack":
        code = _ack_alert(engine, args.id)
        engine.dispose()
        return code
    if args.alerts_command == "show":
        code = _show_alert(engine, args.id)
        engine.dispose()
        return code
    query = sa.select(Alert).order_by(Alert.started.desc()).limit(args.limit)
    if not args.all:
        query = query.where(Alert.state.in_(OPEN_STATES))
    with Session(engine) as session:
        rows = session.scalars(query).all()
        incidents = {a.incident_id for a in rows if a.incident_id is not None}
        told = session.execute(
            sa.select(Notification.alert_id, Notification.status, sa.func.count())
            .where(Notification.alert_id.in_(sorted(incidents)))
            .group_by(Notification.alert_id, Notification.status)
        ).all()
    deliveries: dict[int, dict[str, int]] = {}
    for incident, status, count in told:
        deliveries.setdefault(incident, {})[status] = count
    if not rows:
        print("no open alerts" if not args.all else "no alerts")
    now = datetime.now(UTC)
    for a in rows:
        elapsed = (now - a.started).total_seconds()
        # To the minute once it is one: "2h5m ago", not "2h5m13s"; under a minute, the seconds ("40s", not "0ms").
        age = format_duration(timedelta(seconds=int(elapsed) if elapsed < 60 else int(elapsed // 60) * 60))
        sent = deliveries.get(a.incident_id or -1, {})
        told_text = ", ".join(f"{count} {status}" for status, count in sorted(sent.items())) or "none"
        print(
            f"#{a.id:<5} {a.state:<9} {a.severity:<8} {_target(a):<40} {a.rule:<28} last {format_number(a.last_value, a.threshold)}"
            f"  since {a.started:%Y-%m-%d %H:%M} UTC ({age} ago)  told: {told_text}" + (f"  ({a.reason})" if a.reason else "")
        )
    engine.dispose()
    return 0


def _ack_alert(engine, alert_id: int) -> int:
    from sqlalchemy.orm import Session

    from monitor.clock import SystemClock
    from monitor.storage.tables import Alert

    with Session(engine) as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.state != "firing":
            print(f"alert #{alert_id} " + ("does not exist" if alert is None else f"is not firing (it is {alert.state})"),
                  file=sys.stderr)  # fmt: skip
            return 1
        alert.acknowledged = alert.acknowledged or SystemClock().now()
        session.commit()
        incident = alert.incident_id or alert.id
        print(f"alert #{alert.id} acknowledged: its incident #{incident} is not repeated any more (its changes still are)")
    return 0


def _target(a) -> str:
    return f"{a.model}/{a.check}" + (f"[{a.feature}]" if a.feature else "") + (f"@{a.model_version}" if a.model_version else "")


def _show_alert(engine, alert_id: int) -> int:
    """One episode, its incident, the values of its metric at each run since it started, its deliveries."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from monitor.alerting.conditions import Condition
    from monitor.storage.tables import Alert, DeliveryAttempt, Metric, Notification

    with Session(engine) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            print(f"alert #{alert_id} does not exist", file=sys.stderr)
            return 1
        siblings: Sequence[Alert] = []
        if alert.incident_id is not None:
            siblings = session.scalars(
                sa.select(Alert).where(Alert.incident_id == alert.incident_id, Alert.id != alert.id).order_by(Alert.id)
            ).all()
        try:
            metric = Condition.parse(alert.rule).metric
        except ValueError:
            metric = ""
        until = alert.resolved or datetime.now(UTC)
        values = session.execute(
            sa.select(Metric.time, Metric.value, Metric.window_start, Metric.window_end)
            .where(Metric.model == alert.model, Metric.check == alert.check, Metric.metric == metric,
                   Metric.feature == alert.feature, Metric.model_version == alert.model_version,
                   Metric.time >= alert.started, Metric.time <= until)
            .order_by(Metric.time.desc())
            .limit(50)
        ).all()  # fmt: skip
        notes = session.scalars(
            sa.select(Notification).where(Notification.alert_id == (alert.incident_id or alert.id)).order_by(Notification.id)
        ).all()
        attempts: dict[int, list[DeliveryAttempt]] = {}
        for attempt in session.scalars(
            sa.select(DeliveryAttempt)
            .where(DeliveryAttempt.notification_id.in_([n.id for n in notes]))
            .order_by(DeliveryAttempt.id)
        ):
            attempts.setdefault(attempt.notification_id, []).append(attempt)
    print(f"#{alert.id} {alert.state} {alert.severity}  {_target(alert)}")
    print(
        f"  rule: {alert.rule} (threshold {format_number(alert.threshold)}), last value {format_number(alert.last_value, alert.threshold)}"
    )
    ended = f", resolved {alert.resolved:%Y-%m-%d %H:%M:%S} UTC" if alert.resolved else ""
    fired = f", fired {alert.fired:%Y-%m-%d %H:%M:%S} UTC" if alert.fired else ""
    print(f"  started {alert.started:%Y-%m-%d %H:%M:%S} UTC{fired}{ended}" + (f"; {alert.reason}" if alert.reason else ""))
    if alert.incident_id is not None:
        others = ", ".join(f"#{s.id} {s.state} {_target(s)} {s.rule}" for s in siblings) or "no other episode"
        print(f"  incident #{alert.incident_id}: {others}")
    # The links its messages carried (the evidence report of the run that fired it, the runbook, ...).
    links = {name: url for note in notes for name, url in links_told(note.payload).items()}
    for name, url in links.items():
        print(f"  {name}: {one_line(url)}")
    print(f"  values of {metric or alert.rule} at each run, newest first ({len(values)}):")
    for time, value, start, end in values:
        span = format_duration(end - start)
        print(f"    {time:%Y-%m-%d %H:%M:%S} UTC  {format_number(value, alert.threshold):>12}  over {span}")
    print(f"  deliveries of its incident ({len(notes)}):")
    for n in notes:
        error = f"  {n.error}" if n.error else ""
        print(
            f"    #{n.id} {n.event:<8} {n.receiver:<28} {n.status:<8} {n.attempts} attempt(s), last {n.time:%Y-%m-%d %H:%M:%S} UTC{error}"
        )
        for attempt in attempts.get(n.id, []):
            said = f"  {attempt.error}" if attempt.error else ""
            print(f"      {attempt.time:%Y-%m-%d %H:%M:%S} UTC  {attempt.outcome}{said}")
    return 0


def _close_alert(project: Project, engine, alert_id: int, reason: str) -> int:
    from sqlalchemy.orm.exc import StaleDataError

    from monitor.clock import SystemClock
    from monitor.daemon.closing import NotOpen, close_episode
    from monitor.notifiers.outbox import Outbox
    from monitor.notifiers.registry import Receivers

    clock = SystemClock()
    try:
        alert = close_episode(engine, alert_id, f"closed by hand: {reason}", clock.now())
    except NotOpen as exc:
        print(exc, file=sys.stderr)
        return 1
    except StaleDataError:
        print(f"alert #{alert_id} changed while closing it (an evaluation ran): try again", file=sys.stderr)
        return 1
    outbox = Outbox(engine, Receivers(project.config), clock, per_minute=project.config.notifiers.per_minute)
    sent = outbox.deliver_now()
    print(f"alert #{alert.id} {alert.model}/{alert.check} closed: {alert.reason}; {sent} notification(s) delivered")
    return 0


def demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo

    return run_demo(args.dir)


def silence(args: argparse.Namespace) -> int:
    """``monitor silence add|list|expire``: silences in the daemon's database (migrated to head first)."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from monitor.clock import SystemClock
    from monitor.notifiers.outbox import HELD
    from monitor.storage import db
    from monitor.storage.tables import Notification, Silence

    project = _project(args)
    if project is None:
        return 1
    engine = db.create_engine(project.config.database.url)
    now = SystemClock().now()
    try:
        db.upgrade(engine)
        with Session(engine) as session:
            if args.silence_command == "add":
                if args.model not in project.checks.models:
                    known = ", ".join(sorted(project.checks.models)) or "none loaded"
                    print(f"unknown model {args.model!r}; the check files define: {known}", file=sys.stderr)
                    return 2
                model = project.checks.models[args.model]
                if args.check is not None and args.check not in {c.name for c in model.checks}:
                    names = ", ".join(c.name for c in model.checks)
                    print(f"unknown check {args.check!r} of {args.model}; it has: {names}", file=sys.stderr)
                    return 2
                row = Silence(model=args.model, check=args.check, matchers=dict(args.match), starts=now,
                              ends=now + args.duration, reason=args.reason, created=now)  # fmt: skip
                session.add(row)
                session.commit()
                print(f"silence #{row.id} until {row.ends:%Y-%m-%d %H:%M:%S} UTC: {_silenced(row)}")
                return 0
            if args.silence_command == "expire":
                found = session.get(Silence, args.id)
                if found is None or found.ends <= now:
                    print(f"silence #{args.id} " + ("does not exist" if found is None else "has ended already"), file=sys.stderr)
                    return 1
                found.ends = now
                # What it held back is due now: sent if still news, dropped if the alert ended meanwhile.
                session.execute(sa.update(Notification).where(Notification.status == HELD).values(next_attempt=now))
                session.commit()
                print(f"silence #{found.id} ended: {_silenced(found)}")
                return 0
            query = sa.select(Silence).order_by(Silence.id)
            if not args.all:
                query = query.where(Silence.ends > now)
            rows = session.scalars(query).all()
            held = session.scalar(sa.select(sa.func.count()).where(Notification.status == HELD)) or 0
            if not rows:
                print("no silences in force" if not args.all else "no silences")
            for row in rows:
                state = "ended" if row.ends <= now else f"until {row.ends:%Y-%m-%d %H:%M} UTC"
                print(f"#{row.id:<4} {state:<26} {_silenced(row)}")
            if held:
                print(f"{held} notification(s) held back")
            return 0
    finally:
        engine.dispose()


def _silenced(row) -> str:
    what = row.model + (f"/{row.check}" if row.check else "")
    labels = "".join(f" {name}={value}" for name, value in sorted((row.matchers or {}).items()))
    return f"{what}{labels}: {row.reason}"


def replay(args: argparse.Namespace) -> int:
    """``monitor replay CHECK_FILE``: what the file's rules would have done over past data; nothing stored, nothing sent."""
    import json
    import tempfile

    from monitor.config.loader import load_check_files
    from monitor.daemon.replay import ReplayError, replayed
    from monitor.daemon.replay import replay as run_replay
    from monitor.storage import db

    path = args.config or default_config_path()
    try:
        project = Project.load(path, [])
    except ConfigError as exc:
        _say_error(args, str(exc))
        return 1
    now = datetime.now(UTC)
    until = args.until or now
    if until < EARLIEST:
        print(f"--until reaches before {EARLIEST:%Y-%m-%d}: give a later time", file=sys.stderr)
        return 1
    if until > now:
        print(f"--until ({until:%Y-%m-%d %H:%M} UTC) is in the future: replay reads the data there was; give a past time",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        since: datetime | None = args.since if isinstance(args.since, datetime) else until - args.since
    except OverflowError:  # a span reaching before the year 1
        since = None
    if since is None or since < EARLIEST:
        print(f"--since reaches before {EARLIEST:%Y-%m-%d}: give a later time, or a shorter span", file=sys.stderr)
        return 1
    if since >= until:
        print(f"--since ({since:%Y-%m-%d %H:%M} UTC) must be before --until ({until:%Y-%m-%d %H:%M} UTC)", file=sys.stderr)
        return 1
    if args.step is not None and args.step > until - since:
        print(f"--step {format_duration(args.step)} is longer than the replay ({format_duration(until - since)}): "
              "give a shorter one", file=sys.stderr)  # fmt: skip
        return 1

    def load(file: Path, shown: str):
        checks = load_check_files([file], project.config if project.config_path else None, base_dir=project.base_dir)
        for issue in checks.issues:
            print(str(issue).replace(str(file), shown), file=sys.stderr)
        if checks.issues or not checks.models:
            return None
        return next(iter(checks.models.values()))

    files = [(args.file, str(args.file))]
    with tempfile.TemporaryDirectory(prefix="monitor-against-") as folder:
        if args.against:
            against = _against(args.against, args.file, Path(folder))
            if against is None:
                return 1
            files.append((against, args.against))
        models = [load(file, shown) for file, shown in files]
        if any(model is None for model in models):
            return 1
        for model in models:
            assert model is not None
            skipped = sorted({c.name for i, c in enumerate(model.checks) if i not in replayed(model)})
            if skipped:
                print(
                    f"not replayed (probes call their endpoint now; they read no past data): {', '.join(skipped)}",
                    file=sys.stderr,
                )
        ingest = any(m.source is not None and m.source.kind == "ingest" for m in models if m is not None)
        source_engine = None
        if ingest:  # the samples are in the daemon's database: read, never made nor written
            if db.existing_revision(probe := db.create_engine(project.config.database.url, create_folder=False)) is None:
                probe.dispose()
                print(f"no daemon database at {project.config.database.url}: an ingest source's samples are there "
                      "(set --config to the daemon's config)", file=sys.stderr)  # fmt: skip
                return 1
            source_engine = probe
        results = []
        try:
            for model, (_, shown) in zip(models, files, strict=True):
                assert model is not None
                results.append(run_replay(project.config, model, since, until, step=args.step, source_engine=source_engine,
                                          progress=_progress(shown) if sys.stderr.isatty() else None))  # fmt: skip
        except ReplayError as exc:
            print(f"monitor replay: {exc}", file=sys.stderr)
            return 1
        finally:
            if source_engine is not None:
                source_engine.dispose()
    shown_as = [shown for _, shown in files]
    if args.format == "json":
        out = {"file": shown_as[0], "replay": results[0].to_dict()}
        if len(results) > 1:
            out["against"] = {"file": shown_as[1], "replay": results[1].to_dict()}
        print(json.dumps(out, indent=2))
    else:
        _print_replays(shown_as, results, since, until)
    return 0


def _against(against: str, file: Path, folder: Path) -> Path | None:
    """The file ``--against`` names: a path, or ``REV:PATH``, a file as git has it in a revision (written
    into ``folder``); None when git cannot give it (said on stderr)."""
    import subprocess

    try:
        exists = Path(against).exists()
    except OSError:  # a name too long for a path: not one
        exists = False
    if exists or ":" not in against:
        return Path(against)
    path = against.partition(":")[2]
    if against.startswith("-") or not Path(path).name:
        print(f"--against {against}: give a file, or REV:PATH (HEAD~1:checks/fraud-scorer.yaml)", file=sys.stderr)
        return None
    # cat-file, not show: it gives a file's bytes or fails (show would print a folder's listing), and
    # takes no option after ``--end-of-options`` (the value is never read as one, whatever it holds).
    folder_of_file = file.resolve().parent
    git = subprocess.run(["git", "cat-file", "--end-of-options", "blob", against], capture_output=True,
                         cwd=folder_of_file if folder_of_file.is_dir() else None)  # fmt: skip
    if git.returncode != 0:
        said = git.stderr.decode("utf-8", "replace").strip()
        print(f"--against {against}: {said or 'git cat-file failed'}", file=sys.stderr)
        return None
    written = folder / Path(path).name
    written.write_bytes(git.stdout)  # as git has it: the loader says what is wrong with its bytes, if anything
    return written


def _print_replays(files: list[str], results: list, since: datetime, until: datetime) -> None:
    """Each file's replay, check by check, then (with ``--against``) the two side by side."""
    span = format_duration(until - since)
    for shown, result in zip(files, results, strict=True):
        print(f"replay of {shown}, {_at(since)} to {_at(until)} UTC ({span})")
        for check in result.checks:
            outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(check.outcomes.items()))
            print(f"  {check.model}/{check.check}, every {format_duration(check.every)}: {check.runs} runs ({outcomes})")
            for reason in check.reasons:
                print(f"    {_count(reason.runs, 'run')} {reason.outcome}: {one_line(reason.error)}")
            for e in check.episodes:
                end = f" to {_at(e.resolved)}" if e.resolved else ", still open"
                told = e.fired and f"fired {_at(e.fired)}" or "never fired"
                where = f" [{one_line(e.feature)}]" if e.feature else ""
                peak = f", peak {format_number(e.peak)}" if e.peak is not None else ""
                print(f"    {e.severity:<8} {e.rule}{where}: {_at(e.started)}{end}, {told}{peak}")
            for m in check.messages:
                print(f"      {_at(m.at)} {m.event:<8} to {m.receiver}: {one_line(m.subject)}")
        print(f"{_count(result.alerts, 'alert')}, {_count(result.messages, 'message')} in {span} (nothing stored, nothing sent)")
    if len(results) == 2:
        print(f"\n{'':<40} {files[0]:>24} {files[1]:>24}")
        sides = [{f"{c.model}/{c.check}": _budget(c.alerts, len(c.messages)) for c in result.checks} for result in results]
        for name in dict.fromkeys([*sides[0], *sides[1]]):  # by name: a check only one side has shows "-" on the other
            print(f"{name:<40} {sides[0].get(name, '-'):>24} {sides[1].get(name, '-'):>24}")
        print(f"{'total':<40} {_budget(results[0].alerts, results[0].messages):>24} "
              f"{_budget(results[1].alerts, results[1].messages):>24}")  # fmt: skip


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _at(time: datetime) -> str:
    """A replay's time: to the minute, and to the second when it is not on one (a replay of seconds)."""
    return f"{time:%Y-%m-%d %H:%M:%S}" if time.second or time.microsecond else f"{time:%Y-%m-%d %H:%M}"


def _budget(alerts: int, messages: int) -> str:
    return f"{_count(alerts, 'alert')}, {_count(messages, 'message')}"


def _progress(shown: str):
    """A progress line on the terminal, rewritten in place."""

    def say(done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        end = "\n" if done == total else ""
        print(
            f"\rreplaying {shown}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return say
