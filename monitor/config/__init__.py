"""What to watch: the daemon config and the check files, loaded once at the edge into typed models.

The loader and the models are imported on first use (PEP 562): they need every check and source kind,
and those import :mod:`monitor.config.types`, so importing them here eagerly would make
``import monitor.checks`` (or ``monitor.sources``) fail with a circular import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from monitor.config.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from monitor.config.loader import CheckFiles, check_file_paths, load_check_files, load_config, load_model_file
    from monitor.config.models import DaemonConfig, ModelConfig

_LAZY = {
    "CheckFiles": "loader",
    "check_file_paths": "loader",
    "load_check_files": "loader",
    "load_config": "loader",
    "load_model_file": "loader",
    "DaemonConfig": "models",
    "ModelConfig": "models",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"monitor.config.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'monitor.config' has no attribute {name!r}")


__all__ = [
    "CheckFiles",
    "ConfigError",
    "ConfigIssue",
    "DaemonConfig",
    "ModelConfig",
    "check_file_paths",
    "load_check_files",
    "load_config",
    "load_model_file",
]
