"""Per model and minute: the exact row count, a latency sketch, and a bounded uniform sample.

Rows are bucketed by the minute of their own timestamp. A bucket counts every accepted row exactly,
adds its latency to a :class:`~monitor.ingest.sketch.LatencySketch`, and keeps a reservoir sample of
at most ``capacity`` rows (Vitter's algorithm R: the i-th row replaces a random slot with probability
capacity/i, so every row of the minute is equally likely to be kept). Memory is a few open buckets
per model, whatever the traffic.

A flush thread writes changed buckets to ``ingest_stats`` and ``samples`` twice a second, as absolute
values (upserts), so a failed write is simply written again later. Each sampler writes its own rows
of a minute (``writer``: the daemon's replica id), so replicas behind one load balancer never
overwrite each other: readers add the counts and sketches up, and merge the reservoirs
(monitor/sources/ingest.py). Buckets older than a few minutes are dropped from memory once written.
A bucket not in memory (a late row for a dropped minute) is first read back from the database, so
the counts go on from what was stored instead of overwriting it.

Memory is bounded in bytes, not only in rows: the sampled rows held are estimated as they enter a
slot (their JSON plus what Python spends on a row and on each feature), and past ``max_held_bytes``
new rows are refused (:class:`Overloaded`, HTTP 429). A flush that fails is reported to
:class:`~monitor.health.Health` (condition ``ingest``) and tried again; while writes fail, once
``max_unwritten_rows`` accepted rows wait unwritten, new rows are refused (:class:`WritesFailing`,
HTTP 503), so what a crash can lose stays bounded: while the database writes, the rows accepted in the
last flush interval; while it does not, about ``max_unwritten_rows`` (documented in docs/ingest.md).
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
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.clock import Clock
from monitor.health import Health, in_one_line
from monitor.ingest.limits import MAX_HELD_BYTES, MAX_UNWRITTEN_ROWS
from monitor.ingest.sketch import LatencySketch
from monitor.storage.tables import IngestStat, Sample, table
from monitor.storage.upsert import upsert

log = logging.getLogger(__name__)

KEEP_OPEN_MINUTES = 3
INGEST = "ingest"  # the condition of Health this module reports
# What a sampled row costs in memory beyond its JSON, measured with tracemalloc on rows as the API
# parses them: about 650 bytes for a row of 8 features (180 bytes of JSON took 836), 450 for one of 2.
ROW_OVERHEAD_BYTES = 300
FEATURE_OVERHEAD_BYTES = 60


def minute_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // 60) * 60


def as_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class Overloaded(Exception):
    """Too much is waiting to be written, or held in memory: the caller should slow down (HTTP 429).
    Nothing of the request was counted."""


class WritesFailing(Exception):
    """The database refuses writes and too much accepted waits unwritten (HTTP 503). Nothing of the
    request was counted: it is to be sent again once the database takes writes."""


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
    written: int = 0  # ``accepted`` as last written to the database
    slot_bytes: list[int] = field(default_factory=list)  # each slot's estimated size in memory (held_size)


def held_size(row: dict[str, Any]) -> int:
    """An estimate of the memory a sampled row takes: its JSON, plus Python's share per row and feature."""
    features = row.get("features")
    try:
        encoded = len(orjson.dumps(row, default=str))
    except orjson.JSONEncodeError:  # nested past orjson's limit: a row stored before rows were limited
        encoded = 64 * 1024  # as large as a row may be by default
    return encoded + ROW_OVERHEAD_BYTES + FEATURE_OVERHEAD_BYTES * (len(features) if isinstance(features, dict) else 0)


