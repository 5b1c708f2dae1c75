"""Rows read from a file, kept for a moment so that the checks due together read it once.

A model's checks usually run within a second of one another (drift, latency and volume every
minute), each over a window ending at its own start. Each used to read and decode the same file for
itself, which was about half of what a run cost at scale (``docs/performance.md``). A read here covers
its window and ``AHEAD`` more, so a run that starts within that much later is served from memory: the
rows of ``[start, end)`` cut from the kept ones, which are exactly the file's rows in it as long as the
file is unchanged (the key holds its device, inode, size, modification time and status-change time;
the last changes on every write and rename and no tool can set it back, as ``cp -p`` or ``rsync -t``
do the modification time). The frame served is a copy; objects in it (text, a JSON feature's lists)
are shared with the kept one, as pandas' own copies share them.

What is kept is bounded in bytes (``BUDGET``, least recently used first out) and in age (``MAX_AGE``
of wall time): a read older than that serves no run any more (their windows have moved on), so
keeping it would only hold memory.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

AHEAD = timedelta(minutes=1)
BUDGET = 128 * 2**20
MAX_AGE = 300.0  # seconds


@dataclass(frozen=True)
class Kept:
    start: datetime
    end: datetime
    frame: pd.DataFrame
    extra: Any  # what the reader returned beside the rows (a file's column names, say)
    size: int
    at: float


class WindowCache:
    """Reads of ``[start, end + AHEAD)`` by key, each served again for any window inside it."""

    def __init__(self, budget: int = BUDGET, max_age: float = MAX_AGE, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.budget, self.max_age, self._monotonic = budget, max_age, monotonic
        self._kept: OrderedDict[tuple[Hashable, datetime], Kept] = OrderedDict()  # by key and start, oldest use first
        self._starts: dict[Hashable, set[datetime]] = {}  # each key's kept reads, so a read looks at its own only
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def read(
        self,
        key: Hashable,
        start: datetime,
        end: datetime,
        timestamps: Callable[[pd.DataFrame], np.ndarray],
        reader: Callable[[datetime, datetime], tuple[pd.DataFrame, Any]],
    ) -> tuple[pd.DataFrame, Any]:
        """The rows of ``[start, end)`` and the reader's extra: from a kept read of ``key`` that covers the
        window, else from ``reader(start, end + AHEAD)``, kept. ``timestamps`` gives a frame's row times
        (``datetime64[ns]`` in UTC), by which a kept frame is cut; the frame returned is a copy, never the kept one."""
        now = self._monotonic()
        with self._lock:
            found = next(
                (
                    ((key, at), kept)
                    for at in self._starts.get(key, ())
                    if (kept := self._kept[(key, at)]).start <= start and end <= kept.end and now - kept.at <= self.max_age
                ),
                None,
            )
            if found is not None:
                self._kept.move_to_end(found[0])
                self.hits += 1
            else:
                self.misses += 1
        if found is None:
            frame, extra = reader(start, end + AHEAD)
            kept = Kept(start, end + AHEAD, frame, extra, _size(frame), now)
            self._keep(key, kept)
        else:
            kept = found[1]
        import numpy as np
        import pandas as pd

        stamps = timestamps(kept.frame)
        inside = (stamps >= _utc64(start)) & (stamps < _utc64(end))  # NaT is in no window
        rows = kept.frame.take(np.flatnonzero(inside))  # a copy: what a check does to it stays its own
        rows.index = pd.RangeIndex(len(rows))
        return rows, kept.extra

    def _keep(self, key: Hashable, kept: Kept) -> None:
        if kept.size > self.budget:
            return
        with self._lock:
            # A read of the key that this one overlaps is the same window a minute or so on: it is replaced.
            # One it does not overlap (volume's window a week earlier) is another window, kept beside it.
            for at in [
                at for at in self._starts.get(key, ()) if (old := self._kept[(key, at)]).start < kept.end and kept.start < old.end
            ]:
                self._drop((key, at))
            self._kept[(key, kept.start)] = kept
            self._starts.setdefault(key, set()).add(kept.start)
            self._size += kept.size
            for stale in [at for at, old in self._kept.items() if kept.at - old.at > self.max_age]:
                self._drop(stale)
            while self._size > self.budget:
                self._drop(next(iter(self._kept)))

    def _drop(self, at: tuple[Hashable, datetime]) -> None:
        self._size -= self._kept.pop(at).size
        starts = self._starts[at[0]]
        starts.discard(at[1])
        if not starts:
            del self._starts[at[0]]


def _size(frame: pd.DataFrame) -> int:
    """About the bytes ``frame`` holds: its arrays, and for a column of objects (text) the objects too,
    from a sample of them (pandas' deep count visits every one, which cost more than the read saved).
    An estimate: text whose length differs wildly between rows is counted by the sampled ones, and
    objects shared by many rows (pyarrow's) are counted once per row."""
    from pandas.api.types import is_object_dtype

    size = int(frame.memory_usage(index=False).sum())
    for name, dtype in frame.dtypes.items():
        if not is_object_dtype(dtype):
            continue
        column = frame[name]
        sample = column.iloc[:: max(1, len(column) // 64)]
        if len(sample):
            size += int(sum(sys.getsizeof(value) for value in sample) / len(sample) * len(column))
    return size


def _utc64(moment: datetime) -> np.datetime64:
    import numpy as np

    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
    return np.datetime64(naive, "ns")
