"""Evaluations on every core: processes that read each window and compute the check on it.

The scheduler's threads share one core for whatever a check does in Python (reading and typing the
window's rows, the kind's own code): Python runs one thread at a time. With ``processes: N`` in the
daemon config, each scheduled run's window is read and its check computed in one of N worker
processes instead, and the daemon judges and records what it found (``Evaluated``) itself, in its own
process and transaction, as before: episodes, notifications and the database's writes stay in one
place.

Each worker loads the daemon config once (spawned, not forked: the daemon has threads) and keeps its
own sources, prepared references and file reads; each run is sent with its model and check as the
daemon has them, so a reload of the check files reaches the workers at their next run. A model's runs always go to the same worker (by a hash of
its name), so its reference is prepared in one worker only, not in each, and its checks due together
share one read of its files (``sources/window_cache.py``). A worker that dies takes its run with it:
that worker is started anew and the run is computed in the daemon's process, so a run is never lost
to a dead worker. A kind that waits on something outside
(a probe) is not sent: it computes nothing, and has threads of its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import zlib
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

# In a worker: its evaluator (set by _start).
_evaluator: Evaluator | None = None


def _start(config_path: str | None) -> None:
    """A worker's start: the daemon config as the daemon loaded it, an evaluator with its own engine.
    The model and check of each run are sent with it, so a reload of the check files needs no restart."""
    global _evaluator
    from monitor.clock import SystemClock
    from monitor.config.loader import load_config
    from monitor.daemon.evaluator import Evaluator
    from monitor.storage.db import create_engine

    config = load_config(Path(config_path) if config_path else None)
    _evaluator = Evaluator(create_engine(config.database.url), config, SystemClock())


def _ready() -> bool:
    return _evaluator is not None


def _compute(model: ModelConfig, check: CheckSpec, start: datetime, end: datetime) -> Evaluated:
    assert _evaluator is not None, "a worker computes only once started"
    return _evaluator.read_and_compute(model, check, start, end)


class Workers:
    """The worker processes, started with the daemon; ``compute`` is what ``Evaluator.run`` calls instead
    of computing in the daemon's own process."""

    def __init__(self, config_path: Path | None, processes: int, fallback: Evaluator) -> None:
        self.config_path = str(config_path) if config_path else None
        self.fallback = fallback  # the daemon's own evaluator: while a worker starts, and if one dies
        self._lock = Lock()
        # One single-process pool per worker, so that a model can be sent to its own.
        self._pools = [self._new_pool() for _ in range(processes)]
        # Each worker loads the project (imports, the check files) before its first run; until then,
        # its runs are computed here, so the first evaluation does not wait for the workers' start.
        self._warm: list[Future] = [pool.submit(_ready) for pool in self._pools]
        self._failed: set[int] = set()  # workers whose start failed, once logged

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(1, mp_context=context, initializer=_start, initargs=(self.config_path,))

    def ready(self) -> bool:
        return all(f.done() and not f.exception() for f in self._warm)

    def compute(self, model: ModelConfig, check: CheckSpec, start: datetime, end: datetime) -> Evaluated:
        from monitor.checks import CHECKS

        index = zlib.crc32(model.model.encode()) % len(self._pools)  # stable across runs and restarts
        with self._lock:
            pool, warm = self._pools[index], self._warm[index]
        if CHECKS[check.kind].own_workers or not warm.done() or warm.exception():
            if warm.done() and warm.exception() and index not in self._failed:
                self._failed.add(index)  # said once: its models are computed here from now on
                log.error("evaluation worker %d could not start (%s): its models' runs are computed in the daemon",
                          index, warm.exception())  # fmt: skip
            return self.fallback.read_and_compute(model, check, start, end)
        try:
            return pool.submit(_compute, model, check, start, end).result()
        except BrokenProcessPool:
            log.error(
                "an evaluation worker died during %s/%s: starting it again; this run computed here", model.model, check.name
            )
            with self._lock:
                if self._pools[index] is pool:
                    self._pools[index] = self._new_pool()
                    self._warm[index] = self._pools[index].submit(_ready)
            return self.fallback.read_and_compute(model, check, start, end)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools:
                pool.shutdown(wait=True, cancel_futures=True)
