"""Check files read again while the daemon runs: what is kept, what is rescheduled, and when to look.

On SIGHUP, and when the watch sees a check file or the config change, the daemon loads the check
files again, file by file (``Daemon.reload``). A file that loads replaces its model; a file that no
longer loads keeps its last good version running (its owner is told, as at start); a file removed
takes its model away. A check whose model or own keys changed is scheduled anew; the others keep their
schedule. The daemon config is read again too: one that no longer loads keeps the running one; a
changed one applies at once but for the keys that cannot change under a running daemon
(``RESTART_ONLY``: the database, the server, ingest's limits, the worker processes, the heartbeat),
which wait for the next start. A check's ``fingerprint`` (what its runs depend on) tells replicas on
one PostgreSQL which of them loaded an edit first (monitor/storage/leases.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from monitor.checks.base import CheckSpec
from monitor.config.errors import ConfigIssue
from monitor.config.loader import CheckFiles, check_file_paths
from monitor.config.models import DaemonConfig, ModelConfig

WATCH_EVERY_S = 5  # how often the watch looks at the files' sizes and times

RESTART_ONLY = ("database", "server", "ingest", "checks_dir", "evidence_dir", "processes", "heartbeat_url", "heartbeat_every")
"""The daemon config's keys a reload does not apply: what they configure is opened once, at the start."""


def config_changes(running: DaemonConfig, on_disk: DaemonConfig) -> tuple[DaemonConfig, list[str], list[str]]:
    """What a reload does with the daemon config on disk: the config to run from now on (``on_disk``,
    but for the ``RESTART_ONLY`` keys, kept as they run), the keys it applies, and the changed keys
    that wait for the next start."""
    changed = [key for key in type(running).model_fields if getattr(running, key) != getattr(on_disk, key)]
    kept = {key: getattr(running, key) for key in RESTART_ONLY}
    applied = [key for key in changed if key not in kept]
    return on_disk.model_copy(update=kept), applied, [key for key in changed if key in kept]


def merged(old: CheckFiles, fresh: CheckFiles) -> CheckFiles:
    """``fresh``, with the last good version of each model whose file no longer loads (``old``'s); and a
    running model kept by the file that runs it when a new file defines it too (the loader takes the
    first by name: without this, adding a file could take another team's model and its alerts)."""
    out = CheckFiles(dict(fresh.models), dict(fresh.files), list(fresh.issues), list(fresh.warnings))
    for name, path in list(out.files.items()):
        was = old.files.get(name)
        if was is None or Path(was).resolve() == Path(path).resolve():
            continue
        duplicate = [
            i for i in out.issues if Path(i.file).resolve() == Path(was).resolve() and f"model {name!r} is already" in i.message
        ]
        if duplicate:  # the running file still defines it: it keeps it, the newcomer is the duplicate
            out.issues = [i for i in out.issues if i not in duplicate]
            out.issues.append(
                ConfigIssue(str(path), 1, 1, "model", f"model {name!r} is already defined in {was}: one file per model")
            )
            out.models[name], out.files[name] = old.models[name], was
    broken = {Path(issue.file).resolve() for issue in out.issues}
    for name, path in old.files.items():
        if Path(path).resolve() in broken and name not in out.models:
            out.models[name], out.files[name] = old.models[name], path
    return out


Scheduled = dict[str, tuple[ModelConfig, CheckSpec]]


def scheduled(checks: CheckFiles) -> Scheduled:
    """Each check's job id (``model/check``) and what it runs."""
    return {f"{name}/{check.name}": (model, check) for name, model in checks.models.items() for check in model.checks}


@dataclass(frozen=True)
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def __str__(self) -> str:
        parts = [f"{len(ids)} {what} ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})"
                 for what, ids in (("added", self.added), ("changed", self.changed), ("removed", self.removed)) if ids]  # fmt: skip
        return "; ".join(parts) or "no check changed"


def changes(before: Scheduled, after: Scheduled) -> Changes:
    """The jobs to add, to schedule anew (their check, or their model's keys other than its checks,
    changed: another check of the file edited leaves it be) and to remove."""
    return Changes(
        added=sorted(after.keys() - before.keys()),
        changed=sorted(job for job in after.keys() & before.keys() if _runs(*after[job]) != _runs(*before[job])),
        removed=sorted(before.keys() - after.keys()),
    )


def _runs(model: ModelConfig, check: CheckSpec) -> tuple:
    """What a check's run depends on: the check, and its model but for the model's other checks."""
    return model.model_copy(update={"checks": []}), check


def fingerprint(model: ModelConfig, check: CheckSpec) -> str:
    """What a check's run depends on, in 32 hex digits: the same on every replica that loaded the same
    files, so that a check edited under a reload is told from one that is not (its lease)."""
    runs = _runs(model, check)
    text = "\n".join(part.model_dump_json(warnings=False) for part in runs)  # a rule's parsed ``when`` warns
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class FilesWatch:
    """Whether the config or a check file changed since the last look: each file's path, size and
    modification time (a file added or removed changes the set)."""

    def __init__(self, config_path: Path | None, checks_dir: Path) -> None:
        self.config_path, self.checks_dir = config_path, checks_dir
        self._seen = self._signature()

    def _signature(self) -> frozenset[tuple[str, int, int]]:
        paths = [*check_file_paths(self.checks_dir), *([self.config_path] if self.config_path else [])]
        out = set()
        for path in paths:
            try:
                stat = path.stat()
            except OSError:  # removed between the listing and the look: the next look sees it gone
                continue
            out.add((str(path), stat.st_size, stat.st_mtime_ns))
        return frozenset(out)

    def changed(self) -> bool:
        now = self._signature()
        if now == self._seen:
            return False
        self._seen = now
        return True