class Sampler:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        capacity: int = 1000,
        max_dirty_buckets: int = 10_000,
        max_held_bytes: int = MAX_HELD_BYTES,
        max_unwritten_rows: int = MAX_UNWRITTEN_ROWS,
        health: Health | None = None,
        seed: int | None = None,
        writer: str = "",
    ) -> None:
        self.engine = engine
        self.writer = writer  # whose rows of each minute this sampler writes
        self.clock = clock
        self.capacity = capacity
        self.max_dirty_buckets = max_dirty_buckets
        self.max_held_bytes = max_held_bytes
        self.max_unwritten_rows = max_unwritten_rows
        self.health = health or Health()
        self._buckets: dict[tuple[str, int], Bucket] = {}
        self._held = 0  # estimated bytes of the sampled rows of every bucket in memory
        self._failing: str | None = None  # why the last write failed; None once one succeeds
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
        sizes = bucket.slot_bytes
        seen, grown = bucket.accepted, 0
        latencies = []
        for row in rows:
            seen += 1
            latency = row.get("latency_ms")
            if latency is not None:
                latencies.append(latency)
            if len(slots) < capacity:
                slots.append(row)
                size = held_size(row)
                sizes.append(size)
                grown += size
                dirty.add(len(slots) - 1)
            else:
                slot = int(draw() * seen)
                if slot < capacity:
                    slots[slot] = row
                    size = held_size(row)  # measured only for the rows kept: few, once a minute is busy
                    grown += size - sizes[slot]
                    sizes[slot] = size
                    dirty.add(slot)
        self._held += grown
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
            self._refuse_while_not_writing()
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
                if refuse_when_behind:
                    self._refuse_when_behind()
                if evictions == self._evictions:
                    for minute, bucket in loaded.items():
                        if (model, minute) not in self._buckets:
                            self._buckets[(model, minute)] = bucket
                            self._held += sum(bucket.slot_bytes)
                missing = [minute for minute in minutes if (model, minute) not in self._buckets]
                if not missing:
                    work({minute: self._buckets[(model, minute)] for minute in minutes})
                    return
                evictions = self._evictions
            loaded = {minute: self._reopen(model, minute) for minute in missing}

    def _refuse_while_not_writing(self) -> None:
        """Under the lock: raise WritesFailing while writes fail and too much accepted waits unwritten
        (or too much is held in memory), so a crash cannot lose more than that."""
        if self._failing is None:
            return
        unwritten = self._unwritten_rows()
        if self._past_unwritten_bound(unwritten):
            raise WritesFailing(
                f"the database refuses writes ({self._failing}): {unwritten:,} accepted rows wait in memory to be "
                f"written (ingest.max_unwritten_rows: {self.max_unwritten_rows:,}), so nothing of this request was "
                "taken; send it again once the database takes writes (/healthz says ok)"
            )

    def _refuse_when_behind(self) -> None:
        """Under the lock: raise WritesFailing (503) or Overloaded (429) when no more rows may be taken."""
        self._refuse_while_not_writing()
        if self._held >= self.max_held_bytes:
            raise Overloaded(
                f"the sampled rows held in memory (about {self._held / 2**20:,.1f} MiB) reached ingest.max_memory_bytes "
                f"({self.max_held_bytes / 2**20:,.1f} MiB); nothing of this request was taken, retry shortly"
            )
        if self.backlog() >= self.max_dirty_buckets:
            raise Overloaded("ingest is behind on writing to the database; retry shortly")

    def _unwritten_rows(self) -> int:
        return sum(b.accepted - b.written for b in self._buckets.values())

    def _past_unwritten_bound(self, unwritten: int) -> bool:
        """While writes fail: whether new rows are refused (WritesFailing, 503) with ``unwritten`` rows waiting."""
        return unwritten >= self.max_unwritten_rows or self._held >= self.max_held_bytes

    def _reopen(self, model: str, minute: int) -> Bucket:
        """A bucket not in memory: its state comes back from the database (empty if never written)."""
        when = as_datetime(minute)
        try:
            with self.engine.connect() as conn:
                stat = (
                    conn.execute(
                        sa.select(table(IngestStat)).where(
                            IngestStat.model == model, IngestStat.minute == when, IngestStat.writer == self.writer
                        )
                    )
                    .mappings()
                    .first()
                )
                if stat is None:
                    return Bucket()
                samples = (
                    conn.execute(
                        sa.select(table(Sample))
                        .where(Sample.model == model, Sample.minute == when, Sample.writer == self.writer)
                        .order_by(Sample.slot)
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
        return Bucket(
            stat["accepted"],
            stat["rejected"],
            stat["labels"],
            LatencySketch(stat["latency_sketch"]),
            slots,
            written=stat["accepted"],
            slot_bytes=[held_size(slot) for slot in slots],
        )

    def backlog(self) -> int:
        return sum(1 for b in self._buckets.values() if b.dirty)

    def open_buckets(self) -> int:
        return len(self._buckets)

    def sampled_rows(self) -> int:
        return sum(len(b.slots) for b in self._buckets.values())

    def held_bytes(self) -> int:
        """The estimated memory of the sampled rows held (bounded by ``max_held_bytes``)."""
        return self._held

    def unwritten_rows(self) -> int:
        """Accepted rows whose count is not yet in the database: what a crash now would lose."""
        with self._lock:
            return self._unwritten_rows()

    # -- writing out ------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every changed bucket; returns how many. On a database error they stay to be written."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        now = self.clock.now()
        with self._lock:
            pending: list[tuple[Bucket, dict[str, Any], list[dict[str, Any]], set[int]]] = []
            for (model, minute), bucket in self._buckets.items():
                if not bucket.dirty:
                    continue
                when = as_datetime(minute)
                stat: dict[str, Any] = {
                    "model": model,
                    "minute": when,
                    "writer": self.writer,
                    "accepted": bucket.accepted,
                    "rejected": bucket.rejected,
                    "labels": bucket.labels,
                    "latency_sketch": dict(bucket.sketch.buckets),
                    "updated": now,
                }
                samples = [_sample_row(model, when, self.writer, slot, bucket.slots[slot]) for slot in sorted(bucket.dirty_slots)]
                pending.append((bucket, stat, samples, set(bucket.dirty_slots)))
                bucket.dirty, bucket.dirty_slots = False, set()
        if not pending:
            self._evict(now)
            return 0
        try:
            with self.engine.begin() as conn:
                upsert(conn, table(IngestStat), [p[1] for p in pending], ["model", "minute", "writer"])
                upsert(conn, table(Sample), [row for p in pending for row in p[2]], ["model", "minute", "writer", "slot"])
        except Exception as exc:  # the database's refusal, or anything else: the rows stay, to be written later
            with self._lock:
                for bucket, _, _, slots in pending:
                    bucket.dirty = True
                    bucket.dirty_slots |= slots
                self._failing = in_one_line(exc)
                unwritten = self._unwritten_rows()
                refusing = self._past_unwritten_bound(unwritten)
            self.health.failing(
                INGEST,
                f"cannot write ingest buckets to the database ({self._failing}): {len(pending)} model-minute(s) with "
                f"{unwritten:,} accepted rows are kept in memory and written once it takes writes again"
                + (
                    f"; new rows are refused with 503 (ingest.max_unwritten_rows: {self.max_unwritten_rows:,})"
                    if refusing
                    else ""
                ),
                exc_info=exc,
            )
            return 0
        with self._lock:
            for bucket, stat, _, _ in pending:
                bucket.written = max(bucket.written, stat["accepted"])
            self._failing = None
        self.health.recovered(INGEST)
        self._evict(now)
        return len(pending)

    def _evict(self, now: datetime) -> None:
        oldest_open = minute_of(now.timestamp()) - 60 * KEEP_OPEN_MINUTES
        with self._lock:
            for key in [k for k, b in self._buckets.items() if k[1] < oldest_open and not b.dirty]:
                self._held -= sum(self._buckets.pop(key).slot_bytes)
                self._evictions += 1

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Flush until ``stop`` is set, then once more. A failed flush is logged and tried again:
        the thread must outlive any one bad write, or nothing more would be stored."""
        while True:
            self._flush_logged()
            if stop.wait(interval):
                self._flush_logged()
                unwritten = self.unwritten_rows()
                if unwritten:
                    log.error("stopped with %d accepted rows not written to the database (%s)", unwritten, self._failing)
                return

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - told through Health (once, then once a minute), tried again
            self.health.failing(
                INGEST, f"the flush of ingested rows failed ({type(exc).__name__}: {exc}); it is tried again", exc_info=exc
            )


def _sample_row(model: str, minute: datetime, writer: str, slot: int, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "minute": minute,
        "writer": writer,
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
