"""``monitor --help``, each sub-command's ``--help`` and ``--version``: exit 0 and say what a user needs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import checkout_env
from factories import live_frame, write_project

from monitor import __version__
from monitor.cli import main


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_top_level_help_lists_every_command_and_examples(capsys):
    out = help_text(capsys)
    assert out.startswith("usage: monitor")
    for command in ("run", "validate", "check", "db", "alerts", "demo"):
        assert f"\n    {command} " in out, f"{command} is listed"
    for example in (
        "monitor demo",
        "monitor validate checks/fraud-scorer.yaml",
        "monitor check fraud-scorer/feature-drift --dry-run",
        "monitor run --config config.yaml",
        "monitor db upgrade",
    ):
        assert example in out
    assert "--version" in out
    assert "$MONITOR_CONFIG" in out, "where the config comes from"
    assert "${VAR:-default}" in out, "how secrets reach the config"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run"], ["usage: monitor run", "--config FILE", "SIGTERM", "Ctrl-C", "Migrates the database"]),
        (
            ["validate"],
            [
                "usage: monitor validate",
                "--config FILE",
                "[FILE ...]",
                "file:line:col",
                "exits 1",
                "exits 0",
                "${VAR}",
                "checks_dir",
            ],
        ),
        (
            ["check"],
            [
                "usage: monitor check",
                "MODEL/CHECK",
                "--dry-run",
                "store nothing, notify no one",
                "fraud-scorer/feature-drift",
                "--config FILE",
            ],
        ),
        (["db"], ["usage: monitor db", "upgrade", "current", "Alembic"]),
        (["db", "upgrade"], ["usage: monitor db upgrade", "--config FILE"]),
        (["db", "current"], ["usage: monitor db current", "--config FILE"]),
        (["alerts"], ["usage: monitor alerts", "--all", "--limit", "default 50", "--config FILE"]),
        (["demo"], ["usage: monitor demo", "--dir DIR", "SLACK_BOT_TOKEN", "MONITOR_DEMO_CHANNEL", "temporary"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and " " not in v[0] else None,
)
def test_sub_command_help(capsys, argv, expected):
    out = help_text(capsys, *argv)
    for fragment in expected:
        assert fragment in out, f"{fragment!r} not in help of {' '.join(argv)}"


def test_config_option_explains_its_default(capsys):
    out = " ".join(help_text(capsys, "validate").split())  # argparse wraps lines
    assert "default: $MONITOR_CONFIG, else ./config.yaml if present, else built-in defaults" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"monitor {__version__}"


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "usage: monitor" in err and "required: COMMAND" in err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        main(["valdate"])
    assert done.value.code == 2
    assert "invalid choice: 'valdate'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], "usage: monitor [-h] [--version]"),
        (["validate", "--help"], "usage: monitor validate"),
        (["db", "upgrade", "--help"], "usage: monitor db upgrade"),
        (["--version"], f"monitor {__version__}"),
    ],
)
def test_python_dash_m_monitor(tmp_path, argv, expected):
    done = subprocess.run(
        [sys.executable, "-m", "monitor", *argv], cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_a_command_that_read_parquet_exits_with_its_own_code_every_time(tmp_path):
    """pyarrow's reader threads could abort the interpreter's shutdown (exit 134 after printing ok, about
    one run in four): the command ends with main's code without tearing the interpreter down."""
    config = write_project(tmp_path, live=live_frame(200))
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "validate", "--config", str(config)],
            cwd=tmp_path,
            env=checkout_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    finished = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    assert [code for code, _, _ in finished] == [0] * 8, [err for _, _, err in finished]
    assert all(out.startswith("ok: ") for _, out, _ in finished)
