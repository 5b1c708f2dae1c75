"""Ending episodes other than by their condition: a rule edited away, a model's file gone, a close by hand.

An episode that fired is closed with a "resolved" notification that carries the reason, sent to the
receivers its "firing" message went to, so that message is updated in place and the on-call engineer
learns why it ended. One that was only pending ends quietly, as it would by its condition. Each close
is one transaction guarded by the episode's version: if an evaluation (or a second daemon) moved the
episode meanwhile, the close is not written and the caller is told.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from monitor.alerting.episodes import OpenKey, orphaned
from monitor.alerting.ladders import ladders
from monitor.alerting.rules import canonical_condition
from monitor.checks.base import CheckSpec
from monitor.config.models import ModelConfig
from monitor.daemon.versions import splits_by_version
from monitor.notifiers import own_alerts
from monitor.notifiers.message import AlertMessage
from monitor.storage.tables import OPEN_STATES, Alert, Notification

log = logging.getLogger(__name__)


class NotOpen(Exception):
    """The episode does not exist or has already ended."""


def close_episode(engine: Engine, alert_id: int, reason: str, now: datetime) -> Alert:
    """Close one open episode with ``reason``; raises NotOpen, or StaleDataError when it moved meanwhile."""
    with Session(engine, expire_on_commit=False) as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.state not in OPEN_STATES:
            raise NotOpen(f"alert #{alert_id} " + ("does not exist" if alert is None else f"is not open (it is {alert.state})"))
        end_episode(session, alert, reason, now)
        session.commit()
        return alert


def close_orphans(
    engine: Engine, models: Mapping[str, ModelConfig], files: Mapping[str, Path], now: datetime, *, every_file_loaded: bool
) -> list[tuple[int, str]]:
    """Close the open episodes that no loaded rule can move any more; returns ``(alert id, reason)``.

    A model no file defines is closed too, but only when ``every_file_loaded``: a file that failed to
    load may be the one that defines it, and its episodes wait for it to be mended.
    """
    with Session(engine) as session:
        open_alerts = session.scalars(sa.select(Alert).where(Alert.state.in_(OPEN_STATES)).order_by(Alert.id)).all()
    closing: list[tuple[int, str]] = []
    by_model: dict[str, list[Alert]] = {}
    for alert in open_alerts:
        by_model.setdefault(alert.model, []).append(alert)
    for name, alerts in by_model.items():
        if name == own_alerts.MODEL:  # monitor's own (a receiver failing): no file defines them, delivery ends them
            continue
        model = models.get(name)
        if model is None:
            if every_file_loaded:
                closing += [(a.id, f"model {name!r} removed: no check file defines it") for a in alerts]
            continue
        rules = {check.name: [ladder.identity for ladder in ladders(check.rules)] for check in model.checks}
        features = model.source.features if model.source else []
        keys = [OpenKey(a.id, a.check, a.rule_key, canonical_condition(a.rule), a.feature) for a in alerts]
        orphans = [(alert_id, f"{why} in {files[name]}") for alert_id, why in orphaned(keys, rules, features)]
        closing += orphans
        checks = {check.name: check for check in model.checks}
        ended = {alert_id for alert_id, _ in orphans}
        for alert in alerts:
            check = checks.get(alert.check)
            why = version_orphaned(alert, check) if check is not None and alert.id not in ended else None
            if why:
                closing.append((alert.id, f"{why} in {files[name]}"))
    closed = []
    for alert_id, reason in closing:
        try:
            close_episode(engine, alert_id, reason, now)
        except (NotOpen, StaleDataError) as exc:  # moved meanwhile: whoever moved it knows the rule
            log.info("alert #%s not closed (%s)", alert_id, exc)
            continue
        log.warning("alert #%s closed: %s", alert_id, reason)
        closed.append((alert_id, reason))
    return closed


def version_orphaned(alert: Alert, check: CheckSpec) -> str | None:
    """Why an open episode cannot move any more because its check's split by model version changed:
    an episode of one version on a check that no longer splits, or one of all versions on a check that
    now does (its episodes are each version's own). The evaluator ends the latter as it runs, too."""
    splits = splits_by_version(check)
    if alert.model_version and not splits:
        return f"check {check.name!r} no longer splits by model_version (this episode was of {alert.model_version})"
    if not alert.model_version and splits:
        return f"check {check.name!r} is now evaluated per model_version: its episodes are each version's own"
    return None


def end_episode(session: Session, alert: Alert, reason: str, now: datetime) -> None:
    """End an open episode with ``reason`` in the caller's transaction, and owe its incident's receivers
    the news when it had fired: "resolved" when it was the incident's last firing episode, else
    "updated"; raises StaleDataError when it moved meanwhile."""
    was_firing = alert.state == "firing"
    alert.state, alert.resolved, alert.updated, alert.reason = "resolved", now, now, reason
    session.flush()  # the version check: StaleDataError if another writer moved the episode
    if not was_firing:
        return
    incident = alert.incident_id if alert.incident_id is not None else alert.id
    still = session.scalar(
        sa.select(sa.func.count()).where(Alert.incident_id == incident, Alert.state == "firing", Alert.id != alert.id)
    )
    firing = session.scalars(
        sa.select(Notification)
        .where(Notification.alert_id == incident, Notification.event.in_(("firing", "updated")))
        .order_by(Notification.id.desc())
    ).all()
    latest: dict[str, Notification] = {}
    for row in firing:
        latest.setdefault(row.receiver, row)
    for receiver, row in latest.items():
        try:
            told = AlertMessage.from_dict(row.payload)
        except TypeError:  # written by another version: it cannot be the base of the closing notice
            log.error("alert #%s: the firing message to %s cannot be read; no closing notice is sent", alert.id, receiver)
            continue
        if still:  # the incident goes on: its message says this episode ended, and why
            where = f" [{alert.feature}]" if alert.feature else ""
            also = [{**other, "state": "resolved"} if (other["rule"], other["feature"]) == (alert.rule, alert.feature) else other
                    for other in told.also]  # fmt: skip
            closed = f"closed: {alert.rule}{where}: {reason}"
            message = dataclasses.replace(told, event="updated", was=None, also=also, details=[*told.details, closed])
        else:
            message = dataclasses.replace(told, event="resolved", resolved=now.isoformat(), reason=reason)
            alert.summary = message.subject
        session.add(Notification.pending(incident, message.event, receiver, message.to_dict(), now))
