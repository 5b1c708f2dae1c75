"""``monitor validate``: exit 0 on a valid project, else exit 1 with one ``file:line:col: path: message`` per problem.

What a broken file prints, file by file, is the corpus in tests/broken/ (tests/test_broken_files.py runs it);
here are the valid projects, the choice of files, ``${VAR}``, secrets, and what the repository ships.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest
from conftest import checkout_env
from factories import reference_frame, write_project

from monitor.cli import main
from monitor.config import ConfigError
from monitor.config.loader import load_config, load_model_file

REPO = Path(__file__).parents[1]
SECRET = "xoxb-secret-value"

CONFIG = dedent("""\
    database:
      url: sqlite:///monitor.db
    checks_dir: checks
    owners:
      fraud-team:
        slack: "#fraud-alerts"
      ml-platform:
        slack: "#ml-platform"
    routes:
      - match: {severity: critical}
        also: [ml-platform]
    """)

VALID_CHECKS = dedent("""\
    model: fraud-scorer
    owner: fraud-team
    source:
      kind: files
      path: data/live-*.parquet
      timestamp: created_at
      id: request_id
      features: [amount, country, account_age_days]
      prediction: score
      latency: latency_ms
    reference:
      path: data/reference.parquet
    checks:
      - name: feature-drift
        kind: drift
        every: 15m
        window: 1h
        alert:
          - when: drift_share > 0.3
            severity: warning
          - when: drift_share > 0.5
            severity: critical
      - name: latency
        kind: latency
        every: 1m
        window: 10m
        alert:
          - when: p99_ms > 250
            severity: critical
    """)


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    """The user's own $MONITOR_CONFIG must not leak into these tests."""
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def validate(capsys, *args: str) -> tuple[int, str, list[str]]:
    """Run ``monitor validate ARGS`` in-process: exit code, stdout, and the stderr lines."""
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty directory with CONFIG as config.yaml, made the current directory."""
    write(tmp_path / "config.yaml", CONFIG)
    (tmp_path / "checks").mkdir()
    (tmp_path / "data").mkdir()
    reference_frame().to_parquet(tmp_path / "data" / "reference.parquet")  # the files' reference.path
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- a valid project ----------------------------------------------------------------------------------


def test_valid_project_exits_0(tmp_path, capsys, monkeypatch):
    config = write_project(tmp_path)
    code, out, errors = validate(capsys, "--config", str(config))
    assert (code, errors) == (0, [])
    assert "ok: 1 model(s), 2 check(s) valid" in out


def test_valid_project_from_its_directory_with_the_default_config(tmp_path, capsys, monkeypatch):
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, errors = validate(capsys)  # ./config.yaml, then every file of its checks_dir
    assert (code, errors) == (0, [])
    assert "ok: 1 model(s), 2 check(s) valid (config.yaml)" in out


def test_literal_valid_files_are_valid(project, capsys):
    write(project / "checks" / "fraud-scorer.yaml", VALID_CHECKS)
    code, out, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml")
    assert (code, errors) == (0, [])
    assert "ok: 1 model(s), 2 check(s) valid" in out


def test_an_ingest_feature_type_may_be_written_text_as_the_docs_and_evidence_name_it(tmp_path):
    path = tmp_path / "stream.yaml"
    path.write_text(
        "model: stream\nowner: team\n"
        "source: {kind: ingest, features: [country, amount], feature_types: {country: text, amount: number}}\n"
        "checks: [{name: volume, kind: volume, every: 1m, window: 10m}]\n"
    )
    model = load_model_file(path, base_dir=tmp_path)
    assert model.source.feature_types == {"country": "string", "amount": "number"}


def test_a_wait_may_be_written_as_none_at_all(tmp_path):
    """``for`` and ``label_delay`` default to 0: writing ``0s`` says the same (``every`` and ``window`` may not)."""
    path = tmp_path / "quality.yaml"
    path.write_text(
        "model: quality\nowner: team\n"
        "source: {kind: ingest, features: [amount]}\n"
        "checks:\n"
        "  - {name: q, kind: performance, task: regression, every: 1h, window: 1d, label_delay: 0s, for: 0s,\n"
        "     alert: [{when: mae > 10, for: 0s}]}\n"
    )
    [check] = load_model_file(path, base_dir=tmp_path).checks
    assert check.label_delay.total_seconds() == check.for_.total_seconds() == check.alert[0].for_.total_seconds() == 0


def test_the_same_model_in_two_files_is_an_error(project, capsys):
    write(project / "checks" / "fraud-scorer.yaml", VALID_CHECKS)
    write(project / "checks" / "fraud-scorer-copy.yaml", VALID_CHECKS)
    code, _, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml", "checks/fraud-scorer-copy.yaml")
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "checks/fraud-scorer-copy.yaml:1:1: model: model 'fraud-scorer' is already defined in checks/fraud-scorer.yaml"
    )


# --- FILE arguments -----------------------------------------------------------------------------------


def test_a_single_file_argument_validates_only_that_file(project, capsys):
    write(project / "checks" / "fraud-scorer.yaml", VALID_CHECKS)
    write(project / "checks" / "broken.yaml", "model: broken\nowner: [\n")

    code, out, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml")
    assert (code, errors) == (0, [])
    assert "ok: 1 model(s), 2 check(s) valid" in out

    code, out, errors = validate(capsys, "--config", "config.yaml", "checks/broken.yaml")
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith("checks/broken.yaml:3:1: YAML syntax error: "), errors


def test_a_file_argument_may_live_anywhere(project, capsys):
    elsewhere = write(project / "pr" / "new-model.yaml", VALID_CHECKS.replace("fraud-scorer", "new-model"))
    code, out, errors = validate(capsys, "--config", "config.yaml", str(elsewhere))
    assert (code, errors) == (0, [])
    assert "ok: 1 model(s)" in out


def test_a_missing_file_argument_is_reported(project, capsys):
    code, _, errors = validate(capsys, "--config", "config.yaml", "checks/nope.yaml")
    assert code == 1
    assert errors == ["checks/nope.yaml:1:1: cannot read file: No such file or directory"]


# --- the daemon config --------------------------------------------------------------------------------


def test_a_missing_config_file_is_reported(project, capsys):
    code, _, errors = validate(capsys, "--config", "nope.yaml")
    assert code == 1
    assert errors == ["nope.yaml:1:1: cannot read file: No such file or directory"]


# --- ${VAR} and ${VAR:-default} -----------------------------------------------------------------------

VARIABLES_CONFIG = dedent("""\
    database:
      url: ${MONITOR_TEST_DB_URL:-sqlite:///default.db}
    server:
      token: ${MONITOR_TEST_INGEST_TOKEN:-}
    notifiers:
      slack:
        token: ${MONITOR_TEST_SLACK_TOKEN:-}
        base_url: ${MONITOR_TEST_SLACK_URL:-https://slack.com/api/}
    owners:
      fraud-team:
        slack: "#fraud-${MONITOR_TEST_ENV:-prod}"
        webhook: ${MONITOR_TEST_PAGER_URL}
        mention: ["$$5 off", "@dana"]
    """)
VARIABLES = [
    "MONITOR_TEST_DB_URL",
    "MONITOR_TEST_INGEST_TOKEN",
    "MONITOR_TEST_SLACK_TOKEN",
    "MONITOR_TEST_SLACK_URL",
    "MONITOR_TEST_ENV",
    "MONITOR_TEST_PAGER_URL",
]


@pytest.fixture
def variables_config(tmp_path, monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "checks").mkdir()  # the config's checks_dir
    return write(tmp_path / "config.yaml", VARIABLES_CONFIG)


def test_variable_defaults_apply_when_unset(variables_config, monkeypatch):
    monkeypatch.setenv("MONITOR_TEST_PAGER_URL", "https://events.pagerduty.example/v2/enqueue")
    config = load_config(variables_config)
    assert config.database.url == "sqlite:///default.db"
    assert config.server.token.get_secret_value() == ""
    assert config.notifiers.slack.token.get_secret_value() == ""
    assert config.notifiers.slack.base_url == "https://slack.com/api/"
    assert config.owners["fraud-team"].slack == "#fraud-prod"
    assert config.owners["fraud-team"].webhook.url.get_secret_value() == "https://events.pagerduty.example/v2/enqueue"
    assert config.owners["fraud-team"].mention == ["$5 off", "@dana"], "$$ is a literal dollar"


def test_variables_are_read_from_the_environment(variables_config, monkeypatch):
    monkeypatch.setenv("MONITOR_TEST_DB_URL", "postgresql+psycopg://monitor@db/monitor")
    monkeypatch.setenv("MONITOR_TEST_SLACK_TOKEN", "xoxb-1")
    monkeypatch.setenv("MONITOR_TEST_SLACK_URL", "http://127.0.0.1:9999/api/")
    monkeypatch.setenv("MONITOR_TEST_ENV", "staging")
    monkeypatch.setenv("MONITOR_TEST_PAGER_URL", "https://pager.example/x")
    config = load_config(variables_config)
    assert config.database.url == "postgresql+psycopg://monitor@db/monitor"
    assert config.notifiers.slack.token.get_secret_value() == "xoxb-1"
    assert config.notifiers.slack.base_url == "http://127.0.0.1:9999/api/"
    assert config.owners["fraud-team"].slack == "#fraud-staging"


def test_an_empty_variable_takes_the_default_like_the_shell(variables_config, monkeypatch):
    """``${VAR:-default}`` replaces an unset *or empty* VAR (POSIX shell, docker compose); ``${VAR}`` keeps ''."""
    monkeypatch.setenv("MONITOR_TEST_DB_URL", "")
    monkeypatch.setenv("MONITOR_TEST_PAGER_URL", "")
    config = load_config(variables_config)
    assert config.database.url == "sqlite:///default.db"
    assert config.owners["fraud-team"].webhook is None  # an empty URL is no webhook


def test_variables_may_come_from_an_explicit_environment(variables_config):
    config = load_config(
        variables_config, environ={"MONITOR_TEST_ENV": "dev", "MONITOR_TEST_PAGER_URL": "https://pager.example/x"}
    )
    assert config.owners["fraud-team"].slack == "#fraud-dev"


def test_an_unset_variable_without_default_names_the_variable(variables_config, capsys):
    with pytest.raises(ConfigError) as caught:
        load_config(variables_config)
    assert [str(i) for i in caught.value.issues] == [
        f"{variables_config}:12:14: owners.fraud-team.webhook: environment variable MONITOR_TEST_PAGER_URL is not set "
        "and has no default: set it, or write ${MONITOR_TEST_PAGER_URL:-default}"
    ]
    code, _, errors = validate(capsys, "--config", str(variables_config))
    assert code == 1
    assert len(errors) == 1 and "MONITOR_TEST_PAGER_URL is not set" in errors[0]


def test_variables_in_a_check_file(tmp_path, monkeypatch):
    path = write(
        tmp_path / "checks" / "fraud-scorer.yaml",
        dedent("""\
        model: fraud-scorer
        owner: ${MONITOR_TEST_OWNER:-fraud-team}
        source:
          kind: sql
          url: ${MONITOR_TEST_FRAUD_DB}
          table: predictions
          timestamp: created_at
          id: request_id
          features: [amount]
          latency: latency_ms
        checks:
          - name: latency
            kind: latency
            every: ${MONITOR_TEST_EVERY:-1m}
            window: 10m
        """),
    )
    monkeypatch.delenv("MONITOR_TEST_OWNER", raising=False)
    monkeypatch.delenv("MONITOR_TEST_EVERY", raising=False)
    monkeypatch.setenv("MONITOR_TEST_FRAUD_DB", "postgresql+psycopg://reader@db/fraud")
    model = load_model_file(path, base_dir=tmp_path)
    assert model.owner == "fraud-team"
    assert model.source.url == "postgresql+psycopg://reader@db/fraud"
    assert model.checks[0].every.total_seconds() == 60

    monkeypatch.setenv("MONITOR_TEST_EVERY", "30s")
    assert load_model_file(path, base_dir=tmp_path).checks[0].every.total_seconds() == 30

    monkeypatch.delenv("MONITOR_TEST_FRAUD_DB")
    with pytest.raises(ConfigError) as caught:
        load_model_file(path, base_dir=tmp_path)
    assert [(i.line, i.col, i.path) for i in caught.value.issues] == [(5, 8, "source.url")]
    assert "MONITOR_TEST_FRAUD_DB is not set" in caught.value.issues[0].message


# --- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            notifiers:
              slack:
                token: ${SLACK_BOT_TOKEN}
                base_url: [not, a, url]       # line 4, column 15
                tokn: ${SLACK_BOT_TOKEN}      # line 5, column 5
            owners:
              fraud-team: {}
            """,
            ["config.yaml:4:15: notifiers.slack.base_url: ", "config.yaml:5:5: notifiers.slack.tokn: unknown key 'tokn'"],
            id="errors-beside-the-token",
        ),
        pytest.param(
            """\
            notifiers:
              slack: ${SLACK_BOT_TOKEN}       # line 2, column 10: a mapping was expected
            owners:
              fraud-team: {}
            """,
            ["config.yaml:2:10: notifiers.slack: "],
            id="token-where-a-mapping-belongs",
        ),
        pytest.param(
            """\
            notifiers:
              slack:
                token: ${SLACK_BOT_TOKEN}
                token: ${SLACK_BOT_TOKEN}     # line 4, column 5
            owners:
              fraud-team: {}
            """,
            ["config.yaml:4:5: notifiers.slack.token: duplicate key 'token'"],
            id="duplicate-token",
        ),
        pytest.param(
            """\
            server:
              listen: ${SLACK_BOT_TOKEN}      # line 2, column 11
            owners:
              fraud-team: {}
            """,
            ["config.yaml:2:11: server.listen: "],
            id="token-in-a-checked-text",
        ),
    ],
)
def test_errors_never_print_a_secret(project, capsys, monkeypatch, text, expected):
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    write(project / "config.yaml", dedent(text))
    code = main(["validate", "--config", "config.yaml"])
    captured = capsys.readouterr()
    assert code == 1
    errors = captured.err.splitlines()
    assert len(errors) == len(expected), errors
    for line, start in zip(errors, expected, strict=False):
        assert line.startswith(start), line
    assert SECRET not in captured.out + captured.err
    assert "secret-value" not in captured.out + captured.err


