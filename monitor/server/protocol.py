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
So is the number open from one address (``max_connections_per_client``, the TCP peer's, never a
forwarded header's): without it one client holding idle connections, and opening them again whenever
the header deadline closes them, would keep everyone else out of the global cap.

The body is the app's to time (:mod:`monitor.server.app`), as only the app can answer it with a 408.
Each kind of refusal is logged once, then at most once a minute with a count (:class:`LogThrottle`).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.health import LogThrottle

log = logging.getLogger("monitor.server")


def guarded_protocol(*, header_timeout: float, max_connections: int, max_connections_per_client: int) -> type[GuardedH11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for these settings. A per-client cap
    above ``max_connections`` is taken as ``max_connections``."""

    class Configured(GuardedH11Protocol):
        pass

    Configured.header_timeout = header_timeout
    Configured.max_connections = max_connections
    Configured.max_connections_per_client = min(max_connections_per_client, max_connections)
    Configured.per_client = {}  # one server's: shared by its connections, as uvicorn's ``connections`` is
    Configured.throttle = LogThrottle(log)  # the server's: a kind of refusal is said once for all its connections
    return Configured


class GuardedH11Protocol(H11Protocol):
    """:class:`H11Protocol` with a header deadline, a cap on open connections and one per address.

    uvicorn makes one per connection with its own arguments, so the settings are class attributes of
    the subclass :func:`guarded_protocol` makes for a server, and so is ``per_client``, the connections
    open from each address (as uvicorn's ``connections`` is the server's, shared by its protocols)."""

    header_timeout: float
    max_connections: int
    max_connections_per_client: int
    per_client: dict[str, int]
    throttle: LogThrottle
    _header_deadline: asyncio.TimerHandle | None = None
    _head_begun = False  # a byte of the next request arrived while the deadline ran
    _counted: str | None = None  # the address this connection is counted under in ``per_client``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Every connection is counted; the count goes down in connection_lost, which asyncio calls once
        # for each (a close here included), or at once for one refused here (see _refuse).
        address = self.client[0] if self.client else ""
        self.per_client[address] = self.per_client.get(address, 0) + 1
        self._counted = address
        # ``connections`` and ``per_client`` hold this one already, so it is a cap's excess that is turned away.
        if len(self.connections) > self.max_connections:
            self.throttle.log(
                "too-many-connections",
                logging.WARNING,
                f"closed a connection from {self._peer()}: {self.max_connections} open already (server.max_connections)",
            )
            self._refuse()
            return
        if self.per_client[address] > self.max_connections_per_client:
            self.throttle.log(
                "too-many-connections-from-one-address",
                logging.WARNING,
                f"closed a connection from {self._peer()}: {self.max_connections_per_client} open already from"
                f" {address or 'that address'} (server.max_connections_per_client)",
            )
            self._refuse()
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        self._uncount()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        super().handle_websocket_upgrade(event)
        # The connection is the WebSocket protocol's now, and its connection_lost is not this one's: it
        # leaves this address's count here (the server's cap still counts it, in ``connections``).
        self._uncount()

    def _refuse(self) -> None:
        """Close this connection, just made, and leave both counts now: asyncio calls connection_lost only
        on a later turn of the loop, and a burst of connections accepted in one turn would otherwise, while
        refused, still count against the caps and turn away others (another address's, too)."""
        self.connections.discard(self)  # as uvicorn's connection_lost does; doing it twice is nothing
        self._uncount()  # and connection_lost's call finds nothing left to count down
        self.transport.close()

    def _uncount(self) -> None:
        address, self._counted = self._counted, None
        if address is None:
            return
        left = self.per_client[address] - 1
        if left:
            self.per_client[address] = left
        else:
            del self.per_client[address]  # no key stays behind for each address ever seen

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
