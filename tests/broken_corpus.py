"""The broken-file corpus (tests/broken/, see its README.md): each case a file a model team could write in a
pull request, with the lines ``monitor validate`` must print for it.

A case in ``tests/broken/checks/`` or ``tests/broken/config/`` carries its expectation in its first lines,
``# expect: LINE:COL: PATH: MESSAGE``, one per problem in the order printed, each what ``validate`` prints
after the file's name. A few cases cannot carry a comment, or would not be readable as a file (a NUL
byte, bytes that are not UTF-8, a file over the size limit, 10,000 levels of brackets): GENERATED makes
them here, with their expectations beside them. tests/test_broken_files.py runs them all;
bench/broken_files.py measures them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from conftest import checkout_env
from factories import live_frame, reference_frame

CORPUS = Path(__file__).parent / "broken"
KINDS = ("checks", "config")
EXPECT = "# expect: "
PREFIX = " ..."
"""An expectation ending so matches a message that starts with the text before it (a list of keys that grows)."""
VARIABLES = "MONITOR_BROKEN_"
"""The prefix of the environment variables the corpus uses; they must be unset where it runs."""


@dataclass(frozen=True)
class Case:
    """One broken file: ``kind`` is ``checks`` (a check file) or ``config`` (a daemon config)."""

    kind: str
    name: str
    content: bytes
    expected: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def written_as(self) -> str:
        """Where :func:`place` puts it in a project, as ``validate`` is given it and prints it: a daemon config
        beside the project's own (so that its ``checks_dir`` is the project's, and many fit in one project)."""
        return f"checks/{self.name}.yaml" if self.kind == "checks" else f"config-{self.name}.yaml"


def _lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


# The cases made in code: their bytes, and where and what validate reports (columns count characters).
GENERATED = [
    Case(
        "checks",
        "nul-byte",
        b"model: broken\nowner: fraud\x00team\n",
        ("2:13: a NUL byte (U+0000) cannot appear in a YAML file",),
    ),
    Case(
        "checks",
        "control-character",
        b"model: broken\nowner: fraud-team\x07\n",
        ("2:18: the control character '\\x07' (U+0007) cannot appear in a YAML file",),
    ),
    # line 9: "model: ü-caf" is 12 characters (13 bytes), then a Latin-1 'é'
    Case(
        "checks",
        "not-utf8-on-line-9",
        b"# a comment\n" * 8 + "model: ü-caf".encode() + b"\xe9\n",
        ("9:13: file is not UTF-8 text (byte 0xe9 here): save it as UTF-8",),
    ),
    Case(
        "checks",
        "saved-as-utf16",  # what some Windows editors write: a byte-order mark, then two bytes a character
        "model: fraud-scorer\n".encode("utf-16"),
        ("1:1: file is not UTF-8 text (byte 0xff here): save it as UTF-8",),
    ),
    # the 100th '[' (column 8 + 99) is the 101st level under the top mapping
    Case(
        "checks",
        "10000-deep",
        _lines("model: " + "[" * 10_000 + "]" * 10_000),
        ("1:107: nested more than 100 levels deep: see Limits in docs/configuration.md",),
    ),
    # the 20,001st node is the 19,998th item (after the top mapping, its key and the list): column 9 + 2 * 19,997
    Case(
        "checks",
        "too-many-values",
        _lines("model: [" + "1," * 30_000 + "1]"),
        ("1:40003: more than 20,000 nodes in one file: see Limits in docs/configuration.md",),
    ),
    # under _SLOW_PARSE_LIMIT (128 KiB), so parsed again by PyYAML's pure-Python parser for its message
    Case(
        "checks",
        "tab-after-120-kb",
        _lines(*(f"note_{i}: {'x' * 110}" for i in range(1_000)), "\tmodel: fraud-scorer"),
        ("1001:1: YAML syntax error: a tab cannot indent YAML: use spaces",),
    ),
    Case(
        "checks",
        "too-large",
        _lines("model: broken", "#" * 1024 * 1024),
        ("1:1: file is larger than 1024 KiB: see Limits in docs/configuration.md",),
    ),
    Case(
        "checks",
        "int-of-5000-digits",  # Python refuses to read one (its reading is quadratic): at the value, no traceback
        _lines(
            "model: fraud-scorer",
            "owner: " + "9" * 5000,
            "source: {kind: ingest, features: [amount]}",
            "checks: [{name: volume, kind: volume, every: 1m, window: 10m}]",
        ),
        ("2:8: owner: cannot read this value: a number of more than 4300 digits: quote it if it is text",),
    ),
]


# What a script that writes check files might produce: thousands of mistakes, of which the first 100 are listed.
_DRIFT_CHECK = (
    "model: fraud-scorer",
    "owner: fraud-team",
    "source: {kind: files, path: data/live-*.parquet, timestamp: created_at, id: request_id, features: [amount]}",
    "reference: {path: data/reference.parquet}",
    "checks:",
    "  - name: feature-drift",
    "    kind: drift",
    "    every: 15m",
    "    window: 1h",
)
_MORE = "more problems from here on, not listed: only the first 100 of a file are"
_DRIFT_METRICS = "drift_score, drift_share, drifted, drifted_count, insufficient_features, skipped_features"
GENERATED += [
    Case(
        "checks",
        "thousands-of-unknown-keys",
        _lines(*_DRIFT_CHECK, *(f"    column_{i}: {i}" for i in range(9_000))),
        (*(f"{10 + i}:5: checks[0].column_{i}: unknown key 'column_{i}'; allowed: ..." for i in range(100)), f"110:5: {_MORE}"),
    ),
    Case(
        "checks",
        "thousands-of-rules-on-unknown-metrics",
        _lines(*_DRIFT_CHECK, "    alert:", *(f"      - when: score_{i} > 0.5" for i in range(6_000))),
        (
            *(
                f"{11 + i}:15: checks[0].alert[{i}].when: unknown metric 'score_{i}'; a drift check has {_DRIFT_METRICS}"
                for i in range(100)
            ),
            f"111:15: {_MORE}",
        ),
    ),
]


def expected_in(content: bytes) -> tuple[str, ...]:
    """The ``# expect:`` lines a corpus file starts with."""
    out = []
    for line in content.decode("utf-8").splitlines():
        if not line.startswith(EXPECT):
            break
        out.append(line.removeprefix(EXPECT))
    return tuple(out)


