"""JSON Schemas of the check files and the daemon config, made from the models that validate them.

An editor that reads them (VS Code's YAML extension, through the ``# yaml-language-server: $schema=``
line of the shipped examples) completes keys and flags a wrong one as it is typed; ``monitor validate``
stays the judge (it also checks what a schema cannot: owners, references, rules). The files under
``schemas/`` are made by ``python -m monitor.config.schema``; tests/test_schemas.py keeps them equal to
what the models say.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from monitor.config.models import DaemonConfig, ModelConfig

FILES: dict[str, tuple[type[BaseModel], str]] = {
    "check-file.schema.json": (ModelConfig, "a monitor check file (checks/*.yaml)"),
    "config.schema.json": (DaemonConfig, "the monitor daemon config (config.yaml)"),
}


def schemas() -> dict[str, dict[str, Any]]:
    """Each file's name and its schema."""
    out = {}
    for name, (model, title) in FILES.items():
        schema = model.model_json_schema()
        out[name] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
    return out


def text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["schemas"])[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (folder / name).write_text(text(schema))
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
