"""What to watch: the daemon config and the check files, loaded once at the edge into typed models."""

from monitor.config.errors import ConfigError, ConfigIssue
from monitor.config.loader import CheckFiles, check_file_paths, load_check_files, load_config, load_model_file
from monitor.config.models import DaemonConfig, ModelConfig

__all__ = ["CheckFiles", "ConfigError", "ConfigIssue", "DaemonConfig", "ModelConfig", "check_file_paths",
           "load_check_files", "load_config", "load_model_file"]
