"""``monitor validate``: exit 0 on a valid project, else exit 1 with one ``file:line:col: path: message`` per problem.

Most broken check files are SMALL_CHECKS (its lines are numbered in a comment above it) with a few whole
lines replaced or inserted by ``edited``, so that the expected line and column of every problem can be
checked by eye: the comments on the offending lines say where the problem is reported.
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


# --- one problem, one line ----------------------------------------------------------------------------

# A valid check file with one drift check. Every broken file below is this one with a few whole lines
# replaced, inserted or deleted (see ``edited``), so its numbered lines are the ones to count from:
#
#    1  model: fraud-scorer
#    2  owner: fraud-team
#    3  source:
#    4    kind: files
#    5    path: data/live-*.parquet
#    6    timestamp: created_at
#    7    id: request_id
#    8    features: [amount, country]
#    9  reference:
#   10    path: data/reference.parquet
#   11  checks:
#   12    - name: feature-drift
#   13      kind: drift
#   14      every: 15m
#   15      window: 1h
#
# Columns count from 1: a top-level key is at column 1, a key of ``source`` at column 3, and a key of a
# check at column 5. An inserted or replaced line carries a comment saying where its problem is reported.
SMALL_CHECKS = dedent("""\
    model: fraud-scorer
    owner: fraud-team
    source:
      kind: files
      path: data/live-*.parquet
      timestamp: created_at
      id: request_id
      features: [amount, country]
    reference:
      path: data/reference.parquet
    checks:
      - name: feature-drift
        kind: drift
        every: 15m
        window: 1h
    """)


def edited(
    *,
    replace: dict[int, str] | None = None,
    insert_after: dict[int, str | list[str]] | None = None,
    delete: range | tuple[int, ...] = (),
    stop_after: int | None = None,
) -> str:
    """SMALL_CHECKS with whole lines changed; every number is a line number of SMALL_CHECKS as listed above.

    ``replace={n: line}`` puts ``line`` in place of line n, ``insert_after={n: lines}`` adds ``lines`` after
    line n (0 for the top), ``delete`` drops those lines and ``stop_after=n`` keeps nothing after line n.
    """
    replace, insert_after = replace or {}, insert_after or {}
    out = list(insert_after.get(0, []))
    for number, line in enumerate(SMALL_CHECKS.splitlines(), start=1):
        if stop_after is not None and number > stop_after:
            break
        if number not in delete:
            out.append(replace.get(number, line))
        added = insert_after.get(number, [])
        out.extend([added] if isinstance(added, str) else added)
    return "\n".join(out) + "\n"


CASES = [
    pytest.param(
        edited(
            insert_after={
                15: [
                    "    methd: psi                    # line 16, column 5: the key",
                    "    alert:",
                    "      - when: drift_share > 0.3",
                ]
            }
        ),
        16,
        5,
        "checks[0].methd",
        ["unknown key 'methd'", "did you mean 'method'?", "; allowed: ", "min_rows"],
        id="misspelt-key",
    ),
    pytest.param(
        edited(insert_after={15: "    min_rows: lots                # line 16, column 15: the value"}),
        16,
        15,
        "checks[0].min_rows",
        ["expected a whole number", "got text"],
        id="wrong-type-text-for-number",
    ),
    pytest.param(
        edited(insert_after={15: "    features: 3                   # line 16, column 15"}),
        16,
        15,
        "checks[0].features",
        ["expected a list", "got a number"],
        id="wrong-type-number-for-list",
    ),
    pytest.param(
        edited(
            insert_after={
                15: [
                    "    alert:",
                    "      - when: drift_share > 0.3",
                    "        severity: warning",
                    "      - when: drift_shar > 0.5    # line 19, column 15",
                    "        severity: critical",
                ]
            }
        ),
        19,
        15,
        "checks[0].alert[1].when",
        ["unknown metric 'drift_shar'", "(did you mean 'drift_share'?)", "; a drift check has ", "drifted_count"],
        id="unknown-metric",
    ),
    pytest.param(
        edited(
            insert_after={
                15: [
                    "    alert:",
                    "      - when: drift_share => 0.5  # line 17, column 15",
                ]
            }
        ),
        17,
        15,
        "checks[0].alert[0].when",
        ["cannot read condition 'drift_share => 0.5'", "metric OP number", "> >= < <= == !="],
        id="unreadable-condition",
    ),
    pytest.param(
        edited(replace={2: "owner: fraud-teem                 # line 2, column 8"}),
        2,
        8,
        "owner",
        ["unknown owner 'fraud-teem'", "(did you mean 'fraud-team'?)", "owners in the config: fraud-team, ml-platform"],
        id="unknown-owner",
    ),
    pytest.param(
        edited(replace={5: "  path: ${MONITOR_TEST_LIVE_DIR}/live-*.parquet   # line 5, column 9"}),
        5,
        9,
        "source.path",
        ["environment variable MONITOR_TEST_LIVE_DIR is not set and has no default", "${MONITOR_TEST_LIVE_DIR:-default}"],
        id="unset-variable",
    ),
    pytest.param(
        edited(replace={14: "    every: 15x                    # line 14, column 12"}),
        14,
        12,
        "checks[0].every",
        ["bad duration '15x'", "for example 30s, 15m, 1h, 7d"],
        id="bad-duration",
    ),
    pytest.param(
        edited(
            insert_after={
                15: [
                    "  - name: feature-drift           # line 16, column 11",
                    "    kind: drift",
                    "    every: 1h",
                    "    window: 1d",
                ]
            }
        ),
        16,
        11,
        "checks[1].name",
        ["duplicate check name 'feature-drift'", "also checks[0]"],
        id="duplicate-check-name",
    ),
    pytest.param(
        edited(insert_after={15: "    every: 30m                    # line 16, column 5: the second key"}),
        16,
        5,
        "checks[0].every",
        ["duplicate key 'every'", "first written at line 14"],
        id="duplicate-yaml-key",
    ),
    pytest.param(
        edited(replace={13: "    kind: drfit                   # line 13, column 11"}),
        13,
        11,
        "checks[0].kind",
        ["unknown kind 'drfit'", "(did you mean 'drift'?)", "; expected one of ", "latency"],
        id="unknown-check-kind",
    ),
    pytest.param(
        edited(
            replace={
                12: "  - name: latency",
                13: "    kind: latency                 # line 13, column 11: the source has no latency column",
                14: "    every: 1m",
                15: "    window: 10m",
            }
        ),
        13,
        11,
        "checks[0].kind",
        ["a latency check needs the source's latency column: add source.latency"],
        id="latency-without-latency-column",
    ),
    pytest.param(
        # lines 9-10 (the reference) deleted, so line 13 moves up to line 11
        edited(delete=(9, 10), replace={13: "    kind: drift                   # line 11, column 11: no reference above"}),
        11,
        11,
        "checks[0].kind",
        ["a drift check needs a reference data set: add reference.path"],
        id="drift-without-reference",
    ),
    pytest.param(
        edited(replace={1: "model: fraud scorer               # line 1, column 8: a space"}),
        1,
        8,
        "model",
        ["use only letters, digits, '.', '_' and '-'"],
        id="bad-model-name",
    ),
    pytest.param(
        edited(insert_after={15: "    features: [amount, contri]    # line 16, column 24"}),
        16,
        24,
        "checks[0].features[1]",
        ["'contri' is not a feature of the source", "(did you mean 'country'?)"],
        id="check-feature-not-in-source",
    ),
    pytest.param(
        edited(replace={8: "  features: [amount, contry]      # line 8, column 22"}),
        8,
        22,
        "source.features[1]",
        ["'contry' is not a column of the reference", "data/reference.parquet (did you mean 'country'?)"],
        id="source-feature-not-in-reference",
    ),
]


@pytest.mark.parametrize(("text", "line", "col", "path", "fragments"), CASES)
def test_each_mistake_is_one_line_at_its_place(project, capsys, monkeypatch, text, line, col, path, fragments):
    monkeypatch.delenv("MONITOR_TEST_LIVE_DIR", raising=False)
    write(project / "checks" / "fraud-scorer.yaml", text)
    code, out, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml")
    assert code == 1
    assert "ok:" not in out
    assert len(errors) == 1, errors
    prefix = f"checks/fraud-scorer.yaml:{line}:{col}: {path}: "
    assert errors[0].startswith(prefix), f"{errors[0]!r} does not start with {prefix!r}"
    for fragment in fragments:
        assert fragment in errors[0]


def test_the_spec_example_line_is_printed_exactly(project, capsys):
    write(
        project / "checks" / "fraud-scorer.yaml",
        edited(
            insert_after={
                15: [
                    "    alert:",
                    "      - when: drift_share > 0.3",
                    "      - when: drift_shar > 0.5",  # line 18, column 15
                ]
            }
        ),
    )
    code, _, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml")
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "checks/fraud-scorer.yaml:18:15: checks[0].alert[1].when: unknown metric 'drift_shar' (did you mean 'drift_share'?)"
    )
    # and it lists what a drift check does measure
    assert {"drift_share", "drifted_count", "drift_score", "drifted"} <= set(
        errors[0].split("; a drift check has ")[1].split(", ")
    )


@pytest.mark.parametrize(
    ("text", "line", "col", "fragment"),
    [
        pytest.param(
            edited(
                stop_after=8,
                replace={8: "  features: [amount, country"},
                insert_after={
                    8: [
                        "  prediction: score                # line 8 never closed its '[' (column 13): the parser stops",
                        "                                   # at this ':' (line 9, column 13), the message says so",
                    ]
                },
            ),
            8,
            13,
            "expected ',' or ']'",
            id="unclosed-bracket",
        ),
        pytest.param(
            edited(
                stop_after=5,
                insert_after={5: ("   timestamp: created_at           # one space too many: line 6, column 13 (the ':')")},
            ),
            6,
            13,
            "unexpected ':' (is this line indented too far",
            id="indented-too-far",
        ),
        pytest.param(
            """\
            model: fraud-scorer
            owner: fraud-team
            checks:
              - name: feature-drift
                kind: drift
               every: 15m                      # one space too few: line 6, column 4
            """,
            6,
            4,
            "expected <block end>",
            id="indented-too-little",
        ),
        pytest.param(
            """\
            model: 'fraud-scorer
            owner: fraud-team
            """,
            3,
            1,
            "while scanning a quoted scalar",
            id="unclosed-quote",
        ),
    ],
)
def test_yaml_syntax_errors_give_line_and_column(project, capsys, text, line, col, fragment):
    write(project / "checks" / "fraud-scorer.yaml", dedent(text))
    code, _, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml")
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"checks/fraud-scorer.yaml:{line}:{col}: YAML syntax error: "), errors[0]
    assert fragment in errors[0]


def test_every_problem_of_a_file_is_reported_in_line_order(project, capsys):
    write(
        project / "checks" / "fraud-scorer.yaml",
        edited(
            replace={14: "    every: 15x                    # line 14"},
            insert_after={
                15: [
                    "    methd: psi                    # line 16",
                    "    alert:",
                    "      - when: drift_share > 0.3",
                    "        severity: critcal         # line 19",
                ]
            },
        ),
    )
    code, _, errors = validate(capsys, "--config", "config.yaml", "checks/fraud-scorer.yaml")
    assert code == 1
    assert [e.split(": ", 2)[:2] for e in errors] == [
        ["checks/fraud-scorer.yaml:14:12", "checks[0].every"],
        ["checks/fraud-scorer.yaml:16:5", "checks[0].methd"],
        ["checks/fraud-scorer.yaml:19:19", "checks[0].alert[0].severity"],
    ]
    assert "'critcal' is not allowed (did you mean 'critical'?)" in errors[2]


def test_problems_in_several_files_are_all_reported(project, capsys):
    """Without FILE arguments every file of checks_dir is validated; a good file does not hide a bad one."""
    write(project / "checks" / "fraud-scorer.yaml", VALID_CHECKS)
    write(
        project / "checks" / "churn.yaml",
        dedent("""\
        model: churn
        owner: ml-platfrom                # line 2, column 8
        source:
          kind: files
          path: data/churn-*.csv
          timestamp: ts
          id: id
          features: [tenure]
        checks:
          - name: drift
            kind: drift                   # line 11, column 11: no reference
            every: 1h
            window: 1d
        """),
    )
    write(
        project / "checks" / "search.yml",
        dedent("""\
        model: search
        owner: ml-platform
        source:
          kind: files
          path: data/search-*.csv
          timestamp: ts
          id: id
          features: [query_length]
          latency: latency_ms
        checks:
          - name: latency
            kind: latency
            every: 1m
            window: 5
        """),
    )
    code, _, errors = validate(capsys, "--config", "config.yaml")
    checks_dir = project.resolve() / "checks"
    assert code == 1
    assert len(errors) == 3, errors
    assert errors[0].startswith(
        f"{checks_dir / 'churn.yaml'}:2:8: owner: unknown owner 'ml-platfrom' (did you mean 'ml-platform'?)"
    )
    assert errors[1].startswith(f"{checks_dir / 'churn.yaml'}:11:11: checks[0].kind: a drift check needs a reference")
    assert errors[2].startswith(f"{checks_dir / 'search.yml'}:14:13: checks[0].window: duration 5 has no unit")


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


def test_a_broken_daemon_config_is_reported_at_its_own_place(project, capsys):
    write(project / "checks" / "fraud-scorer.yaml", VALID_CHECKS)
    write(
        project / "config.yaml",
        dedent("""\
        database:
          url: sqlite:///monitor.db
        check_dir: checks                 # line 3, column 1: checks_dir
        owners:
          fraud-team:
            slack: "#fraud-alerts"
        """),
    )
    code, out, errors = validate(capsys, "--config", "config.yaml")
    assert code == 1
    assert "ok:" not in out
    assert len(errors) == 1, errors
    assert errors[0].startswith("config.yaml:3:1: check_dir: unknown key 'check_dir' (did you mean 'checks_dir'?)")
    assert "; allowed: " in errors[0] and "owners" in errors[0].split("; allowed: ")[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            owners:
              fraud-team:
                slack: "#fraud-alerts"
            routes:
              - match: {severity: critical}
                also: [fraud-tem]             # line 6, column 12
            """,
            "config.yaml:6:12: routes[0].also[0]: unknown owner 'fraud-tem' (did you mean 'fraud-team'?)",
            id="route-to-unknown-owner",
        ),
        pytest.param(
            """\
            server:
              listen: localhost               # line 2, column 11: no port
            """,
            "config.yaml:2:11: server.listen: use only host:port, for example 127.0.0.1:8321",
            id="listen-without-port",
        ),
        pytest.param(
            """\
            owners:
              fraud-team:
                slack: "#fraud-alerts"
                mentions: ["@dana"]           # line 4, column 5
            """,
            "config.yaml:4:5: owners.fraud-team.mentions: unknown key 'mentions' (did you mean 'mention'?)",
            id="owner-misspelt-key",
        ),
        pytest.param(
            """\
            owners:
              fraud-team: {}
            routes:
              - match: {sevrity: critical}    # line 4, column 13: a route that could never match
                also: [fraud-team]
            """,
            "config.yaml:4:13: routes[0].match.sevrity: unknown key 'sevrity' (did you mean 'severity'?)",
            id="route-match-misspelt-label",
        ),
        pytest.param(
            """\
            owners:
              fraud-team: {}
            routes:
              - match: {severity: crit}       # line 4, column 23
                also: [fraud-team]
            """,
            "config.yaml:4:23: routes[0].match.severity: 'crit' is not allowed",
            id="route-match-unknown-severity",
        ),
        pytest.param(
            """\
            server:
              listen: ":8321"                 # line 2, column 11: no host
            """,
            "config.yaml:2:11: server.listen: use only host:port",
            id="listen-without-host",
        ),
    ],
)
def test_daemon_config_mistakes(project, capsys, text, expected):
    write(project / "config.yaml", dedent(text))
    code, _, errors = validate(capsys, "--config", "config.yaml")
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors[0]


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
    assert config.owners["fraud-team"].webhook.get_secret_value() == "https://events.pagerduty.example/v2/enqueue"
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
    assert config.owners["fraud-team"].webhook.get_secret_value() == ""


