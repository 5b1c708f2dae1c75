"""False alarms and misses of drift thresholds: evidently's fixed ones against ``threshold: auto``.

    python bench/drift_thresholds.py                 # windows of 50 to 5,000 rows against a 100,000-row reference
    python bench/drift_thresholds.py --trials 100 --reference-rows 500

For each window size, ``--trials`` clean windows are drawn from the reference's own distribution (a
number column, normal, and a category column of 8 equally likely values), and as many with a known
shift (the number's mean by ``--shift`` of its standard deviation; one category's share doubled). Each
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
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--windows", type=int, nargs="+", default=[50, 100, 200, 500, 1000, 5000])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--shift", type=float, default=0.1, help="the number's shift, in standard deviations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    reference = Reference(Path("reference"), rows(rng, args.reference_rows))
    modes = {"fixed": DriftSpec(name="d", kind="drift", every="1h", window="1h", min_rows=1),
             "auto": DriftSpec(name="d", kind="drift", every="1h", window="1h", min_rows=1, threshold="auto")}  # fmt: skip
    print(f"reference: {args.reference_rows:,} rows; {args.trials} clean and {args.trials} shifted windows per size; "
          f"shift: number +{args.shift} sd, one category's share doubled; seed {args.seed}")  # fmt: skip
    print(f"{'window rows':>12} {'column':>9} | {'false alarms':>14} {'':>6} | {'misses':>14} {'':>6}")
    print(f"{'':>12} {'':>9} | {'fixed':>7} {'auto':>6} {'':>6} | {'fixed':>7} {'auto':>6}")
    for size in args.windows:
        clean = [rows(rng, size) for _ in range(args.trials)]
        shifted = [rows(rng, size, args.shift) for _ in range(args.trials)]
        found = {(mode, kind): [drifted(spec, w, reference) for w in windows]
                 for mode, spec in modes.items() for kind, windows in (("clean", clean), ("shifted", shifted))}  # fmt: skip
        for column in ("number", "category"):

            def share(mode: str, kind: str, want: bool, column: str = column, found: dict = found) -> str:
                verdicts = [v.get(column, False) for v in found[(mode, kind)]]
                return f"{sum(v == want for v in verdicts) / len(verdicts):.0%}"

            print(f"{size:>12,} {column:>9} | {share('fixed', 'clean', True):>7} {share('auto', 'clean', True):>6} {'':>6} | "
                  f"{share('fixed', 'shifted', False):>7} {share('auto', 'shifted', False):>6}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
