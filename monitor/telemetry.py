"""The daemon's own health in Prometheus form: what it ingested, evaluated and delivered, and the
latest value of every check metric. Served at ``GET /metrics``; one registry per daemon.

It stands below the daemon and the server, which both write to it, and knows neither.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.alerting.rules import MetricValue

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.started = time.time()
        self.last_success: float | None = None
        self.rows = Counter(
            "monitor_ingest_rows", "Rows posted to the ingest API, by result.", ["model", "result"], registry=self.registry
        )
        self.labels = Counter(
            "monitor_ingest_labels", "Labels posted to the ingest API, by result.", ["model", "result"], registry=self.registry
        )
        self.evaluations = Counter(
            "monitor_evaluations", "Check evaluations, by outcome.", ["model", "check", "outcome"], registry=self.registry
        )
        self.duration = Histogram(
            "monitor_evaluation_duration_seconds",
            "Time to evaluate a check.",
            ["model", "check"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.start_delay = Histogram(
            "monitor_evaluation_start_delay_seconds",
            "From when a check's run was due to when its evaluation started.",
            ["model", "check"],
            registry=self.registry,
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.late = Counter(
            "monitor_evaluations_late",
            "Runs that started late (past max(1s, a tenth of the check's interval)) or not at all, by why: "
            "late, still_running (its previous run had not finished), missed.",
            ["model", "check", "why"],
            registry=self.registry,
        )
        self.elsewhere = Counter(
            "monitor_evaluations_elsewhere",
            "Runs due on this replica that another replica on the same PostgreSQL took (each run is done once "
            "across them): the sum over the replicas of monitor_evaluations and this is their schedules' count.",
            ["model", "check"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "monitor_notification_attempts",
            "Notification delivery attempts, by receiver kind and result.",
            ["receiver", "result"],
            registry=self.registry,
        )
        self.values = Gauge(
            "monitor_check_value",
            "The latest value of each check metric.",
            ["model", "check", "metric", "feature"],
            registry=self.registry,
        )
        self.last_cycle = Gauge(
            "monitor_last_success_timestamp_seconds", "When an evaluation last completed without error.", registry=self.registry
        )
        self.sample_rows = Gauge("monitor_ingest_sample_rows_in_memory", "Sampled rows held in memory.", registry=self.registry)
        self.sample_bytes = Gauge(
            "monitor_ingest_sample_bytes_in_memory",
            "Estimated bytes of the sampled rows held in memory (bounded by ingest.max_memory_bytes).",
            registry=self.registry,
        )
        self.unwritten_rows = Gauge(
            "monitor_ingest_unwritten_rows",
            "Accepted rows not yet written to the database: what a crash would lose now.",
            registry=self.registry,
        )

    def record_run(self, model: str, check: str, outcome: str, duration_s: float, values: Iterable[MetricValue]) -> None:
        self.evaluations.labels(model, check, outcome).inc()
        self.duration.labels(model, check).observe(duration_s)
        for value in values:
            self.values.labels(model, check, value.metric, value.feature).set(value.value)
        if outcome != "error":
            self.last_success = time.time()
            self.last_cycle.set(self.last_success)

    def record_start(self, model: str, check: str, delay_s: float, late: bool) -> None:
        self.start_delay.labels(model, check).observe(max(delay_s, 0.0))
        if late:
            self.late.labels(model, check, "late").inc()

    def record_not_run(self, model: str, check: str, why: str) -> None:
        self.late.labels(model, check, why).inc()

    def record_elsewhere(self, model: str, check: str) -> None:
        self.elsewhere.labels(model, check).inc()

    def record_delivery(self, kind: str, status: str) -> None:
        self.notifications.labels(kind, status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
