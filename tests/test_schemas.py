"""The JSON Schemas of the check files and the config are what the models say (made by ``python -m
monitor.config.schema``), the shipped examples name them and pass them, and a misspelt key fails them;
the package says its license and version once."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import metadata, version
from pathlib import Path

import jsonschema
import pytest
import yaml

import monitor
from monitor.config.schema import schemas, text

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = [(path, "check-file.schema.json") for path in sorted((REPO / "checks").glob("*.yaml"))]
EXAMPLES.append((REPO / "config.example.yaml", "config.schema.json"))


@pytest.mark.parametrize("name", sorted(schemas()))
def test_the_published_schema_is_what_the_models_say(name):
    published = REPO / "schemas" / name
    assert published.read_text() == text(schemas()[name]), f"{name} is stale: run python -m monitor.config.schema"


@pytest.mark.parametrize("path, schema", EXAMPLES, ids=[p.name for p, _ in EXAMPLES])
def test_each_shipped_example_names_its_schema_and_passes_it(path, schema):
    first = path.read_text().splitlines()[0]
    relative = Path(first.removeprefix("# yaml-language-server: $schema="))
    assert (
        first.startswith("# yaml-language-server: $schema=") and (path.parent / relative).resolve() == REPO / "schemas" / schema
    )
    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads((REPO / "schemas" / schema).read_text()))


def test_a_misspelt_key_fails_the_schema_as_it_is_typed():
    model = yaml.safe_load((REPO / "checks" / "fraud-scorer.yaml").read_text())
    model["checks"][0]["evry"] = model["checks"][0].pop("every")
    with pytest.raises(jsonschema.ValidationError, match="evry"):
        jsonschema.validate(model, schemas()["check-file.schema.json"])


def test_the_license_and_the_version_are_said_once():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert (REPO / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "version" not in project and project["dynamic"] == ["version"]  # from monitor/__init__.py
    assert version("monitor") == monitor.__version__
    assert metadata("monitor")["License-Expression"] == "Apache-2.0"
