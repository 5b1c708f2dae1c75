"""Per model and minute: the exact row count, a latency sketch, and a bounded uniform sample.

Rows are bucketed by the minute of their own timestamp. A bucket counts every accepted row exactly,
adds its latency to a :class:`~monitor.ingest.sketch.LatencySketch`, and keeps a reservoir sample of
at most ``capacity`` rows (Vitter's algorithm R: the i-th row replaces a random slot with probability
capacity/i, so every row of the minute is equally likely to be kept). Memory is a few open buckets
per model, whatever the traffic.

A flush thread writes changed buckets to ``ingest_stats`` and ``samples`` twice a second, as absolute
values (upserts), so a failed write is simply written again later. Buckets older than a few minutes
are dropped from memory once written. A bucket not in memory (a late row for a dropped minute, or
any minute after a restart) is first read back from the database, so the counts go on from what
was stored instead of overwriting it.
A crash loses at most the last flush interval of accepted rows (documented in docs/ingest.md).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.clock import Clock
from monitor.ingest.sketch import LatencySketch
from monitor.storage.tables import IngestStat, Sample, table
from monitor.storage.upsert import upsert

log = logging.getLogger(__name__)

KEEP_OPEN_MINUTES = 3


def minute_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // 60) * 60


def as_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class Overloaded(Exception):
    """Too much is waiting to be written: the caller should slow down (HTTP 429)."""


class StorageUnavailable(Exception):
    """The database cannot be read to reopen a bucket (HTTP 503)."""


@dataclass
class Bucket:
    accepted: int = 0
    rejected: int = 0
    labels: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    slots: list[dict[str, Any]] = field(default_factory=list)
    dirty_slots: set[int] = field(default_factory=set)
    dirty: bool = False


class Sampler:
    def __init__(
        self, engine: Engine, clock: Clock, *, capacity: int = 1000, max_dirty_buckets: int = 10_000, seed: int | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.capacity = capacity
        self.max_dirty_buckets = max_dirty_buckets
        self._buckets: dict[tuple[str, int], Bucket] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time: a slower, older one must not land last
        self._random = random.Random(seed)
        self._evictions = 0  # how many buckets have left memory: a read of one begun before may be stale

    # -- writing in ------------------------------------------------------------------------------
    def add(self, model: str, rows: list[dict[str, Any]], rejected: int, received: float) -> None:
        """Count, summarise and sample accepted ``rows`` (``ts`` in epoch seconds); count ``rejected``."""
        by_minute: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_minute.setdefault(minute_of(row["ts"]), []).append(row)
        minutes = set(by_minute) | ({minute_of(received)} if rejected else set())

        def count(buckets: dict[int, Bucket]) -> None:
            for minute, group in by_minute.items():
                self._sample(buckets[minute], group)
            if rejected:
                bucket = buckets[minute_of(received)]
                bucket.rejected += rejected
                bucket.dirty = True

        self._with_buckets(model, minutes, count, refuse_when_behind=True)

    def _sample(self, bucket: Bucket, rows: list[dict[str, Any]]) -> None:
        capacity, slots, dirty, draw = self.capacity, bucket.slots, bucket.dirty_slots, self._random.random
        seen = bucket.accepted
        latencies = []
        for row in rows:
            seen += 1
            latency = row.get("latency_ms")
            if latency is not None:
                latencies.append(latency)
            if len(slots) < capacity:
                slots.append(row)
                dirty.add(len(slots) - 1)
            else:
                slot = int(draw() * seen)
                if slot < capacity:
                    slots[slot] = row
                    dirty.add(slot)
        bucket.accepted = seen
        if latencies:
            bucket.sketch.add_many(np.fromiter(latencies, dtype=float, count=len(latencies)))
        bucket.dirty = True

    def add_labels(self, model: str, labels: list[dict[str, Any]], received: float) -> int:
        """Attach labels to the sampled predictions they belong to; returns how many matched one.

        A label whose prediction was not sampled is counted and dropped: only sampled rows are kept.
        """
        wanted = {label["id"]: label["label"] for label in labels}
        matched: set[str] = set()
        labelled_at = as_datetime(received)
        with self._lock:  # setting a label is idempotent: a retry after a failure below sets it again
            for (bucket_model, _), bucket in self._buckets.items():
                if bucket_model != model:
                    continue
                for index, row in enumerate(bucket.slots):
                    if row["id"] in wanted:
                        row["label"], row["labelled"] = wanted[row["id"]], labelled_at
                        bucket.dirty_slots.add(index)
                        bucket.dirty = True
                        matched.add(row["id"])
        remaining = [i for i in wanted if i not in matched]
        samples = table(Sample)
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(remaining), 500):
                    found = conn.scalars(
                        sa.select(samples.c.row_id).where(
                            samples.c.model == model, samples.c.row_id.in_(remaining[start : start + 500])
                        )
                    ).all()
                    if found:
                        conn.execute(
                            sa.update(samples)
                            .where(samples.c.model == model, samples.c.row_id == sa.bindparam("rid"))
                            .values(label=sa.bindparam("new_label", type_=sa.JSON), labelled=labelled_at),
                            [{"rid": row_id, "new_label": wanted[row_id]} for row_id in set(found)],
                        )
                        matched.update(found)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageUnavailable(str(exc)) from exc

        # Counted only now: a request refused above (503) is sent again, and must be counted once.
        def count(buckets: dict[int, Bucket]) -> None:
            stats = buckets[minute_of(received)]
            stats.labels += len(labels)
            stats.dirty = True

        self._with_buckets(model, {minute_of(received)}, count)
        return len(matched)

    # -- memory -----------------------------------------------------------------------------------
    def _with_buckets(
        self, model: str, minutes: set[int], work: Callable[[dict[int, Bucket]], None], *, refuse_when_behind: bool = False
    ) -> None:
        """Run ``work`` under the lock on the buckets of ``minutes``, each in memory first.

        A bucket not in memory (a minute written and dropped, or one written before a restart) is read
        back from the database, outside the lock so other requests go on meanwhile. Every one is read
        before ``work`` runs: a read that fails (StorageUnavailable) leaves the request uncounted, or
        the client's retry of it would count some of its rows twice. A read during which a bucket left
        memory is discarded and done again: that bucket may have been written since, so what was read
        could be older than what is stored.
        """
        loaded: dict[int, Bucket] = {}
        evictions = -1
        while True:
            with self._lock:
                if refuse_when_behind and self.backlog() >= self.max_dirty_buckets:
                    raise Overloaded()
                if evictions == self._evictions:
                    for minute, bucket in loaded.items():
                        self._buckets.setdefault((model, minute), bucket)
                missing = [minute for minute in minutes if (model, minute) not in self._buckets]
                if not missing:
                    work({minute: self._buckets[(model, minute)] for minute in minutes})
                    return
                evictions = self._evictions
            loaded = {minute: self._reopen(model, minute) for minute in missing}

    def _reopen(self, model: str, minute: int) -> Bucket:
        """A bucket not in memory: its state comes back from the database (empty if never written)."""
        when = as_datetime(minute)
        try:
            with self.engine.connect() as conn:
                stat = (
                    conn.execute(sa.select(table(IngestStat)).where(IngestStat.model == model, IngestStat.minute == when))
                    .mappings()
                    .first()
                )
                if stat is None:
                    return Bucket()
                samples = (
                    conn.execute(
                        sa.select(table(Sample)).where(Sample.model == model, Sample.minute == when).order_by(Sample.slot)
                    )
                    .mappings()
                    .all()
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StorageUnavailable(str(exc)) from exc
        slots = [
            {
                "id": s["row_id"],
                "ts": s["ts"].timestamp(),
                "features": s["features"],
                "prediction": s["prediction"],
                "probability": s["probability"],
                "latency_ms": s["latency_ms"],
                "model_version": s["model_version"],
                "label": s["label"],
                "labelled": s["labelled"],
            }
            for s in samples
        ]
        return Bucket(stat["accepted"], stat["rejected"], stat["labels"], LatencySketch(stat["latency_sketch"]), slots)

    def backlog(self) -> int:
        return sum(1 for b in self._buckets.values() if b.dirty)

    def open_buckets(self) -> int:
        return len(self._buckets)

    def sampled_rows(self) -> int:
        return sum(len(b.slots) for b in self._buckets.values())

    # -- writing out ------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every changed bucket; returns how many. On a database error they stay to be written."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        now = self.clock.now()
        with self._lock:
            pending = []
            for (model, minute), bucket in self._buckets.items():
                if not bucket.dirty:
                    continue
                when = as_datetime(minute)
                stat = {
                    "model": model,
                    "minute": when,
                    "accepted": bucket.accepted,
                    "rejected": bucket.rejected,
                    "labels": bucket.labels,
                    "latency_sketch": dict(bucket.sketch.buckets),
                    "updated": now,
                }
                samples = [_sample_row(model, when, slot, bucket.slots[slot]) for slot in sorted(bucket.dirty_slots)]
                pending.append((bucket, stat, samples, set(bucket.dirty_slots)))
                bucket.dirty, bucket.dirty_slots = False, set()
        if not pending:
            self._evict(now)
            return 0
        try:
            with self.engine.begin() as conn:
                upsert(conn, table(IngestStat), [p[1] for p in pending], ["model", "minute"])
                upsert(conn, table(Sample), [row for p in pending for row in p[2]], ["model", "minute", "slot"])
        except sa.exc.SQLAlchemyError as exc:
            log.error("cannot write ingest buckets (%d waiting): %s", len(pending), exc)
            with self._lock:
                for bucket, _, _, slots in pending:
                    bucket.dirty = True
                    bucket.dirty_slots |= slots
            return 0
        self._evict(now)
        return len(pending)

    def _evict(self, now: datetime) -> None:
        oldest_open = minute_of(now.timestamp()) - 60 * KEEP_OPEN_MINUTES
        with self._lock:
            for key in [k for k, b in self._buckets.items() if k[1] < oldest_open and not b.dirty]:
                del self._buckets[key]
                self._evictions += 1

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Flush until ``stop`` is set, then once more. A failed flush is logged and tried again:
        the thread must outlive any one bad write, or nothing more would be stored."""
        while True:
            self._flush_logged()
            if stop.wait(interval):
                self._flush_logged()
                return

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the data stays in memory, marked to be written
            log.exception("ingest flush failed; will try again")


def _sample_row(model: str, minute: datetime, slot: int, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "minute": minute,
        "slot": slot,
        "row_id": row["id"],
        "ts": as_datetime(row["ts"]),
        "features": row["features"],
        "prediction": row.get("prediction"),
        "probability": row.get("probability"),
        "latency_ms": row.get("latency_ms"),
        "model_version": None if row.get("model_version") is None else str(row["model_version"]),
        "label": row.get("label"),
        "labelled": row.get("labelled"),
    }
