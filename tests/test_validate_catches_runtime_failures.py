"""``monitor validate`` refuses what would fail at once at run time: a reference that cannot be read,
a database URL whose driver is not installed. Each is one ``file:line:col`` line and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import write_project

from monitor.cli import main


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)


def validate(capsys, config: Path) -> tuple[int, list[str]]:
    code = main(["validate", "--config", str(config)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_reference_that_does_not_exist(tmp_path, capsys):
    config = write_project(tmp_path)
    (tmp_path / "data" / "reference.parquet").unlink()
    code, errors = validate(capsys, config)
    assert code == 1
    [error] = errors
    assert error.startswith(f"{tmp_path / 'checks' / 'fraud-scorer.yaml'}:15:9: reference.path: cannot read reference ")
    assert error.endswith("data/reference.parquet: No such file or directory")


def test_a_reference_that_cannot_be_read(tmp_path, capsys):
    config = write_project(tmp_path)
    (tmp_path / "data" / "reference.parquet").write_bytes(b"not parquet at all")
    code, errors = validate(capsys, config)
    assert code == 1
    [error] = errors
    assert ":15:9: reference.path: cannot read reference " in error


@pytest.mark.parametrize("url", ["postgres://monitor@db/monitor", "postgresql://monitor@db/monitor"])
def test_a_postgres_url_without_the_installed_driver_says_what_to_write(tmp_path, capsys, url):
    config = write_project(tmp_path)
    edit(config, f"url: sqlite:///{tmp_path / 'monitor.db'}", f"url: {url}")
    code, errors = validate(capsys, config)
    assert code == 1
    scheme = url.partition("://")[0]
    assert errors == [
        f"{config}:2:8: database.url: {scheme}:// needs a driver monitor does not install: write postgresql+psycopg://"
    ]


def test_an_sql_source_url_is_checked_the_same_way(tmp_path, capsys):
    config = write_project(tmp_path)
    checks = tmp_path / "checks" / "fraud-scorer.yaml"
    edit(
        checks,
        "  kind: files\n  path: data/live-*.parquet\n",
        "  kind: sql\n  url: postgres://reader@db/fraud\n  table: predictions\n",
    )
    code, errors = validate(capsys, config)
    assert code == 1
    assert errors == [
        f"{checks}:5:8: source.url: postgres:// needs a driver monitor does not install: write postgresql+psycopg://"
    ]


def test_an_ingest_feature_type_may_be_written_text_as_the_docs_and_evidence_name_it(tmp_path):
    from monitor.config.loader import load_model_file

    path = tmp_path / "stream.yaml"
    path.write_text(
        "model: stream\nowner: team\n"
        "source: {kind: ingest, features: [country, amount], feature_types: {country: text, amount: number}}\n"
        "checks: [{name: volume, kind: volume, every: 1m, window: 10m}]\n"
    )
    model = load_model_file(path, base_dir=tmp_path)
    assert model.source.feature_types == {"country": "string", "amount": "number"}


def test_an_unquoted_channel_is_a_comment_and_refused(tmp_path, capsys):
    config = write_project(tmp_path)
    edit(config, "slack: '#fraud-alerts'", "slack: #fraud-alerts")
    code, errors = validate(capsys, config)
    assert code == 1
    [error] = errors
    assert error.startswith(f"{config}:8:11: owners.fraud-team.slack: no channel: a '#' starts a YAML comment")
    assert error.endswith('so quote the channel, e.g. slack: "#risk"')


def test_a_port_out_of_range(tmp_path, capsys):
    config = write_project(tmp_path)
    edit(config, "listen: 127.0.0.1:0", "listen: 127.0.0.1:99999")
    assert validate(capsys, config) == (
        1,
        [f"{config}:4:11: server.listen: port 99999 is out of range: use 0 to 65535 (0: any free port)"],
    )


def test_a_checks_dir_that_does_not_exist(tmp_path, capsys):
    config = write_project(tmp_path)
    edit(config, "checks_dir: checks", "checks_dir: chekcs")
    code, errors = validate(capsys, config)
    assert code == 1
    assert errors == [
        f"{config}:5:13: checks_dir: {tmp_path / 'chekcs'} is not a directory: create it, or point checks_dir at yours"
    ]


def test_a_check_that_would_run_more_than_once_a_second(tmp_path, capsys):
    config = write_project(tmp_path)
    checks = tmp_path / "checks" / "fraud-scorer.yaml"
    edit(checks, "every: 15m", "every: 1ms")
    code, errors = validate(capsys, config)
    assert code == 1
    assert errors == [f"{checks}:19:10: checks[0].every: a check runs at most once a second: write every: 1s or longer"]
