"""False alarms and misses of drift thresholds: evidently's fixed ones against ``threshold: auto``.

    python bench/drift_thresholds.py                 # windows of 50 to 5,000 rows against a 100,000-row reference
    python bench/drift_thresholds.py --reference-rows 500 5000 100000 --windows 100 1000 10000 100000 --shift 0.1 0.5

For each reference and window size, ``--trials`` clean windows are drawn from the reference's own
distribution (a number column, normal, and a category column of 8 equally likely values), and as many
with each known shift (the number's mean by ``--shift`` of its standard deviation; one category's
share doubled). Each
is judged by the drift check's own code (``monitor.checks.drift``) with the fixed thresholds and with
``threshold: auto`` (calibrated by bootstrap: the reference has no time). It prints, per window size
and column, the share of clean windows that drifted (false alarms) and of shifted ones that did not
(misses). A statistics table, not a timing: the figures depend on the seed, not on the machine.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.cli import single_threaded_numerics  # noqa: E402

single_threaded_numerics()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from monitor.checks.base import Window  # noqa: E402
from monitor.checks.drift import KIND, DriftSpec  # noqa: E402
from monitor.sources.reference import Reference  # noqa: E402

CATEGORIES = np.array([f"c{i}" for i in range(8)], dtype=object)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """A normal number shifted by ``shift`` sd and 8 categories, one's share doubled when shifted."""
    shares = np.full(8, 1 / 8)
    if shift:
        shares[0] *= 2
        shares /= shares.sum()
    return pd.DataFrame({"number": rng.normal(shift, 1.0, n), "category": CATEGORIES[rng.choice(8, n, p=shares)]})


def drifted(spec: DriftSpec, window: pd.DataFrame, reference: Reference) -> dict[str, bool]:
    evaluation = KIND.evaluate(spec, Window(T0, T0, window), reference, ["number", "category"])
    return {f["feature"]: f["drifted"] for f in evaluation.evidence.get("features", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--windows", type=int, nargs="+", default=[50, 100, 200, 500, 1000, 5000])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--shift", type=float, nargs="+", default=[0.1], help="the number's shifts, in standard deviations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    modes = {"fixed": DriftSpec(name="d", kind="drift", every="1h", window="1h", min_rows=1, max_rows=10**9),
             "auto": DriftSpec(name="d", kind="drift", every="1h", window="1h", min_rows=1, max_rows=10**9,
                               threshold="auto")}  # fmt: skip
    shifts = ", ".join(f"+{shift} sd" for shift in args.shift)
    print(f"{args.trials} clean windows and {args.trials} per shift for each size; shifts: the number {shifts}, and "
          f"with each one category's share doubled; seed {args.seed}")  # fmt: skip
    header = " | ".join(f"{'misses at ' + format(shift, 'g') + ' sd':>14}" for shift in args.shift)
    print(f"{'reference':>10} {'window':>8} {'column':>9} | {'false alarms':>14} | {header}")
    print(f"{'':>10} {'':>8} {'':>9} | " + " | ".join(f"{'fixed':>7}{'auto':>7}" for _ in range(1 + len(args.shift))))
    for reference_rows in args.reference_rows:
        reference = Reference(Path("reference"), rows(rng, reference_rows))
        for size in args.windows:
            kinds = {0.0: [rows(rng, size) for _ in range(args.trials)]}
            kinds.update({shift: [rows(rng, size, shift) for _ in range(args.trials)] for shift in args.shift})
            found = {(mode, shift): [drifted(spec, w, reference) for w in windows]
                     for mode, spec in modes.items() for shift, windows in kinds.items()}  # fmt: skip
            for column in ("number", "category"):

                def share(mode: str, shift: float, want: bool, column: str = column, found: dict = found) -> str:
                    verdicts = [v.get(column, False) for v in found[(mode, shift)]]
                    return f"{sum(v == want for v in verdicts) / len(verdicts):.0%}"

                cells = [f"{share('fixed', 0.0, True):>7}{share('auto', 0.0, True):>7}"]
                cells += [f"{share('fixed', shift, False):>7}{share('auto', shift, False):>7}" for shift in args.shift]
                print(f"{reference_rows:>10,} {size:>8,} {column:>9} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
