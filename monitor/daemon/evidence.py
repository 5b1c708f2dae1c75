"""Evidence reports of firing alerts, built on a thread of their own once the run is recorded.

A run that fires an alert of a kind with a report (``CheckKind.evidence``: drift, prediction drift, data
quality, performance) has its notifications enqueued in its own transaction, with the link to the
report in the message; the report is built afterwards, here, so a slow report (evidently takes about a second for a few
thousand rows) never delays a message. Until it is written, the link answers that it is being built.
A report that fails is logged, and its link shows why: the alert stands without it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from monitor.checks import CHECKS
from monitor.checks.base import CheckSpec
from monitor.config.models import ModelConfig
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.results import RunResult
from monitor.evidence.reports import failed_page, heading, report_html
from monitor.evidence.store import EvidenceStore
from monitor.logs import log_context

log = logging.getLogger(__name__)


def wanted(check: CheckSpec, result: RunResult) -> list[RunResult]:
    """The parts of ``result`` (one per model version of a split check) that fired an alert of a kind
    with a report, on the window's values (not the check's failing rule)."""
    if CHECKS[check.kind].evidence is None:
        return []
    firing = {
        change.model_version or ""
        for change in result.changes
        if change.state == "firing" and not check.is_failing_rule(change.rule)
    }
    return [part for part in result.parts if part.run_id is not None and (part.model_version or "") in firing]


class EvidenceBuilder:
    def __init__(self, store: EvidenceStore, evaluator: Evaluator) -> None:
        self.store = store
        self.evaluator = evaluator
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="evidence")

    def after(self, model: ModelConfig, check: CheckSpec, result: RunResult) -> None:
        """Queue the reports ``result`` owes (none for most runs)."""
        for part in wanted(check, result):
            self._pool.submit(self._build, model, check, part)

    def _build(self, model: ModelConfig, check: CheckSpec, part: RunResult) -> None:
        assert part.run_id is not None
        with log_context(model=model.model, check=check.name, run_id=part.run_id):
            try:
                data = self.evaluator.evidence_data(model, check, part.window_start, part.window_end, part.model_version or "")
                window = (part.window_start, part.window_end)
                head = heading(
                    model.model, check.name, part.run_id, window, data.rows, against_reference=data.reference is not None
                )
                self.store.save(part.run_id, report_html(data, head))
                log.info("evidence of run #%d written (%s)", part.run_id, self.store.path(part.run_id))
            except Exception as exc:  # the alert stands without it; the link says why there is none
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("evidence of run #%d not built: %s", part.run_id, reason)
                self.store.save(part.run_id, failed_page(model.model, check.name, part.run_id, reason))

    def close(self) -> None:
        """Finish the report in hand; drop those not begun (their runs' links say there is none)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
