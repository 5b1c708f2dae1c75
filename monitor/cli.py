"""The ``monitor`` command: run the daemon, validate check files, evaluate one check, migrate, demo."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from monitor import __version__
from monitor.logs import FORMATS, formatter

EPILOG = """\
examples:
  monitor demo                                  the whole loop on embedded defaults, in about a minute
  monitor validate                              check config.yaml and every file in checks/
  monitor validate checks/fraud-scorer.yaml     check one file (in CI, on a pull request)
  monitor check fraud-scorer/feature-drift      evaluate one check now, store and notify
  monitor check fraud-scorer/feature-drift --dry-run
  monitor run --config config.yaml              the daemon, until SIGTERM or Ctrl-C
  monitor alerts                                open alert episodes; `monitor alerts show ID`, `close ID --reason TEXT`
  monitor silence add --model M --for 2h --reason TEXT   hold a model's alerts back; `silence list`, `expire ID`
  monitor replay checks/fraud-scorer.yaml --since 7d --against HEAD~1:checks/fraud-scorer.yaml
                                                what the rules would have done (a pull request's alert budget)
  monitor db upgrade                            migrate the database to the latest schema

The config file is --config, else $MONITOR_CONFIG, else ./config.yaml when it exists, else the built-in
defaults (SQLite in ./monitor.db, check files in ./checks). Secrets come from the environment:
${VAR} and ${VAR:-default} in any YAML value.  Docs: README.md and docs/."""


def _matcher(text: str) -> tuple[str, str]:
    from monitor.alerting.rules import SEVERITY_RANK
    from monitor.alerting.silences import LABELS

    name, sep, value = text.partition("=")
    if not sep or name.strip() not in LABELS or not value.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE with LABEL one of {', '.join(LABELS)}, e.g. severity=warning")
    if name.strip() == "severity" and value.strip() not in SEVERITY_RANK:  # it would hold nothing
        raise argparse.ArgumentTypeError(f"severity is one of {', '.join(SEVERITY_RANK)}, not {value.strip()!r}")
    return name.strip(), value.strip()


def _duration(text: str):
    from monitor.config.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(text: str):
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UTC time such as 2026-11-01T00:00, not {text!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _since(text: str):
    """A duration back from --until (7d), or a time."""
    return _when(text) if text[:1].isdigit() and ("-" in text or "T" in text) else _duration(text)


def _reason(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("say why, for the people the alert went to")
    return text.strip()


def _config_arg(parser: argparse.ArgumentParser, *, inner: bool = False) -> None:
    """``--config``; ``inner`` for an action's own parser, so that ``--config`` given before the action
    is not reset by the action's default."""
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS if inner else None,
        help="daemon config (default: $MONITOR_CONFIG, else ./config.yaml if present, else built-in defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Watch machine-learning models in production: drift, latency and more, "
        "stored in SQL and alerted to their owners.",
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get("MONITOR_LOG_FORMAT", "text").strip().lower(),
        help="text (the default, for a terminal) or json: one object a line with time (UTC), level, logger, message, "
        "and the model, check, run_id or receiver it is about (default: $MONITOR_LOG_FORMAT, else text)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the daemon in the foreground",
        description="Run every check on its schedule and deliver alerts, until SIGTERM or "
        "SIGINT (Ctrl-C). Migrates the database first. A check file with errors "
        "is reported and skipped; the others run.",
    )
    _config_arg(run)

    validate = commands.add_parser(
        "validate",
        help="check the config and check files; exit 1 on any problem",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Validate the daemon config and check files without running anything. Prints one\n"
        "`file:line:col: key: message` line per problem and exits 1, or exits 0 when all is valid.\n"
        "Environment variables used as ${VAR} must be set (or have a default) where you validate.",
    )
    _config_arg(validate)
    validate.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="check files to validate (default: every *.yaml and *.yml in the config's checks_dir)",
    )

    check = commands.add_parser(
        "check",
        help="evaluate one check now and print the result",
        description="Evaluate MODEL/CHECK over its window ending now, print every value, "
        "store the run and its metrics, move its alerts and deliver what they "
        "owe. Exit 0 when it evaluated (breach or not), 1 on an error.",
    )
    check.add_argument("target", metavar="MODEL/CHECK", help="for example fraud-scorer/feature-drift")
    check.add_argument("--dry-run", action="store_true", help="compute and print only: store nothing, notify no one")
    _config_arg(check)

    database = commands.add_parser(
        "db", help="database schema commands", description="Manage the database schema (Alembic migrations)."
    )
    db_commands = database.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="migrate to the latest schema (the daemon also does this at start)",
        description="Run the Alembic migrations up to the latest schema revision. Safe to "
        "run again: a database at the head is left as it is.",
    )
    _config_arg(upgrade)
    current = db_commands.add_parser(
        "current",
        help="print the schema revision the database is at",
        description="Print the database URL (password hidden) and its schema revision.",
    )
    _config_arg(current)

    alerts = commands.add_parser(
        "alerts",
        help="list alert episodes, or close one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List open alert episodes (pending and firing), newest first, with their state, severity, age, "
        "last value and deliveries; with no database yet, there are none.\n"
        "  monitor alerts [--all]                      the list\n"
        "  monitor alerts show ID                      one episode: its incident, every run's value, each delivery attempt\n"
        "  monitor alerts ack ID                       someone is on it: its incident is not repeated any more\n"
        "  monitor alerts close ID --reason TEXT       end one episode by hand (its message says why)",
    )
    alerts.add_argument("--all", action="store_true", help="include ended episodes")
    alerts.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    _config_arg(alerts)
    alert_actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    show = alert_actions.add_parser(
        "show",
        help="one episode's history and deliveries",
        description="One alert episode: its rule, state and incident, the check's value of its metric at every run "
        "since it started (the last 50), and each notification of its incident with its status, attempts and error.",
    )
    show.add_argument("id", type=int, metavar="ID", help="the alert number, as `monitor alerts` lists it")
    _config_arg(show, inner=True)
    ack = alert_actions.add_parser(
        "ack",
        help="acknowledge an episode: its incident is not repeated any more",
        description="Say that someone is on it: the episode's incident is no longer told again every "
        "notifiers.repeat (4h). Its changes and its resolution are still told.",
    )
    ack.add_argument("id", type=int, metavar="ID", help="the alert number, as `monitor alerts` lists it")
    _config_arg(ack, inner=True)
    close = alert_actions.add_parser(
        "close",
        help="end an open episode by hand",
        description="End an open alert episode by hand, for the rare case its rule cannot (a data set that will not "
        "come back, say). A firing episode's message is updated to say it was closed and why; a rule that "
        "still breaches opens a new episode at its next run.",
    )
    close.add_argument("id", type=int, metavar="ID", help="the alert number, as `monitor alerts` lists it")
    close.add_argument("--reason", required=True, type=_reason, metavar="TEXT", help="why, for the people the alert went to")
    _config_arg(close, inner=True)

    silence = commands.add_parser(
        "silence",
        help="hold some alerts back for a while (maintenance, a known incident)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A silence holds back the messages of one model's alerts (one check's, with --check; "
        "those with some labels, with --match) for a while: they are recorded, not sent. One still firing "
        "when the silence ends is sent then; one that came and went within it is not.\n"
        "  monitor silence add --model fraud-scorer --check feature-drift --for 2h --reason 'reindexing'\n"
        "  monitor silence add --model fraud-scorer --match severity=warning --for 30m --reason 'deploy'\n"
        "  monitor silence list [--all]\n"
        "  monitor silence expire ID",
    )
    _config_arg(silence)
    silence_actions = silence.add_subparsers(dest="silence_command", metavar="ACTION", required=True)
    add = silence_actions.add_parser("add", help="start a silence now")
    add.add_argument("--model", required=True, help="the model whose alerts it holds back")
    add.add_argument("--check", help="only this check's alerts (default: every check of the model)")
    add.add_argument("--match", action="append", default=[], type=_matcher, metavar="LABEL=VALUE",
                     help="only alerts with this label (severity, feature, owner, rule, model_version); repeatable")  # fmt: skip
    add.add_argument("--for", dest="duration", required=True, type=_duration, metavar="DURATION", help="how long: 30m, 2h, 1d")
    add.add_argument("--reason", required=True, type=_reason, metavar="TEXT", help="why, for whoever looks at it later")
    _config_arg(add, inner=True)
    listing = silence_actions.add_parser("list", help="the silences in force")
    listing.add_argument("--all", action="store_true", help="include ended ones")
    _config_arg(listing, inner=True)
    expire = silence_actions.add_parser("expire", help="end a silence now: what it held back is sent (if still firing)")
    expire.add_argument("id", type=int, metavar="ID", help="the silence number, as `monitor silence list` shows it")
    _config_arg(expire, inner=True)

    replay = commands.add_parser(
        "replay",
        help="what a check file's rules would have done over past data (nothing stored or sent)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate CHECK_FILE's checks over past windows, as the daemon would have run them, from the\n"
        "model's source (an ingest source: the daemon's stored samples), and print per check the episodes\n"
        "its rules would have opened (start, end, peak, severity) and the messages they would have sent,\n"
        "with totals. Nothing is stored in the daemon's database, nothing is sent. With --against, a second\n"
        "version of the file (a path, or REV:PATH: the file in a git revision) is replayed over the same time and\n"
        "both are shown side by side: the alert budget of a pull request.",
        epilog="examples:\n"
        "  monitor replay checks/fraud-scorer.yaml --since 7d\n"
        "  monitor replay checks/fraud-scorer.yaml --since 14d --step 1h --against HEAD~1:checks/fraud-scorer.yaml\n"
        "  monitor replay checks/fraud-scorer.yaml --since 2026-11-01T00:00 --until 2026-11-08T00:00 --format json",
    )
    replay.add_argument("file", type=Path, metavar="CHECK_FILE", help="the check file to replay")
    replay.add_argument(
        "--since", type=_since, default="7d", help="how far back (7d), or a UTC time (2026-11-01T00:00); default 7d"
    )
    replay.add_argument("--until", type=_when, help="the end, a UTC time (default: now)")
    replay.add_argument("--step", type=_duration, help="run every check this often (default: each check's own every)")
    replay.add_argument("--against", metavar="FILE|REV:PATH", help="another version of the file, replayed over the same time")
    replay.add_argument("--format", choices=("text", "json"), default="text", help="json: for CI")
    _config_arg(replay)

    demo = commands.add_parser(
        "demo",
        help="the whole loop on embedded defaults, in about a minute",
        description="Generate a reference data set, run a simulated batch-scoring job that "
        "starts healthy, drifts, then recovers, and run the real daemon on it "
        "(SQLite, console alerts; Slack too when SLACK_BOT_TOKEN is set, in "
        "MONITOR_DEMO_CHANNEL, default #monitor-demo). Watch the alert fire and resolve.",
    )
    demo.add_argument("--dir", type=Path, help="where to write the demo project (default: a new temporary folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_format not in FORMATS:  # only from the environment: argparse checks what is written
        parser.error(f"MONITOR_LOG_FORMAT={args.log_format!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(args.log_format))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    # httpx logs every request's URL at INFO: a receiver's URL may hold its secret (a webhook key).
    for noisy in ("apscheduler", "alembic", "slack_sdk", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # What evidently and scikit-learn warn of (a division by zero, an ill-defined precision) is in the
    # run's evidence as an undefined metric, with its reason; on the terminal it is only noise.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"evidently\.")
    warnings.filterwarnings("ignore", message=r".*(ill-defined|Only one class)", module=r"sklearn\.")
    from monitor import commands

    run = {
        "run": commands.run,
        "validate": commands.validate,
        "check": commands.check,
        "db": commands.database,
        "alerts": commands.alerts,
        "silence": commands.silence,
        "demo": commands.demo,
        "replay": commands.replay,
    }[args.command]
    try:
        return run(args)
    except BrokenPipeError:  # `monitor check ... | head`: the reader has gone, and so may we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


NUMERIC_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_numerics() -> None:
    """One thread for numpy's and scipy's linear algebra (OpenBLAS), unless the environment says otherwise;
    read when they load, so before anything imports numpy. The daemon runs its evaluations side by side
    itself (threads, ``processes:``); OpenBLAS's own threads spin for a while after every call, and on a
    daemon with 200 models that spinning was two thirds of its CPU (``docs/performance.md``). Worker
    processes inherit the environment."""
    for name in NUMERIC_THREADS:
        os.environ.setdefault(name, "1")


def entry() -> NoReturn:
    """The ``monitor`` command: :func:`main`, then out without the interpreter's finalization.

    pyarrow's reader threads can outlive a read until Python tears its modules down, and then abort the
    process (``terminate called without an active exception``, exit 134: apache/arrow#34314): a
    ``monitor validate`` that printed ``ok`` failed about one run in four. Everything a command does is
    finished when main returns (the daemon has stopped its threads, the outbox and the database), so
    the streams are flushed and the process ends at once with main's code."""
    single_threaded_numerics()
    try:
        code = main()
    except ModuleNotFoundError as exc:  # the client alone is installed (pip install monitor): not the daemon's
        print(f"monitor: {exc.name} is not installed: the monitor command needs the daemon's dependencies, "
              "pip install 'monitor[daemon]'", file=sys.stderr)  # fmt: skip
        code = 2
    except SystemExit as exc:  # argparse's --help and usage errors
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)
