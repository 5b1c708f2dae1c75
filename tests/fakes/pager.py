"""Receivers' peers on loopback: an HTTP endpoint taking webhook events, and an SMTP server.

``PagerEndpoint`` is a real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port)
that keeps every POST (its path, headers and JSON body) and answers 202, as PagerDuty's Events API
does, or what a test scripts with ``fail_next(status, times=1, retry_after=None)``.

``MailServer`` is aiosmtpd's ``Controller`` on 127.0.0.1: every mail it accepts is parsed and kept
in ``mails``; ``fail_next(reply)`` answers the next DATA with that reply instead (``451 ...`` a
temporary failure, ``550 ...`` a permanent one); ``stop()`` and ``restart()`` take it down and up.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict
    status: int


@dataclass
class PagerEndpoint:
    received: list[Received] = field(default_factory=list)
    _faults: list[tuple[int, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PagerEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint._lock:
                    status, retry_after = endpoint._faults.pop(0) if endpoint._faults else (202, None)
                    endpoint.received.append(Received(self.path, dict(self.headers), json.loads(raw), status))
                answer = json.dumps({"status": "success" if status == 202 else "error", "message": "Event processed"})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2/enqueue"

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self._faults.extend([(status, retry_after)] * times)

    def events(self) -> list[dict]:
        """The bodies of the events it accepted (answered 2xx)."""
        return [r.body for r in self.received if 200 <= r.status < 300]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MailServer:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.mails: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._faults: list[str] = []
        self._lock = threading.Lock()
        with socket.socket() as probe:  # aiosmtpd confirms its start by connecting: it needs a real port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            if self._faults:
                return self._faults.pop(0)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.mails.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def fail_next(self, reply: str, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([reply] * times)

    def start(self) -> MailServer:
        self.controller.start()
        return self

    def restart(self) -> None:
        """Up again on the same port, after ``stop()`` (a Controller does not start twice)."""
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.controller.port)
        self.controller.start()

    @property
    def port(self) -> int:
        return self.controller.port

    def stop(self) -> None:
        self.controller.stop()
