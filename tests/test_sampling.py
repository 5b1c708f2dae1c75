"""Per-minute counting and sampling of ingested rows: the reservoir (monitor.ingest.sampler.Sampler)
on its own, and the acceptance test through the real API:

    After 500,000 rows through the API, the stored sample is within its bound, the volume metric
    equals the rows accepted exactly, and p99 latency from the aggregate is within 1% of the exact
    p99 of what was sent.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import orjson
import pytest
import sqlalchemy as sa
import yaml

from monitor.clock import FixedClock
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.health import Health
from monitor.ingest.rows import validate_predictions
from monitor.ingest.sampler import Overloaded, Sampler, StorageUnavailable, WritesFailing, held_size, minute_of
from monitor.ingest.sketch import LatencySketch
from monitor.sources import SourceContext
from monitor.sources.base import ID, LABEL, PROBABILITY, TS
from monitor.sources.ingest import IngestSource, IngestSpec
from monitor.storage.tables import IngestStat, Sample

T0 = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
MINUTE = T0.replace(second=0)


def rows(n: int, minute: datetime, *, start: int = 0, prefix: str = "r") -> list[dict]:
    """``n`` validated rows (as the API hands them to the sampler) spread over ``minute``."""
    base = minute.timestamp()
    return [
        {"id": f"{prefix}{i}", "ts": base + (i % 60), "features": {"u": i}, "prediction": 0.5, "latency_ms": float(1 + i % 100)}
        for i in range(start, start + n)
    ]


def stats(engine, minute: datetime, model: str = "m"):
    with engine.connect() as conn:
        stat = (
            conn.execute(sa.select(IngestStat.__table__).where(IngestStat.model == model, IngestStat.minute == minute))
            .mappings()
            .first()
        )
        kept = conn.scalars(sa.select(Sample.row_id).where(Sample.model == model, Sample.minute == minute)).all()
    return stat, kept


def rename(engine, old: str, new: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))


# -- the reservoir ------------------------------------------------------------------------------------


def test_the_reservoir_keeps_at_most_its_capacity_and_counts_every_row_exactly(engine):
    sampler = Sampler(engine, FixedClock(T0), capacity=50, seed=3)
    for start in range(0, 1000, 100):
        sampler.add("m", rows(100, MINUTE, start=start), rejected=3, received=T0.timestamp())
        assert sampler.sampled_rows() == min(50, start + 100)
    assert sampler.open_buckets() == 1
    assert sampler.flush() == 1
    stat, kept = stats(engine, MINUTE)
    assert (stat["accepted"], stat["rejected"]) == (1000, 30)
    assert LatencySketch(stat["latency_sketch"]).count == 1000
    assert len(kept) == len(set(kept)) == 50
    assert set(kept) <= {f"r{i}" for i in range(1000)}


def test_every_row_of_a_minute_is_equally_likely_to_be_kept(sqlite_engine):
    """Algorithm R across calls of any size: over 2,000 minutes of 100 rows with a capacity of 10,
    each row position is kept about 200 times (binomial, sd 13.4); a reservoir that favoured the
    first or the last rows, or forgot its count between calls, would be far off."""
    sampler = Sampler(sqlite_engine, FixedClock(T0), capacity=10, seed=11)
    kept = Counter()
    for trial in range(2000):
        model = f"m{trial}"  # a bucket of its own, in memory only
        for start, size in ((0, 7), (7, 33), (40, 1), (41, 59)):
            sampler.add(model, rows(size, MINUTE, start=start), rejected=0, received=T0.timestamp())
        bucket = sampler._buckets[(model, int(MINUTE.timestamp()))]
        assert bucket.accepted == 100 and len(bucket.slots) == 10
        kept.update(int(row["id"][1:]) for row in bucket.slots)
    counts = np.array([kept[i] for i in range(100)])
    assert counts.sum() == 20_000
    assert np.all(np.abs(counts - 200) < 6 * 13.4), counts
    chi2 = ((counts - 200) ** 2 / 200).sum()
    assert chi2 < 160  # 99 degrees of freedom: p < 1e-4 above this


def test_a_late_row_for_a_written_and_evicted_minute_reopens_it_and_counts_go_on(engine):
    clock = FixedClock(T0)
    sampler = Sampler(engine, clock, capacity=50, seed=5)
    old = MINUTE - timedelta(minutes=10)
    sampler.add("m", rows(300, old), rejected=0, received=T0.timestamp())
    sampler.flush()
    assert sampler.open_buckets() == 0  # written, then dropped from memory

    sampler.add("m", rows(200, old, start=300), rejected=0, received=T0.timestamp())
    assert sampler.open_buckets() == 1
    assert sampler.sampled_rows() == 50  # the stored sample came back, not an empty one
    sampler.flush()
    stat, kept = stats(engine, old)
    assert stat["accepted"] == 500
    assert LatencySketch(stat["latency_sketch"]).count == 500
    assert len(kept) == len(set(kept)) == 50
    late = sum(int(row_id[1:]) >= 300 for row_id in kept)
    assert 0 < late < 50  # about 200/500 of the slots: the count went on from 300, not from 0


def test_a_restarted_sampler_goes_on_from_what_was_written_for_the_current_and_previous_minute(engine):
    """The counts are written as absolute values: a new Sampler (the daemon restarted) that began its
    recent minutes empty would overwrite what the old one had written for them."""
    before = Sampler(engine, FixedClock(T0), capacity=50, seed=5)
    previous = MINUTE - timedelta(minutes=1)
    before.add("m", rows(500, previous), rejected=0, received=T0.timestamp())  # a full reservoir
    before.add("m", rows(20, MINUTE), rejected=2, received=T0.timestamp())  # a partly filled one
    assert before.flush() == 2
    kept_before = {minute: set(stats(engine, minute)[1]) for minute in (previous, MINUTE)}

    after = Sampler(engine, FixedClock(T0), capacity=50, seed=6)  # the restart
    after.add("m", rows(10, previous, start=500), rejected=0, received=T0.timestamp())
    after.add("m", rows(10, MINUTE, start=20), rejected=1, received=T0.timestamp())
    assert after.sampled_rows() == 50 + 30  # the stored samples came back, not empty ones
    assert after.flush() == 2

    stat, kept = stats(engine, previous)
    assert stat["accepted"] == 510 and LatencySketch(stat["latency_sketch"]).count == 510
    assert len(kept) == len(set(kept)) == 50
    assert len(set(kept) & kept_before[previous]) >= 40  # 10 new rows replace at most 10 slots
    stat, kept = stats(engine, MINUTE)
    assert (stat["accepted"], stat["rejected"]) == (30, 3)
    assert LatencySketch(stat["latency_sketch"]).count == 30
    assert set(kept) == kept_before[MINUTE] | {f"r{i}" for i in range(20, 30)}  # extended, not clobbered


def test_reopening_a_minute_does_not_hold_up_other_rows_and_is_never_stale(engine):
    """The database read of a reopen happens outside the sampler's lock, so rows for open minutes go
    on meanwhile; and if the minute was written and dropped from memory while it was read, what was
    read is stale and is read again rather than overwriting the newer counts."""
    sampler = Sampler(engine, FixedClock(T0), capacity=50, seed=9)
    old = MINUTE - timedelta(minutes=10)
    sampler.add("m", rows(100, old), rejected=0, received=T0.timestamp())
    sampler.add("m", rows(5, MINUTE), rejected=0, received=T0.timestamp())
    sampler.flush()
    assert sampler.open_buckets() == 1  # the old minute was written and left memory
    reading, release = threading.Event(), threading.Event()

    def hold_the_first_read(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == "slow-reopen" and "FROM samples" in statement and not reading.is_set():
            reading.set()  # its ingest_stats row has been read
            assert release.wait(10)

    sa.event.listen(engine, "before_cursor_execute", hold_the_first_read)
    try:
        slow = threading.Thread(
            target=sampler.add,
            name="slow-reopen",
            args=("m", rows(50, old, start=100, prefix="slow")),
            kwargs={"rejected": 0, "received": T0.timestamp()},
        )
        slow.start()
        assert reading.wait(10)
        sampler.add("m", rows(5, MINUTE, start=5), rejected=0, received=T0.timestamp())  # not blocked
        sampler.add("m", rows(20, old, start=200), rejected=0, received=T0.timestamp())
        sampler.flush()  # written and dropped again: the slow read is now stale
        assert stats(engine, old)[0]["accepted"] == 120
        release.set()
        slow.join(10)
        assert not slow.is_alive()
    finally:
        release.set()
        sa.event.remove(engine, "before_cursor_execute", hold_the_first_read)
    sampler.flush()
    assert stats(engine, old)[0]["accepted"] == 170
    assert stats(engine, MINUTE)[0]["accepted"] == 10


def test_labels_the_database_cannot_take_are_not_counted_so_the_retry_counts_them_once(engine):
    sampler = Sampler(engine, FixedClock(T0), capacity=50)
    old = MINUTE - timedelta(minutes=10)
    sampler.add("m", rows(5, old), rejected=0, received=T0.timestamp())
    sampler.flush()  # written and dropped: its labels go to the database
    labels = [{"id": "r0", "label": 1}, {"id": "r1", "label": 0}]
    rename(engine, "samples", "samples_away")
    try:
        with pytest.raises(StorageUnavailable):
            sampler.add_labels("m", labels, received=T0.timestamp())
    finally:
        rename(engine, "samples_away", "samples")
    sampler.flush()
    assert stats(engine, MINUTE)[0] is None or stats(engine, MINUTE)[0]["labels"] == 0
    assert sampler.add_labels("m", labels, received=T0.timestamp()) == 2  # the retry
    sampler.flush()
    assert stats(engine, MINUTE)[0]["labels"] == 2
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(Sample.row_id, Sample.label).where(Sample.label.is_not(None))).all()) == {
            "r0": 1,
            "r1": 0,
        }


def test_a_probability_is_written_kept_when_its_minute_is_reopened_and_read_back(engine):
    sampler = Sampler(engine, FixedClock(T0), capacity=50)
    old = MINUTE - timedelta(minutes=10)
    scored = [row | {"probability": i / 10} for i, row in enumerate(rows(5, old))]
    sampler.add("m", scored, rejected=0, received=T0.timestamp())
    sampler.flush()  # written, and out of memory
    assert sampler.open_buckets() == 0
    sampler.add("m", rows(1, old, start=5), rejected=0, received=T0.timestamp())  # read back from the database
    sampler.add_labels("m", [{"id": "r1", "label": 1}], received=T0.timestamp())  # its slot is written again
    sampler.flush()

    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(Sample.row_id, Sample.probability).where(Sample.model == "m")).all())
    assert stored == {"r0": 0.0, "r1": 0.1, "r2": 0.2, "r3": 0.3, "r4": 0.4, "r5": None}
    spec = IngestSpec(kind="ingest", features=["u"])
    frame = IngestSource(spec, SourceContext("m", engine)).read(old, old + timedelta(minutes=1))
    read = dict(zip(frame[ID], frame[PROBABILITY], strict=True))
    assert {k: v for k, v in read.items() if k != "r5"} == {"r0": 0.0, "r1": 0.1, "r2": 0.2, "r3": 0.3, "r4": 0.4}
    assert np.isnan(read["r5"])
    assert dict(zip(frame[ID], frame[LABEL], strict=True))["r1"] == 1


def test_a_failed_write_keeps_everything_and_writes_it_later(engine, caplog):
    clock = FixedClock(T0)
    sampler = Sampler(engine, clock, capacity=50, seed=7)
    sampler.add("m", rows(100, MINUTE), rejected=1, received=T0.timestamp())
    assert sampler.flush() == 1

    rename(engine, "ingest_stats", "ingest_stats_away")  # the database refuses the next writes
    try:
        sampler.add("m", rows(50, MINUTE, start=100), rejected=2, received=T0.timestamp())
        with caplog.at_level(logging.ERROR, logger="monitor.ingest.sampler"):
            assert sampler.flush() == 0
        assert "cannot write ingest buckets" in caplog.text
        clock.advance(timedelta(minutes=10))  # old enough to leave memory, but not before it is written
        assert sampler.flush() == 0
        assert sampler.open_buckets() == 1 and sampler.backlog() == 1
        sampler.add("m", rows(25, MINUTE, start=150), rejected=0, received=T0.timestamp())
    finally:
        rename(engine, "ingest_stats_away", "ingest_stats")

    assert sampler.flush() == 1
    stat, kept = stats(engine, MINUTE)
    assert (stat["accepted"], stat["rejected"]) == (175, 3)
    assert LatencySketch(stat["latency_sketch"]).count == 175
    assert len(kept) == 50
    assert sampler.open_buckets() == 0  # written, so now it may go


def test_a_request_whose_minute_cannot_be_reopened_counts_none_of_its_rows(engine):
    """503 means "send it again": had the request's other minutes been counted, the retry would
    count them twice."""
    sampler = Sampler(engine, FixedClock(T0), capacity=50)
    batch = rows(5, MINUTE) + rows(5, MINUTE - timedelta(minutes=10), prefix="late")
    rename(engine, "ingest_stats", "ingest_stats_away")
    try:
        with pytest.raises(StorageUnavailable):
            sampler.add("m", batch, rejected=0, received=T0.timestamp())
    finally:
        rename(engine, "ingest_stats_away", "ingest_stats")
    assert sampler.sampled_rows() == 0 and sampler.backlog() == 0
    sampler.add("m", batch, rejected=0, received=T0.timestamp())  # the retry
    sampler.flush()
    assert stats(engine, MINUTE)[0]["accepted"] == 5
    assert stats(engine, MINUTE - timedelta(minutes=10))[0]["accepted"] == 5


def test_two_flushes_at_once_never_leave_the_older_state_in_the_database(engine):
    """The daemon's flush thread and another caller of ``flush`` (shutdown, a test): the one that
    read the buckets first must not write last."""
    sampler = Sampler(engine, FixedClock(T0), capacity=50)
    sampler.add("m", rows(100, MINUTE), rejected=0, received=T0.timestamp())
    first_has_read = threading.Event()

    def slow_first_write(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == "slow-flush" and "ingest_stats" in statement:
            first_has_read.set()
            time.sleep(0.5)

    sa.event.listen(engine, "before_cursor_execute", slow_first_write)
    try:
        slow = threading.Thread(target=sampler.flush, name="slow-flush")
        slow.start()
        assert first_has_read.wait(10)
        sampler.add("m", rows(100, MINUTE, start=100), rejected=0, received=T0.timestamp())
        sampler.flush()
        slow.join(10)
    finally:
        sa.event.remove(engine, "before_cursor_execute", slow_first_write)
    sampler.flush()
    assert stats(engine, MINUTE)[0]["accepted"] == 200


def test_too_many_buckets_waiting_to_be_written_refuses_rows_without_counting_them(sqlite_engine):
    sampler = Sampler(sqlite_engine, FixedClock(T0), capacity=10, max_dirty_buckets=2)
    sampler.add("a", rows(5, MINUTE), rejected=0, received=T0.timestamp())
    sampler.add("b", rows(5, MINUTE), rejected=0, received=T0.timestamp())
    with pytest.raises(Overloaded):
        sampler.add("c", rows(5, MINUTE), rejected=0, received=T0.timestamp())
    assert sampler.open_buckets() == 2 and sampler.sampled_rows() == 10
    sampler.flush()
    sampler.add("c", rows(5, MINUTE), rejected=0, received=T0.timestamp())
    sampler.flush()
    assert stats(sqlite_engine, MINUTE, "c")[0]["accepted"] == 5


# -- memory in bytes, and writes that fail ------------------------------------------------------------


def test_the_bytes_held_follow_the_rows_kept_and_leave_with_their_bucket(sqlite_engine):
    clock = FixedClock(T0)
    sampler = Sampler(sqlite_engine, clock, capacity=10, seed=2)

    def kept() -> int:
        return sum(held_size(row) for bucket in sampler._buckets.values() for row in bucket.slots)

    sampler.add("m", rows(5, MINUTE), rejected=0, received=T0.timestamp())
    assert sampler.held_bytes() == kept() > 0
    wide = [row | {"features": {"u": row["features"]["u"], "note": "x" * 900}} for row in rows(200, MINUTE, start=5)]
    sampler.add("m", wide, rejected=0, received=T0.timestamp())  # most slots replaced, by larger rows
    assert sampler.sampled_rows() == 10
    assert sampler.held_bytes() == kept() > 10 * 900
    sampler.add("m", rows(5, MINUTE - timedelta(minutes=10)), rejected=0, received=T0.timestamp())
    assert sampler.held_bytes() == kept()

    sampler.flush()  # the old minute is written and leaves memory, and its bytes with it
    assert sampler.open_buckets() == 1 and sampler.held_bytes() == kept()
    clock.advance(timedelta(minutes=10))
    sampler.flush()
    assert sampler.open_buckets() == 0 and sampler.held_bytes() == 0

    sampler.add("m", rows(3, MINUTE, start=500), rejected=0, received=T0.timestamp())  # read back from the database
    assert sampler.sampled_rows() == 10 and sampler.held_bytes() == kept()


def test_past_the_memory_bound_rows_are_refused_uncounted(sqlite_engine):
    sampler = Sampler(sqlite_engine, FixedClock(T0), capacity=1000, max_held_bytes=200_000)
    taken = 0
    with pytest.raises(Overloaded, match=r"reached ingest.max_memory_bytes \(0.2 MiB\)"):
        for start in range(0, 10_000, 50):
            sampler.add("m", rows(50, MINUTE, start=start), rejected=0, received=T0.timestamp())
            taken += 50
    assert 200_000 <= sampler.held_bytes() < 200_000 + 50 * 1000  # past the bound by one request at most
    assert sampler._buckets[("m", int(MINUTE.timestamp()))].accepted == taken
    sampler.flush()
    assert stats(sqlite_engine, MINUTE)[0]["accepted"] == taken


@pytest.mark.parametrize(
    "shape",
    [
        {f"f{i}": (f"c{i % 5}" if i % 4 == 3 else 50.0 + i / 7) for i in range(8)},  # the benchmark's row
        {"comment": "y" * 990, "amount": 12.5},  # one long text
        {f"f{i}": i / 3 for i in range(100)},  # many numbers
    ],
    ids=["8-features", "long-text", "100-numbers"],
)
def test_the_estimate_is_within_a_factor_of_two_of_the_memory_rows_take(shape):
    """What the bound counts is what the process holds: rows parsed as the API parses them, measured
    with tracemalloc, against the sum of their estimates."""
    import tracemalloc

    body = orjson.dumps(
        [{"id": f"r{i}", "ts": T0.timestamp(), "features": shape, "prediction": 0.5, "latency_ms": 3.0} for i in range(2000)]
    )
    types = {name: "any" for name in shape}
    tracemalloc.start()
    try:
        parsed = validate_predictions(body, types, T0.timestamp())
        taken, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimated = sum(held_size(row) for row in parsed.rows)
    assert 0.5 < estimated / taken < 2, (estimated, taken)


def test_while_writes_fail_health_says_why_and_past_the_bound_rows_are_refused_until_they_are_written(engine, caplog):
    clock = FixedClock(T0)
    health = Health()
    sampler = Sampler(engine, clock, capacity=50, max_unwritten_rows=100, health=health, seed=4)
    sampler.add("m", rows(60, MINUTE), rejected=0, received=T0.timestamp())
    assert sampler.unwritten_rows() == 60  # writes work: no bound on what waits for the next flush
    assert sampler.flush() == 1 and sampler.unwritten_rows() == 0

    with caplog.at_level(logging.DEBUG, logger="monitor"):
        rename(engine, "ingest_stats", "ingest_stats_away")  # the database refuses the next writes
        try:
            sampler.add("m", rows(60, MINUTE, start=60), rejected=0, received=T0.timestamp())
            for _ in range(5):  # the flush loop, failing tick after tick
                assert sampler.flush() == 0
            reason = health.problems()["ingest"]
            assert reason.startswith("cannot write ingest buckets to the database (")
            assert "1 model-minute(s) with 60 accepted rows are kept in memory" in reason and "503" not in reason
            sampler.add("m", rows(50, MINUTE, start=120), rejected=1, received=T0.timestamp())  # 60 < 100: taken
            with pytest.raises(WritesFailing, match=r"110 accepted rows wait in memory .*ingest.max_unwritten_rows: 100"):
                sampler.add("m", rows(10, MINUTE, start=170), rejected=3, received=T0.timestamp())
            with pytest.raises(WritesFailing):
                sampler.add_labels("m", [{"id": "r0", "label": 1}], received=T0.timestamp())
            assert sampler.unwritten_rows() == 110  # what a crash now would lose, and no more
            assert sampler.flush() == 0
            assert health.problems()["ingest"].endswith("; new rows are refused with 503 (ingest.max_unwritten_rows: 100)")
        finally:
            rename(engine, "ingest_stats_away", "ingest_stats")
        assert sampler.flush() == 1
    assert health.ok and sampler.unwritten_rows() == 0
    stat, kept = stats(engine, MINUTE)
    assert (stat["accepted"], stat["rejected"]) == (170, 1)  # every row accepted, none of those refused
    assert len(kept) == 50
    sampler.add("m", rows(10, MINUTE, start=170), rejected=0, received=T0.timestamp())  # taken again

    told = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in told] == ["ERROR", "WARNING"], told  # one line when it starts, one when it ends
    assert told[0][1].startswith("ingest: cannot write ingest buckets") and told[1][1].startswith("ingest: recovered after")
    assert not any(r.exc_info for r in caplog.records if r.levelno > logging.DEBUG)


# -- the acceptance test, through the API -------------------------------------------------------------

TOTAL, BATCH, PER_MINUTE = 500_000, 5_000, 1_000
MINUTE_SHARES = [0.05, 0.10, 0.15, 0.20, 0.22, 0.28]  # six minutes of uneven traffic


def test_half_a_million_rows_through_the_api(tmp_path):
    (tmp_path / "checks").mkdir()
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'monitor.db'}"},
                "server": {"listen": "127.0.0.1:0"},
                "ingest": {"sample_per_minute": PER_MINUTE},
                "owners": {"ml-platform": {}},
            }
        )
    )
    (tmp_path / "checks" / "stream.yaml").write_text(
        yaml.safe_dump(
            {
                "model": "stream",
                "owner": "ml-platform",
                "source": {"kind": "ingest", "features": ["u", "group"], "feature_types": {"u": "number", "group": "string"}},
                "checks": [
                    {"name": "volume", "kind": "volume", "every": "1d", "window": "1h", "start_grace": "0s"},
                    {"name": "latency", "kind": "latency", "every": "1d", "window": "1h"},
                ],
            }
        )
    )

    # What is sent: timestamps over the six whole minutes before now, a skewed latency, and ``u``, the
    # row's place in the sending order, so a sample that favoured early or late arrivals would show.
    rng = np.random.default_rng(2026)
    first_minute = minute_of(time.time()) - 60 * len(MINUTE_SHARES)
    minute_index = rng.choice(len(MINUTE_SHARES), TOTAL, p=MINUTE_SHARES)
    ts = first_minute + 60 * minute_index + rng.uniform(0, 60, TOTAL)
    latency = rng.lognormal(3.0, 0.8, TOTAL)
    u = np.arange(TOTAL) / TOTAL
    groups = rng.choice(np.array(["a", "b", "c"]), TOTAL)
    bodies = []
    for start in range(0, TOTAL, BATCH):
        end = start + BATCH
        bodies.append(
            orjson.dumps(
                [
                    {"id": f"r{i}", "ts": t, "features": {"u": x, "group": g}, "prediction": 0.5, "latency_ms": lat}
                    for i, t, x, g, lat in zip(
                        range(start, end),
                        ts[start:end].tolist(),
                        u[start:end].tolist(),
                        groups[start:end].tolist(),
                        latency[start:end].tolist(),
                        strict=False,
                    )
                ]
            )
        )

    memory_bound = PER_MINUTE * len(MINUTE_SHARES)
    daemon = Daemon(Project.load(tmp_path / "config.yaml"), console=io.StringIO())
    daemon.start()
    try:
        with httpx.Client(base_url=daemon.http.url, timeout=60) as client:
            for body in bodies:
                response = client.post("/v1/models/stream/predictions", content=body)
                assert (response.status_code, response.json()) == (202, {"accepted": BATCH, "rejected": 0})
                # Memory is flat: a bounded sample per open minute, whatever the traffic.
                assert daemon.sampler.sampled_rows() <= PER_MINUTE * daemon.sampler.open_buckets()
                assert daemon.sampler.sampled_rows() <= memory_bound
        daemon.sampler.flush()

        stats_table, samples_table = IngestStat.__table__, Sample.__table__
        with daemon.engine.connect() as conn:
            accepted = dict(
                conn.execute(sa.select(stats_table.c.minute, stats_table.c.accepted).where(stats_table.c.model == "stream")).all()
            )
            kept = conn.execute(
                sa.select(samples_table.c.minute, samples_table.c.features).where(samples_table.c.model == "stream")
            ).all()

        # Counted exactly, minute by minute.
        sent = Counter((first_minute + 60 * minute_index).tolist())
        assert {int(m.timestamp()): n for m, n in accepted.items()} == dict(sent)
        assert sum(accepted.values()) == TOTAL

        # The stored sample is within its bound: at most sample_per_minute per model and minute.
        per_minute = Counter(int(m.timestamp()) for m, _ in kept)
        assert set(per_minute) == set(sent)
        assert max(per_minute.values()) <= PER_MINUTE
        assert len(kept) <= PER_MINUTE * len(sent)

        # Each minute's sample is a plausibly uniform sample of that minute's rows.
        for minute in sent:
            truth = u[first_minute + 60 * minute_index == minute]
            sample = np.array([f["u"] for m, f in kept if int(m.timestamp()) == minute])
            correction = np.sqrt(1 - len(sample) / len(truth))
            standard_error = truth.std() / np.sqrt(len(sample)) * correction
            assert abs(sample.mean() - truth.mean()) < 5 * standard_error, (minute, sample.mean(), truth.mean())

        # The window's frame is uniform over the whole window: minutes in proportion to their traffic.
        model = daemon.project.checks.models["stream"]
        window_end = datetime.now(UTC)
        frame = IngestSource(model.source, SourceContext("stream", daemon.engine)).read(
            window_end - timedelta(hours=1), window_end
        )
        rate = PER_MINUTE / max(sent.values())
        frame_minutes = Counter(int(t.timestamp()) // 60 * 60 for t in frame[TS])
        for minute, count in sent.items():
            assert abs(frame_minutes[minute] - rate * count) <= 1

        # The volume metric equals the rows accepted exactly.
        volume = daemon.evaluate(model, model.check("volume"))
        assert volume.outcome == "ok"
        assert {v.metric: v.value for v in volume.evaluation.values}["rows"] == TOTAL

        # p99 from the per-minute sketches, within 1% of the exact p99 of every latency sent.
        result = daemon.evaluate(model, model.check("latency"))
        assert result.outcome == "ok" and result.evaluation.sample_size == TOTAL
        values = {v.metric: v.value for v in result.evaluation.values}
        for metric, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
            exact = np.percentile(latency, q)
            assert abs(values[metric] - exact) <= 0.01 * exact, (metric, values[metric], exact)
        assert abs(values["max_ms"] - latency.max()) <= 0.01 * latency.max()
    finally:
        daemon.stop()
    assert daemon.sampler.sampled_rows() <= memory_bound
