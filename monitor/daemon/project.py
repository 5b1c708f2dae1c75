"""A monitor project as loaded from disk: the daemon config, its directory, and the check files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from monitor.config.loader import CheckFiles, check_file_paths, load_check_files, load_config
from monitor.config.models import DaemonConfig

DEFAULT_CONFIG = "config.yaml"


def default_config_path() -> Path | None:
    """``$MONITOR_CONFIG``, else ``./config.yaml`` when it exists, else none (built-in defaults)."""
    if os.environ.get("MONITOR_CONFIG"):
        return Path(os.environ["MONITOR_CONFIG"])
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else None


@dataclass
class Project:
    config: DaemonConfig
    config_path: Path | None
    base_dir: Path
    checks: CheckFiles

    @property
    def checks_dir(self) -> Path:
        return self.base_dir / self.config.checks_dir

    @classmethod
    def load(cls, config_path: Path | None, files: list[Path] | None = None) -> Project:
        """Raises ConfigError for a bad daemon config; bad check files are kept in ``checks.issues``.

        Without a config file no owners are known, so check files are not checked against them.
        """
        config = load_config(config_path)
        base_dir = config_path.parent.resolve() if config_path else Path.cwd()
        paths = files if files else check_file_paths(base_dir / config.checks_dir)
        owners_from = config if config_path else None
        return cls(config, config_path, base_dir, load_check_files(paths, owners_from, base_dir=base_dir))
