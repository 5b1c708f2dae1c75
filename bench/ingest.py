"""Ingest throughput: rows per second accepted by a real `monitor run` over loopback HTTP.

    python bench/ingest.py [--rows 1000000] [--batch 1000] [--features 8] [--senders 2] [--repeat 1]
                           [--database-url URL]

Starts the daemon as a separate process (``python -m monitor run``) with one ingest model, on
127.0.0.1 and (by default) SQLite in a temporary directory; builds every request body ahead of time
with orjson, so the sending side costs little; sends them from ``--senders`` threads, each with its
own keep-alive connection (``--repeat`` rounds, each with freshly built bodies, to see the spread); then prints the rows per second accepted, the daemon's peak RSS, and
in-process baselines measured in the same run on the same bodies: orjson-parsing them (the bound for
any Python ingest path) and the daemon's own validation (``validate_predictions``) and sampling
(``Sampler.add``) without HTTP. Finally it checks that the daemon counted exactly the rows sent.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson
import sqlalchemy as sa
import yaml

MODEL = "bench-scorer"


def feature_types(count: int) -> dict[str, str]:
    """Every fourth feature is text (a category), the others numbers."""
    return {f"f{i}": "string" if i % 4 == 3 else "number" for i in range(count)}


def build_bodies(rows: int, batch: int, types: dict[str, str], seed: int = 1) -> list[bytes]:
    """JSON arrays of ``batch`` rows, timestamps over the minute before now, a skewed latency."""
    rng = np.random.default_rng(seed)
    now = time.time()
    ts = (now - 60 + 60 * np.arange(rows) / rows).tolist()
    latency = rng.lognormal(3.0, 0.8, rows).round(3).tolist()
    prediction = rng.random(rows).round(4).tolist()
    columns = {}
    for name, kind in types.items():
        columns[name] = (
            rng.choice(["US", "DE", "FR", "GB", "ES"], rows).tolist()
            if kind == "string"
            else rng.normal(50, 10, rows).round(3).tolist()
        )
    names = list(types)
    bodies = []
    for start in range(0, rows, batch):
        end = min(start + batch, rows)
        bodies.append(
            orjson.dumps(
                [
                    {
                        "id": f"r{i}",
                        "ts": ts[i],
                        "features": {name: columns[name][i] for name in names},
                        "prediction": prediction[i],
                        "latency_ms": latency[i],
                    }
                    for i in range(start, end)
                ]
            )
        )
    return bodies


def write_project(root: Path, database_url: str, types: dict[str, str]) -> Path:
    (root / "checks").mkdir(parents=True, exist_ok=True)
    config = {
        "database": {"url": database_url},
        "server": {"listen": "127.0.0.1:0"},
        "ingest": {"max_concurrent_requests": 8},
        "owners": {"bench": {}},
    }
    model = {
        "model": MODEL,
        "owner": "bench",
        "source": {"kind": "ingest", "features": list(types), "feature_types": types},
        "checks": [{"name": "volume", "kind": "volume", "every": "1h", "window": "1h"}],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "checks" / f"{MODEL}.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return root / "config.yaml"


class Daemon:
    """``python -m monitor run`` in its own process; its URL read from its log."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._url = threading.Event()
        self.url = ""
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._url.wait(60):
            self.stop()
            raise SystemExit("the daemon did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"HTTP API on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                self._url.set()

    def memory_mib(self, field: str = "VmHWM") -> float:
        """``VmHWM``: peak resident set size; ``VmRSS``: the current one."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def send(url: str, bodies: list[bytes], senders: int) -> tuple[float, int, int]:
    """Post every body; returns (seconds, rows accepted, 429 retries)."""
    queue = iter(range(len(bodies)))
    lock = threading.Lock()
    totals = {"accepted": 0, "retries": 0}
    errors: list[str] = []

    def worker() -> None:
        accepted = retries = 0
        with httpx.Client(base_url=url, timeout=60, headers={"Content-Type": "application/json"}) as client:
            while True:
                with lock:
                    index = next(queue, None)
                if index is None:
                    break
                while True:
                    response = client.post(f"/v1/models/{MODEL}/predictions", content=bodies[index])
                    if response.status_code != 429:
                        break
                    retries += 1
                    time.sleep(float(response.headers.get("Retry-After", "1")) / 10)
                if response.status_code != 202:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    break
                accepted += response.json()["accepted"]
        with lock:
            totals["accepted"] += accepted
            totals["retries"] += retries

    threads = [threading.Thread(target=worker) for _ in range(senders)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise SystemExit(f"the daemon refused a request: {errors[0]}")
    return seconds, totals["accepted"], totals["retries"]


def counted(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT coalesce(sum(accepted), 0) FROM ingest_stats WHERE model = :m"), {"m": MODEL}))
    finally:
        engine.dispose()


def baselines(bodies: list[bytes], types: dict[str, str], workdir: Path) -> dict[str, float]:
    """Seconds for the same bodies in this process, without HTTP: parsing only, then the daemon's own
    validation, then validation and sampling (into memory; nothing written)."""
    from monitor.clock import SystemClock
    from monitor.ingest.rows import validate_predictions
    from monitor.ingest.sampler import Sampler
    from monitor.storage import db

    out = {}
    began = time.perf_counter()
    for body in bodies:
        orjson.loads(body)
    out["orjson.loads"] = time.perf_counter() - began

    began = time.perf_counter()
    for body in bodies:
        validate_predictions(body, types, time.time())
    out["validate_predictions"] = time.perf_counter() - began

    engine = db.create_engine(f"sqlite:///{workdir / 'baseline.db'}")
    db.upgrade(engine)
    sampler = Sampler(engine, SystemClock(), max_dirty_buckets=1_000_000)
    began = time.perf_counter()
    for body in bodies:
        received = time.time()
        parsed = validate_predictions(body, types, received)
        sampler.add(MODEL, parsed.rows, len(parsed.rejected), received)
    out["validate + Sampler.add"] = time.perf_counter() - began
    engine.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--senders", type=int, default=2, help="sending threads, one connection each")
    parser.add_argument("--repeat", type=int, default=1, help="send every body this many times, one round after another")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    args = parser.parse_args()

    types = feature_types(args.features)
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        workdir = Path(tmp)
        database_url = args.database_url or f"sqlite:///{workdir / 'monitor.db'}"
        global MODEL
        if args.database_url:  # a shared database: this run's rows under a model name of their own
            MODEL = f"{MODEL}-{uuid.uuid4().hex[:8]}"
        config = write_project(workdir, database_url, types)

        began = time.perf_counter()
        bodies = build_bodies(args.rows, args.batch, types)
        build_s = time.perf_counter() - began
        size = sum(map(len, bodies))
        print(
            f"bodies: {len(bodies):,} requests of {args.batch:,} rows, {args.features} features, "
            f"{size / 2**20:.0f} MiB ({size / args.rows:.0f} bytes a row), built in {build_s:.1f}s"
        )
        print(
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
            f"database {sa.make_url(database_url).render_as_string(hide_password=True)}"
        )

        daemon = Daemon(config)
        rounds = []
        try:
            idle_rss = daemon.memory_mib("VmRSS")
            for round_number in range(args.repeat):
                if round_number:  # fresh timestamps: rows of live traffic, not late ones for old minutes
                    bodies = build_bodies(args.rows, args.batch, types, seed=round_number + 1)
                rounds.append(send(daemon.url, bodies, args.senders))
                seconds, accepted, retries = rounds[-1]
                print(
                    f"ingest: {accepted:,} rows accepted in {seconds:.2f}s = {accepted / seconds:,.0f} rows/s "
                    f"({len(bodies) / seconds:,.0f} requests/s, {args.senders} senders, {retries} retries after 429)"
                )
            sent = args.rows * args.repeat
            deadline = time.monotonic() + 30  # the daemon writes twice a second
            while counted(database_url) != sent and time.monotonic() < deadline:
                time.sleep(0.2)
            rss = daemon.memory_mib("VmHWM")
        finally:
            code = daemon.stop()
        stored_after_stop = counted(database_url)

        accepted = sum(r[1] for r in rounds)
        rates = sorted(r[1] / r[0] for r in rounds)
        rate = statistics.median(rates)
        if args.repeat > 1:
            print(
                f"ingest over {args.repeat} rounds: median {rate:,.0f} rows/s (min {rates[0]:,.0f}, max {rates[-1]:,.0f}); "
                f"{sum(r[0] for r in rounds):.2f}s in all"
            )
        print(f"daemon: peak RSS (VmHWM) {rss:.0f} MiB, {idle_rss:.0f} MiB before the first row; exit code {code}")
        print(
            f"counted: ingest_stats.accepted = {stored_after_stop:,} "
            f"({'equals' if stored_after_stop == sent == accepted else 'DIFFERS FROM'} the {sent:,} rows sent)"
        )

        print("baselines, same bodies, in this process, one thread, no HTTP:")
        for name, spent in baselines(bodies, types, workdir).items():
            base_rate = args.rows / spent
            print(f"  {name:<24} {spent:6.2f}s = {base_rate:>12,.0f} rows/s; the daemon reached {rate / base_rate:.1%} of it")
        if stored_after_stop != sent or accepted != sent or code != 0:
            print("FAILED: counts differ or the daemon did not stop cleanly", file=sys.stderr)
            print("".join(daemon.log[-20:]), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
