"""Test data: a reference and live rows (with drift injected or not), and a model project on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

FEATURES = ["amount", "country", "account_age_days"]
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def reference_frame(rows: int = 2000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, rows),
            "country": rng.choice(["US", "DE", "FR", "GB"], rows, p=[0.4, 0.2, 0.2, 0.2]),
            "account_age_days": rng.integers(1, 3000, rows),
            "score": rng.random(rows),
        }
    )


def live_frame(
    rows: int,
    end: datetime = T0,
    span: timedelta = timedelta(minutes=50),
    drift: bool = False,
    seed: int = 2,
    latency_scale: float = 20.0,
) -> pd.DataFrame:
    """Rows with timestamps spread over ``span`` before ``end``; with ``drift``, amount and country move."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(1, span.total_seconds(), rows)
    return pd.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(rows)],
            "created_at": [end - timedelta(seconds=float(s)) for s in offsets],
            "amount": rng.lognormal(4.5 if drift else 3.0, 1.0, rows),
            "country": rng.choice(["US", "DE", "FR", "GB"], rows, p=[0.85, 0.05, 0.05, 0.05] if drift else [0.4, 0.2, 0.2, 0.2]),
            "account_age_days": rng.integers(1, 3000, rows),
            "score": rng.random(rows),
            "latency_ms": rng.gamma(2.0, latency_scale, rows),
        }
    )


def write_project(
    root: Path,
    *,
    live: pd.DataFrame | None = None,
    checks: list[dict] | None = None,
    owners: dict | None = None,
    slack: dict | None = None,
    database_url: str | None = None,
    routes: list | None = None,
    hold: str | None = None,
    notifiers: dict | None = None,
) -> Path:
    """A config.yaml, checks/fraud-scorer.yaml and data/ under ``root``; returns the config path."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "checks").mkdir(exist_ok=True)
    reference_frame().to_parquet(root / "data" / "reference.parquet")
    if live is not None:
        live.to_parquet(root / "data" / "live-0001.parquet")
    config = {
        "database": {"url": database_url or f"sqlite:///{root / 'monitor.db'}"},
        "server": {"listen": "127.0.0.1:0"},
        "checks_dir": "checks",
        "owners": owners or {"fraud-team": {"slack": "#fraud-alerts", "mention": ["@dana"]}},
    }
    if slack or notifiers:
        config["notifiers"] = {**({"slack": slack} if slack else {}), **(notifiers or {})}
    if routes:
        config["routes"] = routes
    drift_check = {
        "name": "feature-drift",
        "kind": "drift",
        "every": "15m",
        "window": "1h",
        "alert": [{"when": "drift_share > 0.3", "severity": "critical"}],
    }
    if hold:
        drift_check["for"] = hold
    model = {
        "model": "fraud-scorer",
        "owner": next(iter(config["owners"])),
        "source": {
            "kind": "files",
            "path": "data/live-*.parquet",
            "timestamp": "created_at",
            "id": "request_id",
            "features": FEATURES,
            "prediction": "score",
            "latency": "latency_ms",
        },
        "reference": {"path": "data/reference.parquet"},
        "checks": checks
        or [
            drift_check,
            {
                "name": "latency",
                "kind": "latency",
                "every": "1m",
                "window": "1h",
                "alert": [{"when": "p99_ms > 250", "severity": "warning"}],
            },
        ],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "checks" / "fraud-scorer.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return root / "config.yaml"
