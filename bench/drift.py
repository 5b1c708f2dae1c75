"""Drift evaluation: the fast path (monitor/checks/fast_drift.py) against a plain evidently Report.

    python bench/drift.py                 # 10k and 100k rows x 25 columns (20 numbers, 5 categories)
    python bench/drift.py --rows 1000000  # and the others you name; --repeat N (median of N, 5 by default)

Both sides get the same window and reference, as ``monitor.checks.drift`` gives them: the Report is
``DataDriftTable`` through ``drift_table``; the fast path's reference side is prepared once (its
time is printed apart, as the daemon does it once per reference file) and each evaluation computes
every column. The figures are medians of ``--repeat`` runs in this process, and the ratio is of the
two in the same run (the machine is shared and noisy: compare ratios, not seconds). Each run also
checks that the two agree on every score (within 1e-9) and verdict. Peak memory is this process's
high-water mark (``ru_maxrss``) after the fast runs, before any Report of that size.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.cli import single_threaded_numerics  # noqa: E402

single_threaded_numerics()  # as the monitor command runs them, before numpy loads

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from monitor.checks.drift import drift_table  # noqa: E402
from monitor.checks.fast_drift import PreparedColumn, column_drift  # noqa: E402

TARGETS = {100_000: 95.0, 1_000_000: 145.0}  # issue 15: at least this many times faster than a Report


def data(rows: int, seed: int, shift: float) -> tuple[dict[str, pd.Series], dict[str, str]]:
    rng = np.random.default_rng(seed)
    columns: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    for i in range(20):
        columns[f"n{i}"] = pd.Series(rng.normal(shift * (i % 3), 1.0 + i / 10, rows))
        kinds[f"n{i}"] = "number"
    for i in range(5):
        # One text object per category, shared by its rows, as pyarrow gives a Parquet column (its
        # to_pandas deduplicates): a new object per row would be 50 bytes a value the daemon never holds.
        values = np.array([f"c{j}" for j in range(4 + i * 3)], dtype=object)
        columns[f"c{i}"] = pd.Series(values[rng.integers(0, len(values), rows)], dtype=object)
        kinds[f"c{i}"] = "string"
    return columns, kinds


def median_time(run, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="window and reference rows (repeatable)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = args.rows or [10_000, 100_000]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}")
    for rows in sizes:
        reference, kinds = data(rows, 1, 0.0)
        current, _ = data(rows, 2, 0.2)
        started = time.perf_counter()
        prepared = {name: PreparedColumn.of(reference[name], kind) for name, kind in kinds.items()}
        prepare_s = time.perf_counter() - started

        def fast(prepared=prepared, current=current, kinds=kinds):
            return {name: column_drift(prepared[name], current[name], None, None) for name in kinds}

        fast_s, fast_result = median_time(fast, args.repeat)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report_repeat = max(1, args.repeat if rows <= 100_000 else 1)

        def report(reference=reference, current=current, kinds=kinds):
            return drift_table(None, None, reference, current, kinds)

        report_s, report_result = median_time(report, report_repeat)
        assert isinstance(fast_result, dict) and isinstance(report_result, dict)
        for name in kinds:
            a, b = fast_result[name], report_result[name]
            assert a["drift_detected"] == bool(b["drift_detected"]), name
            assert abs(a["drift_score"] - float(b["drift_score"])) <= 1e-9 * max(1.0, abs(float(b["drift_score"]))), name
        ratio = report_s / fast_s
        target = TARGETS.get(rows)
        verdict = "" if target is None else f"; target >= {target:g}x: {'met' if ratio >= target else 'NOT met'}"
        print(
            f"{rows:>9,} rows x {len(kinds)} columns: Report {report_s:.3f}s (median of {report_repeat}), fast {fast_s:.4f}s "
            f"(median of {args.repeat}) = {ratio:.1f}x{verdict}; reference prepared once in {prepare_s:.3f}s; "
            f"peak RSS {peak_mib:,.0f} MiB; scores equal within 1e-9"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
