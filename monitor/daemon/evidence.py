"""Evidence reports of firing alerts, built on a thread of their own once the run is recorded.

A run that fires an alert of a kind with a report (``CheckKind.evidence``: drift, prediction drift, data
quality, performance) has its notifications enqueued in its own transaction, with the link to the
report in the message; the report is built afterwards, here, so a slow report (evidently takes a
quarter of a second to a second) never delays a message. Until it is written, the link answers that
it is being built. A report that fails is logged, and its link shows why: the alert stands without
it. A start builds those a stop or a kill left unbuilt, of the alerts still firing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import sqlalchemy as sa

from monitor.checks import has_report
from monitor.checks.base import CheckSpec
from monitor.config.models import ModelConfig
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.results import RunResult
from monitor.evidence.reports import failed_page, heading, report_html
from monitor.evidence.store import EvidenceStore
from monitor.logs import log_context
from monitor.storage.tables import Alert, CheckRun, fired_run, table

log = logging.getLogger(__name__)


def wanted(check: CheckSpec, result: RunResult) -> list[RunResult]:
    """The parts of ``result`` (one per model version of a split check) that fired an alert of a kind
    with a report, on the window's values (not the check's failing rule)."""
    firing = {
        change.model_version or "" for change in result.changes if change.state == "firing" and has_report(check, change.rule)
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
            assert part.run_id is not None
            window = (part.window_start, part.window_end)
            self._pool.submit(self._build, model, check, part.run_id, window, part.model_version or "")

    def catch_up(self, engine: sa.Engine, models: Mapping[str, ModelConfig]) -> int:
        """Queue the reports of firing alerts that are not in the store: the daemon stopped (or was
        killed) before it built them, or another replica built them in its own ``evidence_dir``. A
        restart loses no report an open alert links. Returns how many were queued."""
        alerts, runs = table(Alert), table(CheckRun)
        query = (
            sa.select(
                alerts.c.model,
                alerts.c.check,
                alerts.c.rule,
                runs.c.id,
                runs.c.window_start,
                runs.c.window_end,
                runs.c.model_version,
            )  # fmt: skip
            .join(runs, fired_run(runs, alerts.c))
            .where(alerts.c.state == "firing")
            .order_by(runs.c.id)
        )
        with engine.connect() as conn:
            found = conn.execute(query).all()
        queued: set[int] = set()
        for model_name, check_name, rule, run_id, start, end, version in found:
            model = models.get(model_name)
            check = next((c for c in model.checks if c.name == check_name), None) if model is not None else None
            if model is None or check is None or not has_report(check, rule):
                continue
            if run_id in queued or self.store.path(run_id).exists():
                continue
            queued.add(run_id)
            self._pool.submit(self._build, model, check, run_id, (start, end), version or "")
        return len(queued)

    def _build(self, model: ModelConfig, check: CheckSpec, run_id: int, window: tuple[datetime, datetime], version: str) -> None:
        with log_context(model=model.model, check=check.name, run_id=run_id):
            try:
                data = self.evaluator.evidence_data(model, check, *window, version)
                head = heading(model.model, check.name, run_id, window, data.rows, against_reference=data.reference is not None)
                self.store.save(run_id, report_html(data, head))
                log.info("evidence of run #%d written (%s)", run_id, self.store.path(run_id))
            except Exception as exc:  # the alert stands without it; the link says why there is none
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("evidence of run #%d not built: %s", run_id, reason)
                self.store.save(run_id, failed_page(model.model, check.name, run_id, reason))

    def close(self) -> None:
        """Finish the report in hand; drop those not begun (the next start builds those of the alerts
        still firing: :meth:`catch_up`)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
