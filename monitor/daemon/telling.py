"""What the on-call engineer is told of a run: one message per incident whose episodes it changed.

The evaluator moves each episode (monitor/alerting/episodes.py) and hands the ones it moved here, with
the check's other firing episodes; :func:`~monitor.alerting.incidents.incident_changes` says which
incident each belongs to and what it owes (``firing``, ``updated``, ``resolved``), and this module
writes that down: the message (the worst episode's, listing the others worst first) and one pending
notification per receiver, in the run's transaction. Receivers are those the routing tree gives for
the incident's labels and severity now (monitor/alerting/routing.py), and whoever was told of the
incident before; a route's ``group_by`` and ``repeat`` go with each notification, for the outbox.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from monitor.alerting.incidents import EpisodeNow, incident_changes
from monitor.alerting.routing import Addressee, addressees
from monitor.alerting.rules import SEVERITY_RANK, Observation, RuleSpec
from monitor.checks import has_report
from monitor.checks.base import FAILING_RULE, CheckSpec
from monitor.config.durations import format_duration
from monitor.config.models import DaemonConfig, ModelConfig
from monitor.daemon.judging import WindowResult, kept_values
from monitor.daemon.results import RunResult
from monitor.notifiers.message import TOP_FEATURES, AlertMessage, format_number
from monitor.notifiers.registry import Receivers
from monitor.storage.tables import Alert, CheckRun, Notification, fired_run, table

log = logging.getLogger(__name__)


@dataclass
class Moved:
    """An episode of the check as this run left it: the observation it was judged on (None for a firing
    one this run did not judge), what the run did that is told, and what it was before."""

    alert: Alert
    observation: Observation | None
    change: str | None = None  # firing, updated, resolved
    was_state: str = ""
    was_severity: str = ""


class Teller:
    def __init__(
        self, config: DaemonConfig, receivers: Receivers, evidence_url: Callable[[int], str | None] | None = None
    ) -> None:
        self.config = config
        self.receivers = receivers
        self.routes = [route.rule() for route in config.routes]
        # The link to a run's evidence report (the daemon's, which builds them); None: no links.
        self.evidence_url = evidence_url

    def tell(
        self, session: Session, model: ModelConfig, check: CheckSpec, result: RunResult, moved: list[Moved], at: datetime
    ) -> None:
        """Owe each incident of the check that this run changed one message per receiver."""
        for m in moved:  # a firing episode this run did not judge is shown as it was last judged
            if m.observation is None:
                m.observation = _as_last_judged(check, m.alert)
        by_id = {m.alert.id: m for m in moved}
        now = [
            EpisodeNow(
                m.alert.id,
                m.alert.incident_id,
                m.alert.state,
                m.alert.severity,
                m.alert.feature,
                m.alert.last_value if m.alert.last_value is not None else math.nan,
                m.alert.threshold,
                m.change,
                m.observation is not None,
            )
            for m in moved
        ]
        for change in incident_changes(now):
            for alert_id in change.joined:
                by_id[alert_id].alert.incident_id = change.incident_id
            members = [by_id[i] for i in change.firing + change.resolved]
            head = by_id[change.headline]
            if head.observation is None:  # the worst one was not judged this run: the worst that was
                head = next(m for m in members if m.observation is not None)
            assert head.observation is not None
            before = [m.was_severity for m in members if m.was_state == "firing"]
            was = max(before, key=lambda s: SEVERITY_RANK.get(s, -1)) if before else None
            message = self.message(model, check, head.alert, head.observation, result, change.event)
            others = [_also(by_id[i].alert, "firing") for i in change.firing if i != head.alert.id] + [
                _also(by_id[i].alert, "resolved") for i in change.resolved if i != head.alert.id
            ]
            message = dataclasses.replace(
                message,
                alert_id=change.incident_id,
                was=was if change.event == "updated" and was != head.alert.severity else None,
                also=others,
            )
            if (evidence := self._evidence_link(session, check, head.alert)) is not None:
                message = dataclasses.replace(message, links={**message.links, "evidence": evidence})
            self._enqueue(session, {**model.labels, **check.labels}, change.incident_id, head.alert, message, at)

    def _evidence_link(self, session: Session, check: CheckSpec, alert: Alert) -> str | None:
        """The link to the evidence of the run that fired ``alert`` (every message of the episode links
        it, the resolution too), for a kind with a report."""
        if self.evidence_url is None or alert.fired is None or not has_report(check, alert.rule):
            return None
        runs = table(CheckRun)
        run_id = session.scalar(sa.select(runs.c.id).where(fired_run(runs, alert)).order_by(runs.c.id.desc()).limit(1))
        return self.evidence_url(run_id) if run_id is not None else None

    def message(
        self,
        model: ModelConfig,
        check: CheckSpec,
        alert: Alert,
        observation: Observation,
        result: RunResult,
        event: str,
        was: str | None = None,
    ) -> AlertMessage:
        features = result.evaluation.evidence.get("features", [])
        drifted = [
            {k: f[k] for k in ("feature", "score", "method", "threshold", "calibrated", "effect") if k in f}
            for f in features
            if f.get("drifted")
        ]
        owner = self.config.owners.get(model.owner)
        rule = observation.rule

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        # A rule over its own windows tells of those (the first, the long one, gives the bounds).
        windows = {w.window: w for w in result.windows}
        over = [windows[w] for w in rule.windows if w in windows]
        window, start, end = format_duration(check.window), result.window_start, result.window_end
        sample_size = result.evaluation.sample_size
        if over:
            window = " and ".join(format_duration(w.window) for w in over)
            start, end, sample_size = over[0].start, over[0].end, over[0].windowed.sample_size
        if rule.id == FAILING_RULE:  # of the check's runs, not of rows in a window: no window line
            window = ""
        return AlertMessage(
            alert_id=alert.id,
            event=event,
            model=model.model,
            check=check.name,
            kind=check.kind,
            owner=model.owner,
            severity=alert.severity,
            rule=alert.rule,
            metric=observation.rule.when.metric,
            value=observation.value,
            threshold=alert.threshold,
            started=alert.started.isoformat(),
            fired=iso(alert.fired),
            resolved=iso(alert.resolved),
            window=window,
            window_start=start.isoformat(),
            window_end=end.isoformat(),
            sample_size=sample_size,
            feature=alert.feature,
            mentions=list(owner.mention) if owner else [],
            top_features=drifted[:TOP_FEATURES],
            skipped_features=[
                {"feature": f["feature"], "reason": f["reason"]}
                for f in result.evaluation.evidence.get("skipped", [])[:TOP_FEATURES]
            ],
            links={name: str(url) for name, url in check.links.model_dump().items() if url},
            anchor=rule.when.anchor,
            anchor_value=observation.anchor,
            band=list(observation.band) if observation.band is not None else None,
            factor=rule.when.factor,
            offset=rule.when.threshold if rule.when.anchor else 0.0,
            baseline=format_duration(rule.baseline_period) if rule.uses("baseline") else None,
            resolve_when=rule.resolve_when.text if rule.resolve_when else None,
            margin=rule.margin.value if rule.margin else None,
            details=details_of(check, rule, over, result),
            model_version=result.model_version,
            was=was,
        )

    def _enqueue(
        self, session: Session, own: dict[str, str], incident_id: int, head: Alert, message: AlertMessage, now: datetime
    ) -> None:
        labels = {**own, "severity": head.severity, "model": head.model, "check": head.check,
                  "owner": head.owner}  # fmt: skip
        told = addressees(head.owner, labels, self.routes, self._receivers_of)
        if any(a.unfiltered for a in told):
            log.warning(
                "a route's via leaves %s/%s with no receiver of those kinds: told on all its owners' receivers instead",
                head.model, head.check,
            )  # fmt: skip
        if message.event != "firing":  # who was told of the incident hears how it goes on, whatever its severity now
            before = sa.select(Notification.receiver).where(Notification.alert_id == incident_id).distinct()
            routed = {a.receiver: a for a in told}
            names = dict.fromkeys([*sorted(session.scalars(before)), *routed])
            told = [routed.get(name) or Addressee(name) for name in names]
        for to in told:
            # A pager is never kept waiting for a group: it gets each incident as its own event anyway.
            grouped = message.event == "firing" and to.group is not None and self.receivers.bundles(to.receiver)
            session.add(
                Notification.pending(
                    incident_id, message.event, to.receiver, message.to_dict(), now,
                    due=self._group_due(session, to, now) if grouped else None,
                    group_key=to.group if grouped else None,
                    repeat_s=to.repeat.total_seconds() if to.repeat is not None else None,
                )
            )  # fmt: skip

    def _group_due(self, session: Session, to: Addressee, now: datetime) -> datetime:
        """When a grouped firing goes: with its group, when one is waiting for this receiver; else at
        the end of its own wait (as in Alertmanager, a group waits from its first alert)."""
        waiting = session.scalar(
            sa.select(sa.func.min(Notification.next_attempt)).where(
                Notification.receiver == to.receiver,
                Notification.group_key == to.group,
                Notification.status == "pending",
                Notification.event == "firing",
                Notification.next_attempt > now,
            )
        )
        return waiting or now + (to.group_wait or timedelta(0))

    def _receivers_of(self, owner: str) -> list[tuple[str, str]]:
        return [(r.name, r.kind) for r in self.receivers.of(owner)]


def _as_last_judged(check: CheckSpec, alert: Alert) -> Observation | None:
    """The observation an episode's row stands for (its rung's rule, its last value and threshold), for
    a firing episode this run did not judge (its check errored, its feature had no value); None when
    its rule is no longer the check's."""
    rules = check.rules
    rule = next((r for r in rules if r.when.text == alert.rule), None) or next(
        (r for r in rules if r.key == alert.rule_key), None
    )
    if rule is None:
        return None
    value = alert.last_value if alert.last_value is not None else math.nan
    return Observation(rule, alert.feature, value, True, timedelta(0), alert.threshold, False)


