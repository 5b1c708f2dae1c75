"""The checks of a model due together read its files once: a read covers its window and a minute more,
and a later window inside it is cut from memory, with exactly the rows a read of the file gives, until
the file changes."""

from __future__ import annotations

import os
from datetime import timedelta

import pandas as pd
import pytest

from monitor.sources import files
from monitor.sources.base import ID, SCHEMA, TS
from monitor.sources.files import FilesSource
from monitor.sources.window_cache import AHEAD, WindowCache
from tests.test_sources import END, INSIDE, START, check_window, files_spec, frame, write


@pytest.fixture
def reads(monkeypatch) -> WindowCache:
    """The process's cache of file reads, fresh for the test."""
    cache = WindowCache()
    monkeypatch.setattr(files, "_READS", cache)
    return cache


@pytest.mark.parametrize("name", ["live.parquet", "live.csv", "live.jsonl"])
def test_checks_due_together_read_the_file_once(tmp_path, reads, monkeypatch, name):
    write(frame(), tmp_path / name)
    spec = files_spec(str(tmp_path / name))
    # Three checks of one model, each its own source, starting a few seconds apart over the same window
    # (the latest ends 30 s later: the row at 60 minutes is in it, as a direct read says).
    first = FilesSource(spec).read(START, END)
    again = FilesSource(spec).read(START, END)
    later = FilesSource(spec).read(START + timedelta(seconds=30), END + timedelta(seconds=30))
    assert reads.misses == 1 and reads.hits == 2
    check_window(first)
    check_window(again)
    assert set(later[ID]) == {"middle", "late", "at-end"}
    monkeypatch.setattr(files, "_READS", WindowCache())  # as a process that read nothing before reads it
    pd.testing.assert_frame_equal(later, FilesSource(spec).read(START + timedelta(seconds=30), END + timedelta(seconds=30)))


def test_a_window_past_what_was_read_reads_the_file_again(tmp_path, reads):
    write(frame(), tmp_path / "live.parquet")
    source = FilesSource(files_spec(str(tmp_path / "live.parquet")))
    source.read(START, END)
    beyond = source.read(START + AHEAD, END + AHEAD + timedelta(seconds=1))
    assert reads.misses == 2
    assert set(beyond[ID]) == {"middle", "late", "at-end"}


@pytest.mark.parametrize(
    ("new_id", "later_ns"),
    [
        # A job's rewrite a second later (within one clock tick of the first, on a coarse file system).
        ("rewritten", 1_000_000_000),
        # As `cp -p` or `rsync -t --inplace` leave it: the same size (an id of the same length), the
        # same modification time put back; only the status-change time tells.
        ("midxle", 0),
    ],
    ids=["a-second-later", "old-time-put-back"],
)
def test_a_rewritten_file_is_read_again(tmp_path, reads, new_id, later_ns):
    path = write(frame(), tmp_path / "live.parquet")
    source = FilesSource(files_spec(str(path)))
    assert set(source.read(START, END)[ID]) == INSIDE
    stat = os.stat(path)
    rows = frame()
    rows.loc[2, "request_id"] = new_id
    write(rows, path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + later_ns))
    assert set(source.read(START, END)[ID]) == {"at-start", new_id, "late"}
    assert reads.misses == 2


def test_a_window_far_from_the_kept_one_is_kept_beside_it(tmp_path, reads):
    """Volume's rows_ratio reads the same window a day earlier on every run: neither read pushes the
    other out."""
    day = timedelta(days=1)
    write(pd.concat([frame(start=START - day), frame()]), tmp_path / "live.parquet")
    source = FilesSource(files_spec(str(tmp_path / "live.parquet")))
    for minute in range(3):
        later = timedelta(seconds=20 * minute)
        assert set(source.read(START + later, END + later)[ID]) >= {"middle", "late"}
        assert set(source.read(START - day + later, END - day + later)[ID]) >= {"middle", "late"}
    assert reads.misses == 2 and reads.hits == 4


def test_what_a_check_does_to_its_rows_is_its_own(tmp_path, reads):
    write(frame(), tmp_path / "live.parquet")
    source = FilesSource(files_spec(str(tmp_path / "live.parquet")))
    mine = source.read(START, END)
    mine["amount"] = -1.0
    mine.drop(index=0, inplace=True)
    check_window(source.read(START, END))
    assert reads.hits == 1


def test_a_read_of_the_schema_is_kept_apart_and_still_names_the_columns(tmp_path, reads):
    write(frame().drop(columns="amount"), tmp_path / "live.parquet")
    source = FilesSource(files_spec(str(tmp_path / "live.parquet")))
    for _ in range(2):
        schema = source.read(START, END, schema=True).attrs[SCHEMA]
        assert schema.absent == ("amount",) and schema.undeclared == frozenset({"secret"})
    assert reads.misses == 1 and reads.hits == 1


def stamped(n: int) -> pd.DataFrame:
    return pd.DataFrame({TS: pd.date_range(START, periods=n, freq="1min", tz="UTC"), "text": [f"row {i}" for i in range(n)]})


def test_what_is_kept_stays_within_its_budget_and_its_age():
    clock = [0.0]
    cache = WindowCache(budget=40_000, max_age=300.0, monotonic=lambda: clock[0])
    read_count = []

    def reader(lo, hi):
        read_count.append((lo, hi))
        return stamped(60), None

    def stamps(f):
        return f[TS].to_numpy(dtype="datetime64[ns]")

    for key in ("a", "b", "c", "d", "e"):  # about 4 kB each: all fit
        cache.read(key, START, END, stamps, reader)
    cache.read("a", START, END, stamps, reader)
    assert len(read_count) == 5
    big = WindowCache(budget=6_000, monotonic=lambda: clock[0])
    for key in ("a", "b"):
        big.read(key, START, END, stamps, reader)
    big.read("a", START, END, stamps, reader)  # "b" pushed "a" out: over the budget
    assert big.misses == 3
    clock[0] = 301.0
    rows, _ = cache.read("a", START, END, stamps, reader)  # too old to serve a run any more
    assert len(read_count) == 9 and len(rows) == 60
