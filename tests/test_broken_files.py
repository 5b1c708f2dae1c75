"""The broken-file corpus (tests/broken/, read by tests/broken_corpus.py): for each case ``monitor validate``
exits 1 and prints exactly the ``file:line:col: key: message`` lines the case expects. The daemon skips
every broken check file and evaluates the good one. The real command prints the same lines. The worst
cases stay within docs/configuration.md's Limits, measured in fresh processes.

Also here: merge keys, which are not mistakes. A mistake after one is a corpus case.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from broken_corpus import (
    EXPECT,
    VARIABLES,
    cases,
    clean_env,
    matches,
    measure,
    measured,
    place,
    validate_args,
    validate_in_process,
    write_project,
)

from monitor.config.loader import load_model_file
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon

CASES = cases()
CHECK_FILES = [c for c in CASES if c.kind == "checks"]
BY_ID = {c.id: c for c in CASES}
MiB = 2**20


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The corpus's project, written once: each test works on a copy."""
    root = tmp_path_factory.mktemp("base")
    write_project(root)
    return root


@pytest.fixture
def project(base, tmp_path, monkeypatch) -> Path:
    """A copy of the project, made the current directory, with none of the corpus's variables set."""
    root = tmp_path / "project"
    shutil.copytree(base, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    for name in [n for n in os.environ if n.startswith(VARIABLES)]:
        monkeypatch.delenv(name)
    return root


def shown(lines: list[str], prefix: str, project: Path) -> str:
    """Printed lines as the ``# expect:`` lines a case would carry, to compare with or copy in."""
    return "\n".join(EXPECT + line.removeprefix(prefix).replace(str(project.resolve()), "{project}") for line in lines)


def test_the_corpus_has_at_least_90_distinct_cases():
    assert len(CASES) >= 90, len(CASES)
    assert len(BY_ID) == len(CASES)
    assert len({c.content for c in CASES}) == len(CASES), "two cases are the same file"
    assert all(c.expected for c in CASES), [c.id for c in CASES if not c.expected]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_prints_exactly_the_expected_lines(project, case):
    place(case, project)
    code, errors, out = validate_in_process(validate_args(case))
    assert (code, out) == (1, ""), errors
    assert matches(errors, case, case.written_as, project), (
        f"printed:\n{shown(errors, case.written_as + ':', project)}\nexpected:\n" + "\n".join(EXPECT + e for e in case.expected)
    )


def test_the_daemon_skips_every_broken_file_and_evaluates_the_good_one(project):
    for case in CHECK_FILES:
        place(case, project)
    loaded = Project.load(project / "config.yaml")
    assert list(loaded.checks.models) == ["good"]
    checks_dir = project.resolve() / "checks"
    issues = defaultdict(list)
    for issue in loaded.checks.issues:
        issues[issue.file].append(str(issue))
    for case in CHECK_FILES:
        file = str(checks_dir / f"{case.name}.yaml")
        assert matches(issues.pop(file), case, file, project), case.id
    assert not issues, "problems in files that are not cases"

    daemon = Daemon(loaded, console=io.StringIO())
    try:
        daemon.prepare()  # logs each skipped file; migrates the database
        good = loaded.checks.models["good"]
        result = daemon.evaluate(good, good.check("latency"))
    finally:
        daemon.engine.dispose()
    assert result is not None and result.outcome == "ok", result
    assert result.evaluation.sample_size == 500  # every live row of the hour


CONFIG_SAMPLE = ["config/check-dir-misspelt", "config/slack-channel-unquoted", "config/tab-in-config"]


def test_the_real_command_prints_the_same_lines(base, tmp_path):
    """``python -m monitor validate`` of a checks directory holding every broken check file (and the good
    one), and of a few broken daemon configs, each found as ./config.yaml by default; all run at once."""
    projects = {name: tmp_path / name.replace("/", "-") for name in ["checks", *CONFIG_SAMPLE]}
    for root in projects.values():
        shutil.copytree(base, root)
    for case in CHECK_FILES:
        place(case, projects["checks"])
    for case_id in CONFIG_SAMPLE:  # where the command looks when not given --config
        (projects[case_id] / "config.yaml").write_bytes(BY_ID[case_id].content)
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "monitor", "validate", *(["--config", "config.yaml"] if name == "checks" else [])],
            cwd=root,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, root in projects.items()
    }
    done = {name: (*run.communicate(timeout=120), run.returncode) for name, run in runs.items()}

    out, err, code = done["checks"]
    assert (code, out) == (1, ""), err
    lines = err.splitlines()
    for file in sorted(projects["checks"].resolve() / "checks" / f"{case.name}.yaml" for case in CHECK_FILES):
        case = BY_ID[f"checks/{file.stem}"]
        printed, lines = lines[: len(case.expected)], lines[len(case.expected) :]
        assert matches(printed, case, str(file), projects["checks"]), f"{case.id}:\n" + "\n".join(printed)
    assert lines == [], "more lines than the cases expect"

    for case_id in CONFIG_SAMPLE:
        out, err, code = done[case_id]
        assert (code, out) == (1, ""), err
        assert matches(err.splitlines(), BY_ID[case_id], "config.yaml", projects[case_id]), err


