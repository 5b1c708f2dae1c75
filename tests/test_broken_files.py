"""Files that once crashed ``monitor validate`` or kept ``monitor run`` from starting: each is one
``file:line:col`` problem, found within bounded time and memory, and the daemon skips only that file.

BROKEN is the corpus: a small text per case (bytes, for what is no text), where its problem is reported
and a fragment of the message. The limits are docs/configuration.md's "Limits".
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from textwrap import dedent

import pytest
from conftest import checkout_env

from monitor.cli import main
from monitor.config.document import MAX_BYTES, MAX_DEPTH, MAX_NODES
from monitor.config.loader import load_model_file
from monitor.daemon.project import Project

CONFIG = dedent("""\
    database:
      url: sqlite:///monitor.db
    checks_dir: checks
    owners:
      fraud-team:
        slack: "#fraud-alerts"
    """)

GOOD = dedent("""\
    model: good
    owner: fraud-team
    source:
      kind: files
      path: data/live-*.parquet
      timestamp: created_at
      id: request_id
      features: [amount]
      latency: latency_ms
    checks:
      - name: latency
        kind: latency
        every: 1m
        window: 10m
        alert:
          - when: p99_ms > 250
            severity: critical
    """)

# Nine lists of nine aliases of the list before: 9**9 (some 387 million) strings once expanded.
BILLION_LAUGHS = (
    "model: broken\n"
    + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


@dataclass(frozen=True)
class Broken:
    id: str
    content: bytes
    line: int
    col: int
    fragment: str


def _text(text: str) -> bytes:
    return text.encode("utf-8")


BROKEN = [
    Broken("nul-byte", b"model: broken\nowner: fraud\x00team\n", 2, 13, "a NUL byte (U+0000) cannot appear"),
    Broken("control-character", b"model: broken\nowner: fraud-team\x07\n", 2, 18, "the control character '\\x07' (U+0007)"),
    # line 9: "model: ü-caf" is 12 characters (13 bytes), then a Latin-1 'é'
    Broken("not-utf8-on-line-9", b"# a comment\n" * 8 + "model: ü-caf".encode() + b"\xe9\n", 9, 13, "not UTF-8 text (byte 0xe9"),
    Broken(
        "duration-overflows",
        _text(GOOD.replace("every: 1m", "every: 99999999999999w")),
        13,
        12,
        "duration '99999999999999w' is too long",
    ),
    Broken(
        "duration-of-400-digits",
        _text(GOOD.replace("window: 10m", "window: " + "9" * 400 + "s")),
        14,
        13,
        "is too long",
    ),
    Broken(
        "recursive-alias",
        b"model: broken\nowner: fraud-team\nchecks: &c [*c]\n",
        3,
        13,
        "alias *c refers to a value that contains it",
    ),
    Broken(
        "recursive-alias-in-a-mapping",
        b"model: broken\nowner: fraud-team\nsource: &s\n  kind: files\n  path: *s\n",
        5,
        9,
        "alias *s refers to a value that contains it",
    ),
    Broken(
        "merge-of-itself",
        b"model: broken\nowner: fraud-team\nsource: &s\n  <<: *s\n",
        3,
        9,
        "'<<' merges a mapping that contains this one",
    ),
    Broken(
        "merge-of-a-number", b"model: broken\nowner: fraud-team\nsource:\n  <<: 3\n", 4, 3, "'<<' merges a mapping (<<: *name)"
    ),
    # the 100th '[' (column 8 + 99) is the 101st level under the top mapping
    Broken(
        "10000-deep", _text("model: " + "[" * 10_000 + "]" * 10_000 + "\n"), 1, 107, f"nested more than {MAX_DEPTH} levels deep"
    ),
    Broken(
        "deep-through-aliases",  # two lists of 60 levels each, the second holding the first
        _text("model: broken\na: &a " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 60 + "*a" + "]" * 60 + "\n"),
        3,
        64,
        "levels deep once aliases are expanded",
    ),
    # a to e expand to 74,741 nodes (their keys too), f to 597,872 more: the count passes 100,000 at f's first alias (line 7, column 8)
    Broken("billion-laughs", _text(BILLION_LAUGHS), 7, 8, f"the file's aliases expand to more than {MAX_NODES:,} nodes"),
    Broken(
        "billion-laughs-also-as-a-key",  # a key is never expanded (only a plain word may be one); the values are
        _text(BILLION_LAUGHS.replace("model: broken\n", "") + "? *i\n: 1\n"),
        6,
        8,
        "aliases expand to more than",
    ),
    # the 100,001st node is the 99,998th item (after the top mapping, its key and the list): column 9 + 2 * 99,997
    Broken(
        "too-many-values", _text("model: [" + "1," * 150_000 + "1]\n"), 1, 200_003, f"more than {MAX_NODES:,} nodes in one file"
    ),
    Broken("too-large", _text("model: broken\n" + "#" * MAX_BYTES + "\n"), 1, 1, "file is larger than 1024 KiB"),
    Broken("python-tag", b"model: broken\nowner: !!python/name:os.system\n", 2, 8, "cannot read this value: could not determine"),
    Broken("unknown-tag", b"model: !secret broken\n", 1, 8, "could not determine a constructor for the tag '!secret'"),
    Broken("int-of-5000-digits", _text("model: broken\nowner: " + "9" * 5000 + "\n"), 2, 8, "cannot read this value"),
    Broken(
        "unclosed-bracket",  # reported where the '[' opens, not at line 4 where the parser notices
        b"model: broken\nowner: fraud-team\nsource: {kind: files, features: [amount, country\nchecks: []\n",
        3,
        33,
        "this '[' is never closed (reported where it opens; the parser stopped at line 4, column 7",
    ),
    Broken(
        "unclosed-brace",
        b"model: broken\nowner: fraud-team\nsource: {kind: files\nchecks: []\n",
        3,
        9,
        "this '{' is never closed (reported where it opens",
    ),
    Broken("undefined-alias", b"model: broken\nowner: *team\n", 2, 8, "found undefined alias 'team'"),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """config.yaml, checks/good.yaml and an empty data/ under a temporary directory made current."""
    (tmp_path / "checks").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "checks" / "good.yaml").write_text(GOOD)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_a_broken_file_is_one_problem_at_its_place(project, capsys, case):
    (project / "checks" / "broken.yaml").write_bytes(case.content)
    code = main(["validate", "--config", "config.yaml", "checks/broken.yaml"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("checks/broken.yaml:")]
    where = f"checks/broken.yaml:{case.line}:{case.col}: "
    assert any(e.startswith(where) and case.fragment in e for e in errors), errors


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_the_daemon_skips_only_the_broken_file(project, case):
    (project / "checks" / "broken.yaml").write_bytes(case.content)
    loaded = Project.load(project / "config.yaml")
    assert list(loaded.checks.models) == ["good"]
    assert loaded.checks.issues
    assert {issue.file for issue in loaded.checks.issues} == {str(project / "checks" / "broken.yaml")}
    assert any((i.line, i.col) == (case.line, case.col) and case.fragment in i.message for i in loaded.checks.issues)


# Each case in a fresh interpreter, after validating a good file once: the time validate took, how far the
# process's peak resident size grew, and tracemalloc's peak in a second run, as one JSON line.
_MEASURE = """\
import contextlib, io, json, resource, sys, time, tracemalloc
from monitor.cli import main
path, warm = sys.argv[1:]
quiet = io.StringIO()
with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
    assert main(["validate", warm]) == 0  # what validate imports is not the broken file's cost
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with contextlib.redirect_stderr(io.StringIO()) as err:
    start = time.monotonic()
    code = main(["validate", path])
    seconds = time.monotonic() - start
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
tracemalloc.start()  # again, for the memory it takes (tracemalloc slows Python down: not timed)
with contextlib.redirect_stderr(io.StringIO()):
    main(["validate", path])
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"code": code, "seconds": seconds, "grown": grown, "peak": peak, "err": err.getvalue()}))
"""


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_validate_is_bounded_in_time_and_memory(tmp_path, case):
    path = tmp_path / "broken.yaml"
    path.write_bytes(case.content)
    (tmp_path / "good.yaml").write_text(GOOD)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(tmp_path / "good.yaml")],
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 1 and "Traceback" not in result["err"], result["err"]
    print(case.id, f"{result['seconds']:.2f} s", f"{result['grown'] / 2**20:.0f} MiB", f"{result['peak'] / 2**20:.0f} MiB")
    assert result["seconds"] < 2, result
    assert result["peak"] < 200 * 2**20, result
    assert result["grown"] < 200 * 2**20, result


# --- merge keys ---------------------------------------------------------------------------------------

MERGED = dedent("""\
    model: good
    owner: fraud-team
    source:
      kind: files
      path: data/live-*.parquet
      timestamp: created_at
      id: request_id
      features: [amount]
      latency: latency_ms
    checks:
      - &fast
        name: latency
        kind: latency
        every: 1m
        window: 10m
        alert:
          - when: p99_ms > 250
            severity: critical
      - <<: *fast
        name: latency-slow
        window: 1h
    """)


def test_a_merge_key_brings_the_anchored_keys_and_the_own_keys_win(project):
    (project / "checks" / "good.yaml").write_text(MERGED)
    model = load_model_file(project / "checks" / "good.yaml")
    fast, slow = model.checks
    assert (slow.name, slow.kind, slow.every, slow.alert) == ("latency-slow", "latency", fast.every, fast.alert)
    assert (fast.window.total_seconds(), slow.window.total_seconds()) == (600, 3600)


def test_a_list_of_merges_gives_the_first_its_way(project, capsys):
    text = MERGED.replace("  - <<: *fast\n", "  - <<: [{every: 5m, name: other}, *fast]\n")
    (project / "checks" / "good.yaml").write_text(text)
    fast, slow = load_model_file(project / "checks" / "good.yaml").checks
    assert (slow.name, slow.every.total_seconds(), slow.window.total_seconds()) == ("latency-slow", 300, 3600)
    assert main(["validate", "--config", "config.yaml"]) == 0, capsys.readouterr().err


def test_a_mistake_in_merged_keys_is_reported_where_it_is_written(project, capsys):
    (project / "checks" / "good.yaml").write_text(MERGED.replace("window: 1h", "window: 1x"))
    code = main(["validate", "--config", "config.yaml"])
    errors = capsys.readouterr().err.splitlines()
    assert code == 1
    assert any("checks/good.yaml:21:13: checks[1].window: bad duration '1x'" in e for e in errors), errors

    # a merged rule is the anchored one: reported at its line, 17, for both checks
    (project / "checks" / "good.yaml").write_text(MERGED.replace("p99_ms > 250", "p98_ms > 250"))
    code = main(["validate", "--config", "config.yaml"])
    errors = capsys.readouterr().err.splitlines()
    assert code == 1
    assert any("checks/good.yaml:17:15: checks[0].alert[0].when: unknown metric 'p98_ms'" in e for e in errors), errors
    assert any("checks/good.yaml:17:15: checks[1].alert[0].when: unknown metric 'p98_ms'" in e for e in errors), errors
