"""The benchmarks, one after the other, each printing its targets beside its figures.

    python bench/all.py            # about 10 minutes on a 2-core machine
    python bench/all.py --quick    # smaller: 10k-row drift only, 3 starts, 100 models for 1 minute

Runs ``bench/drift.py`` (the fast drift path against a Report), ``bench/daemon.py`` (cold start and
breach to message), ``bench/scale.py`` (the daemon at scale: 1,000 models with ``processes: 2``)
``bench/ingest.py`` (the ingest API) and ``bench/evidence.py`` (evidence reports), each in its own process so that one's imports and memory
do not count in the next's. Results, with the machine they ran on: docs/performance.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = (
        [["drift.py", "--rows", "10000", "--repeat", "3"], ["daemon.py", "--repeat", "3"],
         ["scale.py", "--models", "100", "--minutes", "1", "--processes", "2"], ["ingest.py", "--rows", "100000"],
         ["evidence.py", "--repeat", "3"]]
        if args.quick
        else [["drift.py"], ["daemon.py"], ["scale.py", "--models", "1000", "--minutes", "3", "--processes", "2"], ["ingest.py"],
              ["evidence.py"], ["evidence.py", "--rows", "30000"]]
    )  # fmt: skip
    failed = []
    for script, *options in runs:
        print(f"\n== {script} {' '.join(options)}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / script), *options], cwd=HERE.parent)
        if done.returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
