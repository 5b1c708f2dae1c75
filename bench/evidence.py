"""Evidence reports: what one costs to build, and what it costs the runs beside it.

    python bench/evidence.py                # --rows 3000 --repeat 5

In this one process, on a project written by tests/factories.py (one model read from Parquet, SQLite in
a temporary directory), with a window of ``--rows`` rows that breaches a drift, a data-quality and a
performance (classification) check:

- per kind, the median time of its breaching run (read, evaluate, record, enqueue the message: what a
  message waits for) and of building its report (the window read again, evidently's report, the page
  escaped), and the report's size gzipped;
- a latency check's run timed alone and while reports are being built on another thread, as the
  daemon's builder does: their ratio is what a report in progress costs the runs beside it (the
  interpreter's lock is shared).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitor.clock import FixedClock  # noqa: E402
from monitor.daemon.evaluator import Evaluator  # noqa: E402
from monitor.daemon.project import Project  # noqa: E402
from monitor.evidence.reports import heading, report_html  # noqa: E402
from monitor.storage import db  # noqa: E402
from tests.factories import T0, live_frame, reference_frame, write_project  # noqa: E402

CHECKS = [
    {"name": "drift", "kind": "drift", "every": "1m", "window": "1h",
     "alert": [{"when": "drift_share > 0.3", "severity": "critical"}]},
    {"name": "data-quality", "kind": "data_quality", "every": "1m", "window": "1h",
     "alert": [{"when": "missing_share > 0.15", "severity": "warning"}]},
    {"name": "performance", "kind": "performance", "task": "classification", "every": "1m", "window": "1h",
     "alert": [{"when": "accuracy < 0.9", "severity": "critical"}]},
    {"name": "latency", "kind": "latency", "every": "1m", "window": "1h",
     "alert": [{"when": "p99_ms > 10000", "severity": "warning"}]},
]  # fmt: skip


def project(root: Path, rows: int) -> Project:
    """Drifted amounts and countries, a fifth of the amounts missing, and labels a weak score follows."""
    rng = np.random.default_rng(7)
    live = live_frame(rows, drift=True)
    live.loc[live.index[: rows // 5], "amount"] = None
    truth = rng.integers(0, 2, rows)
    live["is_fraud"], live["score"] = truth, np.clip(0.2 * truth + 0.8 * rng.random(rows), 0, 1)
    config = write_project(root, live=live, checks=CHECKS)
    path = root / "checks" / "fraud-scorer.yaml"
    model = yaml.safe_load(path.read_text())
    model["source"]["label"] = "is_fraud"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    reference = reference_frame()
    reference["is_fraud"] = (reference["score"] > 0.5).astype(int)
    reference.to_parquet(root / "data" / "reference.parquet")
    return Project.load(config)


def median_of(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows in the window (default 3000)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure; medians are printed (default 5)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # scipy's, on categories one side lacks
    with tempfile.TemporaryDirectory(prefix="monitor-bench-evidence-") as folder:
        loaded = project(Path(folder), args.rows)
        engine = db.create_engine(loaded.config.database.url)
        db.upgrade(engine)
        clock = FixedClock(T0)
        evaluator = Evaluator(engine, loaded.config, clock, evidence_url=lambda run_id: f"http://monitor/evidence/{run_id}")
        model = loaded.checks.models["fraud-scorer"]
        latency = model.check("latency")
        for check in (model.check(name) for name in ("drift", "data-quality", "performance")):
            first = evaluator.run(model, check)  # the breach (and its imports: a daemon warms them up first)
            assert any(c.state == "firing" for c in first.changes), (check.name, first.outcome, first.evaluation.error)
            run = median_of(lambda check=check: evaluator.run(model, check), args.repeat)
            start, end = first.window_start, first.window_end

            def build(check=check, start=start, end=end) -> str:
                data = evaluator.evidence_data(model, check, start, end)
                head = heading(model.model, check.name, 1, (start, end), data.rows, against_reference=True)
                return report_html(data, head)

            built = median_of(build, args.repeat)
            size = len(gzip.compress(build().encode()))
            print(f"{check.kind:<13} run (to the message) {run * 1000:8.1f} ms   report {built * 1000:8.1f} ms"
                  f"   ratio {built / run:6.1f}x   {size / 1e6:.2f} MB gzipped")  # fmt: skip

        alone = median_of(lambda: evaluator.run(model, latency), args.repeat * 4)
        busy, stop = [], threading.Event()
        drift = model.check("drift")

        def reports() -> None:
            while not stop.is_set():
                report_html(evaluator.evidence_data(model, drift, T0 - drift.window, T0), "")

        builder = threading.Thread(target=reports, name="evidence")
        builder.start()
        time.sleep(0.2)
        try:
            busy.append(median_of(lambda: evaluator.run(model, latency), args.repeat * 4))
        finally:
            stop.set()
            builder.join()
        engine.dispose()
    print(f"latency run alone {alone * 1000:.1f} ms, while reports are built {busy[0] * 1000:.1f} ms: "
          f"ratio {busy[0] / alone:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
