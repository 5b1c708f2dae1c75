"""Receiver ``email``: each state change as a mail to the owner's addresses, over SMTP (stdlib smtplib).

The mail has a plain-text part (the message's text, as the console prints it) and an HTML part of the
same lines, every one escaped: text from check files and data is never markup. Its ``Message-ID``
holds the delivery key; ``References`` and ``In-Reply-To`` name the episode, so a mail client threads
the firing and the resolution of one episode together. ``notifiers.email`` says how to reach the
server: STARTTLS after connecting (the default, port 587), TLS from the start (465) or neither
(loopback only, when logging in), with a login from the environment.

A 4xx answer, a timeout or a dropped connection is retried by the outbox; a 5xx answer (an address
refused, the login rejected) and a certificate that does not verify need a person and are not.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from monitor.notifiers.base import Delivery, Posted, Receiver, ReceiverKind
from monitor.notifiers.message import AlertMessage

if TYPE_CHECKING:
    from monitor.config.models import DaemonConfig, Owner, SmtpConfig

DOMAIN = "monitor"  # the right-hand side of the Message-IDs it makes


class MailNotifier:
    """Sends to each owner's addresses; the target of a receiver is its owner (the addresses stay here)."""

    def __init__(self, smtp: SmtpConfig, addresses: dict[str, list[str]]) -> None:
        self.smtp = smtp
        self.addresses = addresses

    def send(self, target: str, message: AlertMessage, key: str, previous: Posted | None, *, episode: str = "") -> Delivery:
        to = self.addresses.get(target)
        if not to:
            return Delivery.failed(f"owner {target!r} has no e-mail addresses in the config any more", retry=False)
        mail = mail_of(message, self.smtp.sender, to, key, episode)
        try:
            self._send(mail)
        except smtplib.SMTPResponseException as exc:  # the server said no: 4xx is for now, 5xx for good
            said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            return Delivery.failed(
                f"the mail server answered {exc.smtp_code}: {' '.join(said.split())}", retry=exc.smtp_code < 500
            )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return Delivery.failed(
                f"the mail server refused {', '.join(sorted(exc.recipients))} ({', '.join(map(str, codes))})",
                retry=all(code < 500 for code in codes),
            )
        except smtplib.SMTPNotSupportedError:  # asked for STARTTLS, and the server has none: a config to mend
            return Delivery.failed("the mail server does not offer STARTTLS: set notifiers.email.security", retry=False)
        except ssl.SSLCertVerificationError as exc:
            return Delivery.failed(f"the mail server's certificate does not verify: {exc.verify_message}", retry=False)
        except (smtplib.SMTPException, OSError) as exc:  # unreachable, dropped, timed out: try again later
            return Delivery.failed(f"the mail server is unreachable: {type(exc).__name__}: {exc}", retry=True)
        return Delivery.sent(mail["Message-ID"])

    def _send(self, mail: EmailMessage) -> None:
        smtp, timeout = self.smtp, self.smtp.timeout.total_seconds()
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if smtp.security == "tls":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=context)
            username = smtp.username.get_secret_value()
            if username:
                client.login(username, smtp.password.get_secret_value())
            client.send_message(mail)

    def find(self, target: str, key: str, message: AlertMessage, since: datetime, previous: Posted | None) -> Posted | None:
        # A mailbox is not ours to read: an in-doubt delivery is sent again (at least once).
        return None


def mail_of(message: AlertMessage, sender: str, to: list[str], key: str, episode: str) -> EmailMessage:
    """The mail of a state change: a text part and an escaped HTML part, threaded by incident."""
    mail = EmailMessage()
    # A line break in a header is refused by the email package (and would be an injection): one line.
    mail["Subject"] = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in message.subject)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = format_datetime(datetime.now(UTC))  # when it is sent: an update must not sort into the past
    mail["Message-ID"] = f"<{key}@{DOMAIN}>" if key else make_msgid(domain=DOMAIN)
    if episode:
        mail["References"] = mail["In-Reply-To"] = f"<{episode}@{DOMAIN}>"
        mail["X-Monitor-Episode"] = episode
    mail.set_content(message.text())
    mail.add_alternative(html_of(message), subtype="html")
    return mail


def html_of(message: AlertMessage) -> str:
    colour = (
        "#2e7d32"
        if message.event == "resolved"
        else {"critical": "#c62828", "warning": "#ef6c00"}.get(message.severity, "#1565c0")
    )
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in message.lines())
    links = "".join(f'<a href="{html.escape(url, quote=True)}">{html.escape(name)}</a> ' for name, url in message.links.items())
    return (
        "<!DOCTYPE html><html><body>"
        f'<h2 style="color:{colour}">{html.escape(message.subject)}</h2>'
        f"<ul>{lines}</ul>"
        + (f"<p>{links}</p>" if links else "")
        + f"<p><small>monitor alert #{message.alert_id}</small></p></body></html>"
    )


# -- the plug-in ------------------------------------------------------------------------------------
def _receivers(owner: str, settings: Owner, config: DaemonConfig) -> list[Receiver]:
    return [Receiver(f"{owner}/email", "email", owner)] if settings.email else []


def _notifier(config: DaemonConfig, stream: object) -> MailNotifier | None:
    smtp = config.notifiers.email
    if not smtp.host:
        return None
    return MailNotifier(smtp, {name: owner.email for name, owner in config.owners.items() if owner.email})


KIND = ReceiverKind("email", _receivers, _notifier)