def test_variables_may_come_from_an_explicit_environment(variables_config):
    config = load_config(variables_config, environ={"MONITOR_TEST_ENV": "dev", "MONITOR_TEST_PAGER_URL": "x"})
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


def test_subprocess_exit_1_with_the_problem_on_stderr(tmp_path):
    write(tmp_path / "config.yaml", CONFIG)
    # VALID_CHECKS with `methd: psi` added after line 17 (`window: 1h` of the first check): line 18, column 5
    write(tmp_path / "checks" / "fraud-scorer.yaml", VALID_CHECKS.replace("    window: 1h\n", "    window: 1h\n    methd: psi\n"))
    done = monitor("validate", "--config", "config.yaml", "checks/fraud-scorer.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert re.match(
        r"^checks/fraud-scorer\.yaml:18:5: checks\[0\]\.methd: unknown key 'methd' \(did you mean 'method'\?\)", lines[0]
    ), lines[0]


def test_subprocess_exit_1_on_a_broken_daemon_config(tmp_path):
    write(tmp_path / "config.yaml", "owners:\n  fraud-team: {}\nchecks_directory: checks\n")
    done = monitor("validate", cwd=tmp_path)  # ./config.yaml is found by default
    assert done.returncode == 1
    assert done.stderr.startswith("config.yaml:3:1: checks_directory: unknown key 'checks_directory'")


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


