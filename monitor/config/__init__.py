"""What to watch: the daemon config and the check files, loaded once at the edge into typed models.

:mod:`.loader` reads files into the models of :mod:`.models` or into :class:`ConfigError`, whose
issues read ``file:line:col: key: message``. The building blocks every plug-in's spec uses are in
:mod:`.types`.
"""

from monitor.config.errors import ConfigError, ConfigIssue

__all__ = ["ConfigError", "ConfigIssue"]