def cases() -> list[Case]:
    """Every case: the files of the corpus, then GENERATED."""
    found = []
    for kind in KINDS:
        for path in sorted((CORPUS / kind).glob("*.yaml")):
            content = path.read_bytes()
            found.append(Case(kind, path.stem, content, expected_in(content)))
    return found + GENERATED


def write_project(root: Path) -> Path:
    """tests/broken/project (its config.yaml and checks/good.yaml) under ``root``, with the data its files
    name: the reference, an hour of live rows ending now, and a reference that is not Parquet. Returns the
    config path."""
    shutil.copytree(CORPUS / "project", root, dirs_exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    reference_frame().to_parquet(root / "data" / "reference.parquet")
    live_frame(500, end=datetime.now(UTC)).to_parquet(root / "data" / "live-0001.parquet")
    (root / "data" / "corrupt.parquet").write_bytes(b"not parquet at all")
    return root / "config.yaml"


def place(case: Case, root: Path) -> None:
    """Put ``case`` into the project at ``root``: a check file beside good.yaml, a daemon config beside config.yaml."""
    (root / case.written_as).write_bytes(case.content)


def matches(printed: list[str], case: Case, shown_as: str, project: Path) -> bool:
    """Whether ``printed`` (stderr lines) are exactly the case's expected lines, for the file shown as ``shown_as``.

    ``{project}`` in an expectation is the project's directory, as the loader resolves it.
    """
    expected = [f"{shown_as}:{e.replace('{project}', str(project.resolve()))}" for e in case.expected]
    if len(printed) != len(expected):
        return False
    return all(
        line.startswith(e.removesuffix(PREFIX)) if e.endswith(PREFIX) else line == e
        for line, e in zip(printed, expected, strict=True)
    )


def validate_in_process(args: list[str]) -> tuple[int, list[str], str]:
    """``monitor validate ARGS`` in this process: the exit code, the stderr lines and stdout."""
    from monitor.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", *args])
    return code, [line for line in err.getvalue().splitlines() if line.strip()], out.getvalue()


def clean_env() -> dict[str, str]:
    """This process's environment for a child that validates the corpus: no $MONITOR_CONFIG and none of its variables."""
    return checkout_env({k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG" and not k.startswith(VARIABLES)})


def validate_args(case: Case) -> list[str]:
    """The arguments of ``monitor validate`` for ``case`` placed in a project, run from the project's directory."""
    return ["--config", "config.yaml", case.written_as] if case.kind == "checks" else ["--config", case.written_as]


# Run in a fresh interpreter by measure(): validate the good project once (what validate imports is not a
# broken file's cost); then, for each case, validate it REPEAT times, timing each run (wall and CPU), once more
# under tracemalloc for its peak (tracemalloc slows Python: that run is not timed), and note how far the
# process's peak resident size has grown since the warm-up.
_MEASURE = """\
import contextlib, io, json, resource, sys, time, tracemalloc
from monitor.cli import main
warm, cases, repeat = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
def validate(args):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["validate", *args])
    return code, err.getvalue()
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert validate(warm)[0] == 0
before = rss()
for args in cases:
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        code, err = validate(args)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    tracemalloc.start()
    validate(args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"code": code, "err": err, "wall": wall, "cpu": cpu, "peak": peak, "grown": rss() - before}))
"""


def measure(measured_cases: list[Case], root: Path, repeat: int = 1) -> subprocess.Popen:
    """Start measuring ``measured_cases`` one after the other in a fresh interpreter, in the project at ``root``
    (made by :func:`write_project`); :func:`measured` reads the results."""
    for case in measured_cases:
        place(case, root)
    warm = ["--config", "config.yaml", "checks/good.yaml"]
    runs = [validate_args(case) for case in measured_cases]
    return subprocess.Popen(
        [sys.executable, "-c", _MEASURE, json.dumps(warm), json.dumps(runs), str(repeat)],
        cwd=root,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def measured(child: subprocess.Popen, timeout: float) -> list[dict]:
    """What :func:`measure` found, a dict per case: ``code`` and ``err`` of validate, ``wall`` and ``cpu`` (seconds
    a run), ``peak`` (tracemalloc's, bytes) and ``grown`` (the peak resident size's growth so far, bytes: the
    growth after a case bounds that case's own)."""
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]
