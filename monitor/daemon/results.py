"""What one run of one check found and changed, as the evaluator returns it to the daemon, the CLI and
the tests: its outcome, values, observations, the episodes it moved and the notifications they owe."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from monitor.alerting.rules import Observation, Waiting
from monitor.checks.base import Evaluation
from monitor.daemon.judging import WindowResult


@dataclass
class Change:
    """An alert whose state changed in this run, and the notification it owes (if any)."""

    alert_id: int
    rule: str
    feature: str
    state: str
    value: float
    notify: str | None
    model_version: str = ""


@dataclass
class RunResult:
    model: str
    check: str
    outcome: str  # ok, breach, insufficient_data or error
    evaluation: Evaluation
    window_start: datetime
    window_end: datetime
    observations: list[Observation] = field(default_factory=list)
    # The check's own health judged on this run (its failing_rule, on the failing runs in a row so far):
    # recorded runs only.
    failing: Observation | None = None
    changes: list[Change] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)  # rules whose baseline is not long enough yet
    windows: list[WindowResult] = field(default_factory=list)  # values over the rules' own windows
    run_id: int | None = None
    duration_s: float = 0.0
    model_version: str = ""  # the version this result is of: split_by's, a version_compare's candidate
    versions: list[RunResult] = field(default_factory=list)  # split by model_version: each version's result

    @property
    def notifications_owed(self) -> int:
        return sum(1 for c in self.changes if c.notify)

    @property
    def parts(self) -> list[RunResult]:
        """The results recorded as runs: each version's of a split check, else this one."""
        return self.versions or [self]
