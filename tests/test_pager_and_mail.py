"""The webhook (PagerDuty Events v2 shape) and e-mail receivers end to end: a project on disk whose owner
has both, the real evaluator and outbox, an HTTP endpoint and an SMTP server (aiosmtpd) on loopback
(tests/fakes/pager.py), and a FixedClock.

- A drift fires and resolves: the webhook gets a trigger, then a resolve, with one dedup_key and the
  routing key; the mail server gets a mail for each, with the alert's fields in a text and an escaped
  HTML part, threaded by episode.
- 429/5xx and a 4xx mail reply are retried and delivered later, once; another 4xx or a 5xx mail reply
  fails for good, at its first attempt.
- The URL and the routing key are in no row and no log line.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.project import Project
from monitor.notifiers.outbox import Outbox, episode_key
from monitor.notifiers.registry import Receivers
from monitor.storage import db
from monitor.storage.tables import DeliveryAttempt
from tests.deployments import ROWS, Pipeline
from tests.factories import T0, live_frame, write_project
from tests.fakes.pager import MailServer, PagerEndpoint

ROUTING_KEY = "R0UTING-KEY-5f1e2d"


@pytest.fixture
def mail():
    server = MailServer().start()
    yield server
    server.stop()


def build(tmp_path, engine: Engine, *, pager: PagerEndpoint | None = None, mail: MailServer | None = None) -> Pipeline:
    owner: dict = {"mention": ["@dana"]}
    notifiers: dict = {}
    if pager is not None:
        owner["webhook"] = {"url": pager.url, "routing_key": ROUTING_KEY}
    if mail is not None:
        owner["email"] = ["oncall@example.com", "dana@example.com"]
        notifiers["email"] = {"host": "127.0.0.1", "port": mail.port, "security": "none", "from": "monitor@example.com"}
    config = write_project(tmp_path, live=live_frame(ROWS, drift=True), owners={"fraud-team": owner}, notifiers=notifiers or None)
    project = Project.load(config)
    assert not project.checks.issues, project.checks.issues
    clock = FixedClock(T0)
    return Pipeline(
        project, engine, clock, Evaluator(engine, project.config, clock), Outbox(engine, Receivers(project.config), clock)
    )


def test_a_webhook_gets_a_trigger_then_a_resolve_with_one_dedup_key(tmp_path, sqlite_engine, pager, caplog):
    caplog.set_level(logging.DEBUG)
    for library in ("httpx", "httpcore"):  # as `monitor` sets them: httpx logs each request's URL at INFO
        caplog.set_level(logging.WARNING, logger=library)
    p = build(tmp_path, sqlite_engine, pager=pager)
    assert p.evaluate().outcome == "breach"
    assert p.outbox.deliver_due() == 1
    assert p.resolve().outcome == "ok"
    assert p.outbox.deliver_due() == 1

    trigger, resolve = pager.events()
    [alert_id] = {n.alert_id for n in p.notifications()}
    dedup = episode_key(db.installation_id(sqlite_engine), alert_id)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == dedup
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY
    payload = trigger["payload"]
    assert payload["summary"] == "[FIRING critical] fraud-scorer / feature-drift: drift_share = 0.6667"
    assert (payload["severity"], payload["source"], payload["component"], payload["group"], payload["class"]) == (
        "critical",
        "monitor/fraud-scorer/feature-drift",
        "fraud-scorer",
        "feature-drift",
        "drift",
    )
    details = payload["custom_details"]
    assert (details["rule"], details["threshold"], details["sample_size"], details["owner"]) == (
        "drift_share > 0.3",
        0.3,
        ROWS,
        "fraud-team",
    )
    assert "drifted features, worst first: amount (" in details["text"]
    assert resolve["payload"]["summary"].startswith("[RESOLVED] fraud-scorer / feature-drift")
    assert [r.path for r in pager.received] == ["/v2/enqueue"] * 2

    rows = p.notifications()
    assert [(n.event, n.receiver, n.status, n.attempts) for n in rows] == [
        ("firing", "fraud-team/webhook", "sent", 1),
        ("resolved", "fraud-team/webhook", "sent", 1),
    ]
    # The URL (its port is the only part that is ours) and the routing key are in no row and no log line.
    stored = " ".join(str(n.payload) + str(n.error) + str(n.message_id) for n in rows)
    assert ROUTING_KEY not in stored and pager.url not in stored
    assert ROUTING_KEY not in caplog.text and pager.url not in caplog.text


def test_a_webhook_answering_429_and_500_is_retried_and_a_400_is_not(tmp_path, sqlite_engine, pager):
    p = build(tmp_path, sqlite_engine, pager=pager)
    pager.fail_next(429, retry_after="30")
    pager.fail_next(503)
    p.evaluate()
    assert p.outbox.deliver_due() == 0
    [row] = p.notifications()
    assert (row.status, row.attempts, row.error) == (
        "pending",
        1,
        'webhook answered HTTP 429: {"status": "error", "message": "Event processed"}',
    )
    assert row.next_attempt >= T0 + timedelta(seconds=30)  # Retry-After is waited out
    p.clock.advance(timedelta(seconds=30))
    assert p.outbox.deliver_due() == 0  # the 503
    p.clock.advance(timedelta(minutes=5))
    assert p.outbox.deliver_due() == 1
    assert len(pager.events()) == 1 and [r.status for r in pager.received] == [429, 503, 202]
    with Session(sqlite_engine) as session:  # every attempt is kept, for `monitor alerts show`
        attempts = session.scalars(sa.select(DeliveryAttempt).where(DeliveryAttempt.notification_id == row.id)).all()
    assert [(a.outcome, (a.error or "")[:25]) for a in attempts] == [
        ("retry", "webhook answered HTTP 429"),
        ("retry", "webhook answered HTTP 503"),
        ("sent", ""),
    ]

    pager.fail_next(400)
    p.resolve()
    assert p.outbox.deliver_due() == 1  # not the resolution: the owner's console hears the webhook fails for good
    resolved = [n for n in p.notifications() if n.receiver == "fraud-team/webhook"][-1]
    assert (resolved.status, resolved.attempts) == ("failed", 1)
    assert resolved.error.startswith("webhook answered HTTP 400")
    p.clock.advance(timedelta(hours=1))
    assert p.outbox.deliver_due() == 0 and len(pager.received) == 4  # not retried


def test_an_smtp_server_receives_the_mail_with_the_alerts_fields_threaded_by_episode(tmp_path, sqlite_engine, mail):
    p = build(tmp_path, sqlite_engine, mail=mail)
    p.evaluate()
    assert p.outbox.deliver_due() == 1
    p.resolve()
    assert p.outbox.deliver_due() == 1

    firing, resolved = mail.mails
    assert mail.envelopes == [("monitor@example.com", ["oncall@example.com", "dana@example.com"])] * 2
    assert firing["Subject"] == "[FIRING critical] fraud-scorer / feature-drift: drift_share = 0.6667"
    assert firing["From"] == "monitor@example.com" and firing["To"] == "oncall@example.com, dana@example.com"
    assert resolved["Subject"].startswith("[RESOLVED] fraud-scorer / feature-drift")
    rows = p.notifications()
    installation = db.installation_id(sqlite_engine)
    episode = f"<{episode_key(installation, rows[0].alert_id)}@monitor>"
    assert firing["References"] == resolved["References"] == resolved["In-Reply-To"] == episode
    assert firing["Message-ID"] == f"<monitor-{installation}-{rows[0].id}@monitor>" == rows[0].message_id
    text = firing.get_body(("plain",)).get_content()
    assert "rule: drift_share > 0.3 (threshold 0.3), severity critical" in text
    assert "window: last 1h (2026-11-25 11:00:00 UTC to 2026-11-25 12:00:00 UTC), 1,200 rows" in text
    assert "owner: fraud-team @dana" in text
    page = firing.get_body(("html",)).get_content()
    assert "<li>rule: drift_share &gt; 0.3 (threshold 0.3), severity critical</li>" in page  # escaped
    assert "drifted features, worst first: amount (" in page
    assert [(n.receiver, n.status) for n in rows] == [("fraud-team/email", "sent")] * 2


def test_a_temporary_mail_failure_is_retried_and_a_refused_one_is_not(tmp_path, sqlite_engine, mail):
    p = build(tmp_path, sqlite_engine, mail=mail)
    mail.fail_next("451 4.3.0 try again later")
    p.evaluate()
    assert p.outbox.deliver_due() == 0
    [row] = p.notifications()
    assert (row.status, row.error) == ("pending", "the mail server answered 451: 4.3.0 try again later")
    p.clock.advance(timedelta(minutes=1))
    assert p.outbox.deliver_due() == 1 and len(mail.mails) == 1

    mail.fail_next("550 5.7.1 relaying denied")
    p.resolve()
    assert p.outbox.deliver_due() == 1  # the console's news that e-mail fails for good
    refused = [n for n in p.notifications() if n.receiver == "fraud-team/email"][-1]
    assert (refused.status, refused.attempts, refused.error) == (
        "failed",
        1,
        "the mail server answered 550: 5.7.1 relaying denied",
    )


def test_a_mail_server_that_is_down_is_retried_until_it_is_up(tmp_path, sqlite_engine, mail):
    p = build(tmp_path, sqlite_engine, mail=mail)
    mail.stop()
    p.evaluate()
    assert p.outbox.deliver_due() == 0
    [row] = p.notifications()
    assert row.status == "pending" and row.error.startswith("the mail server is unreachable: ConnectionRefusedError")
    mail.restart()
    p.clock.advance(timedelta(minutes=1))
    assert p.outbox.deliver_due() == 1 and len(mail.mails) == 1


def test_an_endpoint_echoing_the_url_or_key_in_any_form_or_across_the_cut_leaves_no_part_of_them_in_the_error():
    import http.server
    import json
    import threading
    from urllib.parse import quote

    from monitor.config.models import Webhook
    from monitor.notifiers.message import AlertMessage
    from monitor.notifiers.webhook import MAX_ERROR, WebhookNotifier

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=S3CRET-T0KEN"
            answer = "x" * (MAX_ERROR - 10) + ROUTING_KEY + " " + json.dumps(url).replace("/", "\\/") + " " + quote(url, safe="")
            raw = answer.encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=S3CRET-T0KEN"
        notifier = WebhookNotifier({"fraud-team": Webhook(url=url, routing_key=ROUTING_KEY)})
        message = AlertMessage(1, "firing", "m", "c", "drift", "fraud-team", "critical", "x > 1", "x", 2.0, 1.0, T0.isoformat(),
                               "1h", T0.isoformat(), T0.isoformat(), 10)  # fmt: skip
        delivery = notifier.send("fraud-team", message, "key", None)
        assert not delivery.ok and delivery.error is not None
        for part in ("R0UTING", "KEY-5f1e2d", "S3CRET", "T0KEN"):
            assert part not in delivery.error
        # Every form of the URL: the JSON-escaped and the percent-encoded ones (past the cut, or not).
        long_answer = notifier.send("fraud-team", message, "key", None).error
        assert "***" in long_answer
    finally:
        server.shutdown()
        server.server_close()


def test_a_line_break_in_a_model_version_does_not_break_the_mails_subject():
    from monitor.notifiers.mail import mail_of
    from monitor.notifiers.message import AlertMessage

    message = AlertMessage(1, "firing", "m", "c", "drift", "fraud-team", "critical", "x > 1", "x", 2.0, 1.0, T0.isoformat(), "1h",
                           T0.isoformat(), T0.isoformat(), 10, model_version="v2\r\nBcc: x@example.com")  # fmt: skip
    mail = mail_of(message, "monitor@example.com", ["oncall@example.com"], "key", "episode")
    assert mail["Subject"] == "[FIRING critical] m / c [model_version v2\\u000d\\u000aBcc: x@example.com]: x = 2"
    assert mail["Bcc"] is None
    assert b"\r\nBcc:" not in mail.as_bytes()
