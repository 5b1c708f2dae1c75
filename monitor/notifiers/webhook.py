"""Receiver ``webhook``: each state change POSTed as JSON in the PagerDuty Events API v2 shape.

A firing alert is ``event_action: trigger``, its resolution ``resolve``, both with the episode's
``dedup_key`` (the same for every delivery of one incident, unique across databases), so PagerDuty
opens one incident per monitor incident and closes it; a re-sent trigger (an update, a repeat, after a crash) updates
that incident rather than opening another. ``payload`` holds ``summary`` (the message's subject),
``severity`` (critical, warning, info), ``source`` (``monitor/MODEL/CHECK``), ``component``,
``group``, ``class`` and ``custom_details`` (the message's facts, its text among them); ``links`` the
check's runbook and dashboard. Any endpoint that takes this JSON works (Opsgenie's and Alertmanager-
style receivers map it in a few lines; docs/alerting.md).

The URL and the routing key are secrets: never in an error, a log line or a row. An answer of 2xx is
delivered; 429 (with ``Retry-After``) and 5xx, a timeout or a connection failure are retried by the
outbox; any other 4xx (a wrong key, a malformed body) needs a person and is not.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from monitor.notifiers.base import Delivery, Posted, Receiver, ReceiverKind
from monitor.notifiers.message import AlertMessage

if TYPE_CHECKING:
    from monitor.config.models import DaemonConfig, Owner, Webhook

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
MAX_SUMMARY = 1024  # PagerDuty's limit on payload.summary
MAX_ERROR = 200  # of an answer's body, in the notification's error


class WebhookNotifier:
    """Delivers to each owner's webhook; the target of a receiver is its owner (the URL stays here)."""

    def __init__(self, webhooks: dict[str, Webhook], timeout: float = TIMEOUT_S) -> None:
        self.webhooks = webhooks
        self.timeout = timeout

    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None, *, episode: str = "") -> Delivery:
        import httpx

        webhook = self.webhooks.get(target)
        if webhook is None:
            return Delivery.failed(f"owner {target!r} has no webhook in the config any more", retry=False)
        url, routing_key = webhook.url.get_secret_value(), webhook.routing_key.get_secret_value()
        body = event_of(message, episode or f"monitor-alert-{message.alert_id}", routing_key)
        headers = {"User-Agent": "monitor", "X-Monitor-Delivery": key}
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=True) as client:
                response = client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            return Delivery.failed(f"webhook did not answer within {self.timeout:g}s", retry=True)
        except httpx.HTTPError as exc:
            return Delivery.failed(_scrub(f"webhook unreachable: {type(exc).__name__}: {exc}", webhook), retry=True)
        except (httpx.InvalidURL, UnicodeError) as exc:  # the URL cannot be sent to: a person must mend it
            return Delivery.failed(f"the webhook URL cannot be used: {type(exc).__name__}", retry=False)
        status = response.status_code
        if 200 <= status < 300:
            return Delivery.sent(body["dedup_key"])
        said = _scrub(" ".join(response.text.split()), webhook)[:MAX_ERROR]  # scrubbed whole: a secret cut in two is not found
        error = f"webhook answered HTTP {status}" + (f": {said}" if said else "")
        if status == 429 or status >= 500:
            return Delivery.failed(error, retry=True, retry_after=_seconds(response.headers.get("Retry-After")))
        return Delivery.failed(error, retry=False)

    def find(self, target: str, key: str, message: AlertMessage, since: datetime, previous: Posted | None) -> Posted | None:
        # An endpoint keeps no record we can read: an in-doubt delivery is sent again, and its dedup_key
        # makes the second one an update of the same incident, not a new page.
        return None


def event_of(message: AlertMessage, dedup_key: str, routing_key: str = "") -> dict[str, Any]:
    """The PagerDuty Events API v2 event of a state change."""
    details: dict[str, Any] = {
        "model": message.model,
        "check": message.check,
        "rule": message.rule,
        "metric": message.metric,
        "value": message.value,
        "threshold": message.threshold,
        "feature": message.feature or None,
        "model_version": message.model_version or None,
        "owner": message.owner,
        "started": message.started,
        "window": f"{message.window_start} to {message.window_end}",
        "sample_size": message.sample_size,
        "alert_id": message.alert_id,
        "text": message.text(),
    }
    event: dict[str, Any] = {
        "event_action": "resolve" if message.event == "resolved" else "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": message.subject[:MAX_SUMMARY],
            "severity": message.severity if message.severity in ("critical", "warning", "info") else "error",
            "source": f"monitor/{message.model}/{message.check}",
            "component": message.model,
            "group": message.check,
            "class": message.kind,
            "timestamp": message.fired or message.started,
            "custom_details": {k: v for k, v in details.items() if v is not None},
        },
        "client": "monitor",
    }
    if routing_key:
        event["routing_key"] = routing_key
    links = [{"href": url, "text": name} for name, url in message.links.items()]
    if links:
        event["links"] = links
    return event


def _scrub(text: str, webhook: Webhook) -> str:
    r"""``text`` with the webhook's URL and key masked, as written or as an endpoint may echo them:
    JSON-escaped (``https:\/\/...``) or percent-encoded."""
    for secret in (webhook.url.get_secret_value(), webhook.routing_key.get_secret_value()):
        if secret:
            for form in {secret, secret.replace("/", "\\/"), quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, "***")
    return text


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


# -- the plug-in ------------------------------------------------------------------------------------
def _receivers(owner: str, settings: Owner, config: DaemonConfig) -> list[Receiver]:
    return [Receiver(f"{owner}/webhook", "webhook", owner)] if settings.webhook else []


def _notifier(config: DaemonConfig, stream: object) -> WebhookNotifier | None:
    webhooks = {name: owner.webhook for name, owner in config.owners.items() if owner.webhook}
    return WebhookNotifier(webhooks) if webhooks else None


KIND = ReceiverKind("webhook", _receivers, _notifier, bundles=False)