# The cases that cost most, in time or memory (see bench/broken_files.py and docs/performance.md).
WORST = [
    "checks/billion-laughs",
    "checks/deep-through-aliases",
    "checks/10000-deep",
    "checks/too-many-values",
    "checks/too-large",
    "checks/tab-after-120-kb",
    "checks/thousands-of-unknown-keys",
    "checks/thousands-of-rules-on-unknown-metrics",
]


def test_the_worst_cases_take_under_2_s_and_200_mb(base, tmp_path):
    """All in one fresh interpreter, one after the other. Time is the CPU time of each validate call, which other
    processes on the machine do not lengthen (wall time is in bench/broken_files.py). Memory is tracemalloc's
    peak in each call, and how far the process's peak resident size grew over all of them, which bounds what
    each one grew it by."""
    worst = [BY_ID[case_id] for case_id in WORST]
    shutil.copytree(base, tmp_path / "project")
    results = measured(measure(worst, tmp_path / "project"), timeout=120)
    assert len(results) == len(worst)
    for case, result in zip(worst, results, strict=True):
        assert result["code"] == 1 and "Traceback" not in result["err"], result["err"]
        print(case.id, f"{result['cpu'][0]:.2f} s CPU, {result['peak'] / MiB:.0f} MiB traced")
        assert result["cpu"][0] < 2, (case.id, result)
        assert result["peak"] < 200 * MiB, (case.id, result)
    assert results[-1]["grown"] < 200 * MiB, results[-1]


# --- merge keys ---------------------------------------------------------------------------------------

MERGED = """\
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
"""


def test_a_merge_key_brings_the_anchored_keys_and_the_own_keys_win(project):
    (project / "checks" / "good.yaml").write_text(MERGED)
    model = load_model_file(project / "checks" / "good.yaml")
    fast, slow = model.checks
    assert (slow.name, slow.kind, slow.every, slow.alert) == ("latency-slow", "latency", fast.every, fast.alert)
    assert (fast.window.total_seconds(), slow.window.total_seconds()) == (600, 3600)


def test_a_list_of_merges_gives_the_first_its_way(project):
    text = MERGED.replace("  - <<: *fast\n", "  - <<: [{every: 5m, name: other}, *fast]\n")
    (project / "checks" / "good.yaml").write_text(text)
    fast, slow = load_model_file(project / "checks" / "good.yaml").checks
    assert (slow.name, slow.every.total_seconds(), slow.window.total_seconds()) == ("latency-slow", 300, 3600)
    code, errors, _ = validate_in_process(["--config", "config.yaml"])
    assert (code, errors) == (0, [])
