"""uvicorn's HTTP/1.1 protocol (h11) with what it lacks against slow or too many clients.

uvicorn closes a connection idle between requests (``timeout_keep_alive``), but has no timeout for
the headers of a request: a connection that sends half a request line and then nothing stays open for
good, and so does one that never sends a byte. Here a request's headers must be complete within
``header_timeout`` of the moment the connection may send them (it opened, or the previous answer was
sent), else the connection is closed. The deadline is one for the whole head, not one per byte: a
client trickling a byte a second would otherwise never be cut off. A connection closed without having
sent a byte of a request is only idle (a browser's preconnect, a keep-alive connection between
requests when ``header_timeout`` is shorter than uvicorn's keep-alive): that is logged at debug level;
a head begun and not finished is a warning.

The number of open connections is capped too (``max_connections``): one past the cap is closed as
soon as it is accepted. With the per-client limit of the app this is what bounds the memory of bodies
being received at once (each connection carries at most one request at a time; see docs/ingest.md).

The body is the app's to time (:mod:`monitor.server.app`), as only the app can answer it with a 408.
Each kind of refusal is logged once, then at most once a minute with a count (:class:`LogThrottle`).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.health import LogThrottle

log = logging.getLogger("monitor.server")


def guarded_protocol(*, header_timeout: float, max_connections: int, throttle: LogThrottle) -> type[GuardedH11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for these settings."""

    class Configured(GuardedH11Protocol):
        pass

    Configured.header_timeout = header_timeout
    Configured.max_connections = max_connections
    Configured.throttle = throttle
    return Configured


class GuardedH11Protocol(H11Protocol):
    """:class:`H11Protocol` with a header deadline and a cap on open connections.

    uvicorn makes one per connection with its own arguments, so the settings are class attributes of
    the subclass :func:`guarded_protocol` makes for a server."""

    header_timeout: float
    max_connections: int
    throttle: LogThrottle
    _header_deadline: asyncio.TimerHandle | None = None
    _head_begun = False  # a byte of the next request arrived while the deadline ran

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # ``connections`` holds this one already, so it is the cap's excess that is turned away.
        if len(self.connections) > self.max_connections:
            self.throttle.log(
                "too-many-connections",
                logging.WARNING,
                f"closed a connection from {self._peer()}: {self.max_connections} open already (server.max_connections)",
            )
            transport.close()
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is not None:
            self._head_begun = True
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        # uvicorn starts a new cycle once a request's headers are complete, or hands the connection to
        # its WebSocket protocol (an upgrade): either way the head is in, and this deadline is not theirs.
        if self.cycle is not cycle or self.transport.get_protocol() is not self:
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()  # may start a pipelined request already received
        # The rest of a refused body and the next request's headers must come within the deadline too.
        if self.cycle is cycle and not self.transport.is_closing():
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._head_begun = False
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            self.throttle.log(
                "slow-headers",
                logging.WARNING,
                f"closed a connection from {self._peer()}: no complete request headers within {self.header_timeout:g}s"
                " (server.header_timeout)",
            )
        else:
            log.debug(
                "closed an idle connection from %s: no request within %gs (server.header_timeout)",
                self._peer(),
                self.header_timeout,
            )
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown address"
