"""docs/checks.md cannot drift from the code: every ```yaml example in it is a whole check file that
`monitor validate` (the real command, in-process, with the shipped config.example.yaml) accepts, and every
check kind has its section with an example of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from monitor.checks import CHECKS
from monitor.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "checks.md"
EXAMPLE = re.compile(r"^```yaml\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[int, str]]:
    """Each example and the line of the doc it starts on."""
    text = DOC.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in EXAMPLE.finditer(text)]


@pytest.mark.parametrize(("line", "example"), examples(), ids=[f"line-{line}" for line, _ in examples()])
def test_every_example_is_a_valid_check_file(tmp_path, monkeypatch, capsys, line, example):
    for name in ("FRAUD_DB_URL", "MONITOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / f"example-at-line-{line}.yaml"
    path.write_text(example)
    code = main(["validate", "--config", str(ROOT / "config.example.yaml"), str(path)])
    out = capsys.readouterr()
    assert code == 0, f"docs/checks.md:{line}: the example is not valid:\n{out.out}{out.err}"


def test_every_check_kind_has_a_section_with_an_example():
    text = DOC.read_text()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL))
    assert set(CHECKS) <= set(sections), f"no section for {sorted(set(CHECKS) - set(sections))}"
    for kind, body in sections.items():
        kinds = {c["kind"] for m in EXAMPLE.finditer(body) for c in yaml.safe_load(m.group(1))["checks"]}
        assert kind in kinds, f"the {kind} section has no example of a {kind} check"
