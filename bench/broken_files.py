"""What ``monitor validate`` costs on each file of the broken-file corpus (tests/broken/, tests/broken_corpus.py).

    python bench/broken_files.py [--repeat 5] [--fresh] [--only TEXT]

Writes the corpus's project into a temporary directory and, in a fresh interpreter that has validated the good
file once (so that imports are not counted), validates each case ``--repeat`` times. For each case it prints
the median and the largest wall time, the median CPU time, and tracemalloc's peak over one more run. All
cases run in one interpreter, so the growth of its peak resident size is printed once, for all of them: it
bounds what each case grew it by. With ``--fresh`` each case runs in an interpreter of its own and the growth
is per case (some minutes). ``--only`` keeps the cases whose id (``checks/billion-laughs``) contains TEXT.
Exits 1 unless every case exits 1 with no traceback.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from broken_corpus import Case, cases, measure, measured, write_project  # noqa: E402

MiB = 2**20


def run(selected: list[Case], repeat: int, fresh: bool) -> list[dict]:
    """The measurements of ``selected``, in order: one interpreter for all, or one each."""
    with tempfile.TemporaryDirectory(prefix="monitor-broken-") as tmp:
        if not fresh:
            root = Path(tmp) / "project"
            write_project(root)
            return measured(measure(selected, root, repeat), timeout=60 + 10 * repeat * len(selected))
        results = []
        for case in selected:
            root = Path(tmp) / case.id.replace("/", "-")
            write_project(root)
            results.extend(measured(measure([case], root, repeat), timeout=60 + 10 * repeat))
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each case (default 5)")
    parser.add_argument("--fresh", action="store_true", help="each case in an interpreter of its own")
    parser.add_argument("--only", default="", help="the cases whose id contains this")
    args = parser.parse_args()

    selected = [case for case in cases() if args.only in case.id]
    print(f"{len(selected)} cases, {args.repeat} runs each; Python {platform.python_version()} on {platform.machine()}")
    results = run(selected, args.repeat, args.fresh)

    width = max(len(case.id) for case in selected)
    print(f"{'case':<{width}}  {'median':>8}  {'max':>8}  {'CPU':>8}  {'traced':>8}" + ("  RSS grew" if args.fresh else ""))
    failed = []
    for case, result in zip(selected, results, strict=True):
        if result["code"] != 1 or "Traceback" in result["err"]:
            failed.append(case.id)
        line = (
            f"{case.id:<{width}}  {statistics.median(result['wall']) * 1000:6.1f}ms  {max(result['wall']) * 1000:6.1f}ms"
            f"  {statistics.median(result['cpu']) * 1000:6.1f}ms  {result['peak'] / MiB:6.1f}MiB"
        )
        print(line + (f"  {result['grown'] / MiB:6.1f}MiB" if args.fresh else ""))

    medians = [statistics.median(r["wall"]) for r in results]
    slowest = max(zip(selected, results, strict=True), key=lambda pair: max(pair[1]["wall"]))
    largest = max(zip(selected, results, strict=True), key=lambda pair: pair[1]["peak"])
    print(f"median of the cases' medians: {statistics.median(medians) * 1000:.1f}ms")
    print(f"slowest: {slowest[0].id}, {max(slowest[1]['wall']) * 1000:.1f}ms at most")
    print(f"most memory: {largest[0].id}, {largest[1]['peak'] / MiB:.1f}MiB traced")
    grown = max(r["grown"] for r in results)
    print(f"peak resident size grew by {grown / MiB:.1f}MiB at most" + ("" if args.fresh else ", over all the cases"))
    if failed:
        print(f"FAILED: not exit 1, or a traceback: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