def _also(alert: Alert, state: str) -> dict:
    """Another episode of the incident, as its message lists it."""
    value = alert.last_value if alert.last_value is not None else math.nan
    return {"rule": alert.rule, "feature": alert.feature, "severity": alert.severity, "value": value,
            "threshold": alert.threshold, "state": state}  # fmt: skip


def details_of(check: CheckSpec, rule: RuleSpec, over: list[WindowResult], result: RunResult) -> list[str]:
    """What else an alert says: the rule's metric over each of its windows when it has several, the kept
    values (an SLO's budget), the kind's own notes (freshness's newest row), and what went wrong in a run
    that is not an error (a probe's failed attempt)."""
    out = []
    metric = rule.when.metric
    if len(over) > 1:
        each = ", ".join(f"{format_number(w.value(metric))} over {format_duration(w.window)}" for w in over)
        out.append(f"{metric}: {each}; the rule holds while each is {rule.when.op} {format_number(rule.when.threshold)}")
    for value in kept_values(check, result.windows):
        span = next(w.window for w in result.windows if value in w.windowed.values)
        out.append(f"{value.metric}: {format_number(value.value)} over the last {format_duration(span)}")
    out.extend(result.evaluation.notes)
    if result.evaluation.error:  # a probe's failed attempt; a failing check's error
        out.append(result.evaluation.error)
    return out