def test_two_rules_with_the_same_condition_are_an_error(project, capsys):
    """A rule is known by its condition: two alike would share one episode (and could not be recorded)."""
    write(
        project / "checks" / "fraud-scorer.yaml",
        SMALL_CHECKS
        + (
            "    alert:\n"
            "      - when: drift_share > 0.3\n"
            "        severity: warning\n"
            "      - when: drift_share>0.30\n"  # line 19, column 15: the same rule, however written
            "        severity: critical\n"
        ),
    )
    code, _, errors = validate(capsys, "--config", "config.yaml")
    assert code == 1
    assert len(errors) == 1
    assert errors[0].endswith(
        "checks/fraud-scorer.yaml:19:15: checks[0].alert[1].when: the same condition as alert[0]: "
        "a rule is known by its id, or by its condition when it has none, so give each rule of a check its own "
        "(e.g. a higher threshold for critical)"
    )


def test_a_metric_the_check_does_not_produce_is_refused(project, capsys):
    """A regression check has no roc_auc: a rule on it could never fire."""
    write(
        project / "checks" / "fraud-scorer.yaml",
        dedent("""\
        model: fraud-scorer
        owner: fraud-team
        source:
          kind: files
          path: data/live-*.parquet
          timestamp: created_at
          id: request_id
          features: [amount, country]
          prediction: score
          label: is_fraud
        checks:
          - name: quality
            kind: performance
            task: regression
            every: 1h
            window: 1d
            alert:
              - when: roc_auc < 0.7           # line 18, column 15
    """),
    )
    code, _, errors = validate(capsys, "--config", "config.yaml")
    assert code == 1
    assert len(errors) == 1
    assert errors[0].endswith(
        "checks/fraud-scorer.yaml:18:15: checks[0].alert[0].when: unknown metric 'roc_auc'; "
        "a performance check has mae, mape, rmse"
    )


def test_an_ingest_source_cannot_rename_the_keys_the_api_fixes(project, capsys):
    """The API's keys are fixed: a renamed one would be accepted and silently ignored, so it is refused."""
    write(
        project / "checks" / "fraud-scorer.yaml",
        dedent("""\
        model: fraud-scorer
        owner: fraud-team
        source:
          kind: ingest
          features: [amount, country]
          latency: response_ms            # line 6, column 12
        checks:
          - name: volume
            kind: volume
            every: 1m
            window: 10m
    """),
    )
    code, _, errors = validate(capsys, "--config", "config.yaml")
    assert code == 1
    assert len(errors) == 1
    assert errors[0].endswith(
        "checks/fraud-scorer.yaml:6:12: source.latency: 'response_ms' is not allowed; expected one of 'latency_ms'"
    ), errors[0]
