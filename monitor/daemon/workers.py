"""Evaluations on every core: processes that read each window and compute the check on it.

The scheduler's threads share one core for whatever a check does in Python (reading and typing the
window's rows, the kind's own code): Python runs one thread at a time. With ``processes: N`` in the
daemon config, each scheduled run's window is read and its check computed in one of N worker
processes instead, and the daemon judges and records what it found (``Evaluated``) itself, in its own
process and transaction, as before: episodes, notifications and the database's writes stay in one
place.

Each worker loads the project once (spawned, not forked: the daemon has threads) and keeps its own
sources and prepared references, so a reference is read and prepared once per worker, not per run.
A worker that dies takes its run with it: the pool is made anew and that run is computed in the
daemon's process, so a run is never lost to a dead worker. A kind that waits on something outside
(a probe) is not sent: it computes nothing, and has threads of its own.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.checks.base import CheckSpec
    from monitor.config.models import ModelConfig
    from monitor.daemon.evaluator import Evaluator
    from monitor.daemon.versions import Evaluated

log = logging.getLogger(__name__)

# In a worker: its evaluator and the models of its project (set by _start).
_evaluator: Evaluator | None = None
_models: dict[str, ModelConfig] = {}


def _start(config_path: str | None) -> None:
    """A worker's start: the project as the daemon loaded it, an evaluator with its own engine."""
    global _evaluator
    from monitor.clock import SystemClock
    from monitor.daemon.evaluator import Evaluator
    from monitor.daemon.project import Project
    from monitor.storage.db import create_engine

    project = Project.load(Path(config_path) if config_path else None)
    _models.update(project.checks.models)
    _evaluator = Evaluator(create_engine(project.config.database.url), project.config, SystemClock())


def _ready() -> bool:
    return _evaluator is not None


def _compute(model: str, check: str, start: datetime, end: datetime) -> Evaluated:
    assert _evaluator is not None, "a worker computes only once started"
    spec = _models[model]
    return _evaluator.read_and_compute(spec, spec.check(check), start, end)


class Workers:
    """The pool, made at the daemon's start; ``compute`` is what ``Evaluator.run`` calls instead of
    computing in the daemon's own process."""

    def __init__(self, config_path: Path | None, processes: int, fallback: Evaluator) -> None:
        self.config_path = str(config_path) if config_path else None
        self.processes = processes
        self.fallback = fallback  # the daemon's own evaluator: while the pool starts, and if it breaks
        self._lock = Lock()
        self._pool = self._new_pool()
        # Each worker loads the project (imports, the check files) before its first run; until then,
        # runs are computed here, so the first evaluation does not wait for the workers' start.
        self._warm: list[Future] = [self._pool.submit(_ready) for _ in range(processes)]

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.processes, mp_context=context, initializer=_start, initargs=(self.config_path,))

    def ready(self) -> bool:
        return all(f.done() and not f.exception() for f in self._warm)

    def compute(self, model: ModelConfig, check: CheckSpec, start: datetime, end: datetime) -> Evaluated:
        from monitor.checks import CHECKS

        if CHECKS[check.kind].own_workers or not self.ready():
            return self.fallback.read_and_compute(model, check, start, end)
        with self._lock:
            pool = self._pool
        try:
            return pool.submit(_compute, model.model, check.name, start, end).result()
        except BrokenProcessPool:
            log.error(
                "an evaluation worker died during %s/%s: starting the pool again; this run computed here", model.model, check.name
            )
            with self._lock:
                if self._pool is pool:
                    self._pool = self._new_pool()
                    self._warm = [self._pool.submit(_ready) for _ in range(self.processes)]
            return self.fallback.read_and_compute(model, check, start, end)

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)