# --- the real command, in a subprocess ----------------------------------------------------------------


def monitor(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=cwd,
        env=checkout_env(environment),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_exit_0_on_a_valid_project(tmp_path):
    write_project(tmp_path)
    done = monitor("validate", "--config", "config.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ok: 1 model(s), 2 check(s) valid" in done.stdout
    assert done.stderr == ""


def test_subprocess_exit_2_on_a_usage_error(tmp_path):
    done = monitor("validate", "--no-such-option", cwd=tmp_path)
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-option" in done.stderr


# --- what the repository ships ------------------------------------------------------------------------


def test_shipped_config_and_checks_are_valid():
    """config.example.yaml and every file in checks/ validate with none of their ${VAR}s set: all have defaults."""
    config = REPO / "config.example.yaml"
    assert config.is_file(), "the repository must ship config.example.yaml"
    check_files = sorted(p for p in (REPO / "checks").glob("*") if p.suffix in (".yaml", ".yml"))
    assert check_files, "the repository must ship example check files in checks/"
    variables = set()
    for path in [config, *check_files]:
        variables |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if k not in variables and k != "MONITOR_CONFIG"}

    done = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "--config", "config.example.yaml"],
        cwd=REPO,
        env=checkout_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert f"ok: {len(check_files)} model(s)" in done.stdout, "every file in checks/ is a model the config picks up"
    assert "warning:" not in done.stderr, "the examples are what a new user copies: no warning either"

    listed = [str(p.relative_to(REPO)) for p in check_files]
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "--config", "config.example.yaml", *listed],
        cwd=REPO,
        env=checkout_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
