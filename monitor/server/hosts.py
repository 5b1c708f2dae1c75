"""Which ``Host`` and ``Origin`` headers a request to the daemon may carry.

A request is refused unless its ``Host`` is an address the daemon listens on (421: DNS rebinding, a
foreign name resolving to this daemon), a name in ``server.allowed_hosts`` or ``server.public_url``'s,
and when its ``Origin`` is another site than that ``Host`` (403: a browser page posting cross-site). :class:`HostGuard`
applies the :class:`HostPolicy` to every request before it is routed.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.responses import Response

from monitor.config.models import is_loopback

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` of a Host header (or an origin's authority), the name lower-case, a bracketed IPv6
    address kept in brackets and a trailing dot dropped; None when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = value.partition(":")
        port = port_text if colon else None
    if port is not None and not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    name = name.rstrip(".")
    if not name or any(c in name for c in " /\\@?#%"):
        return None
    return name, int(port) if port else None


def url_host(url: str | None) -> list[str]:
    """The Host name of ``url`` as an ``allowed_hosts`` entry (none without one): ``server.public_url``,
    the name the daemon's links are opened at, is a name it answers to."""
    if not url:
        return []
    split = _split_host(urlsplit(url).netloc.rpartition("@")[2])
    return [split[0]] if split and "*" not in split[0] else []  # a name, never allowed_hosts' "any"


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` and ``Origin`` headers a request may carry (see the module's docstring)."""

    def __init__(self, listen_host: str, allowed: list[str]) -> None:
        listen = listen_host.lower().rstrip(".")
        self.any_host = "*" in allowed
        self.any_address = False  # listening on every interface: any IP address is one of ours
        names = {listen}
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(listen).is_unspecified:
                self.any_address = True
                names |= _LOOPBACK_NAMES | {socket.gethostname().lower()}
        if is_loopback(listen):
            names |= _LOOPBACK_NAMES
        self.names = frozenset(names)
        self.allowed = frozenset(entry.strip().lower().rstrip(".") for entry in allowed if entry.strip() != "*")
        self.listen = listen_host
        self.host_refusal = functools.lru_cache(maxsize=256)(self._host_refusal)

    def _host_refusal(self, host: str | None) -> tuple[int, str] | None:
        if self.any_host:
            return None
        if host is None:
            return 400, "no Host header"
        split = _split_host(host)
        if split is None:
            return 400, f"malformed Host header {host!r}"
        name, port = split
        if name in self.names or name in self.allowed or (port is not None and f"{name}:{port}" in self.allowed):
            return None
        if self.any_address and _ip_literal(name):
            return None
        return (
            421,
            f"misdirected request: Host {host!r} is not this daemon's address ({self.listen}); a name that"
            " reaches it (a proxy, a DNS name) must be listed in server.allowed_hosts",
        )

    def origin_refusal(self, origin: str, host: str | None) -> str | None:
        """Why a request from a page at ``origin`` is refused: it is another site than ``host``."""
        scheme, sep, authority = origin.strip().lower().partition("://")
        ours = _split_host(host or "")
        theirs = _split_host(authority) if sep and "/" not in authority else None
        if ours is not None and theirs is not None and ours[0] == theirs[0]:
            origin_port = theirs[1] if theirs[1] is not None else _DEFAULT_PORTS.get(scheme)
            if ours[1] == origin_port or (ours[1] is None and theirs[1] is None):
                return None
        return f"cross-origin request refused: Origin {origin!r} is not this daemon ({host})"


class HostGuard:
    """ASGI middleware: applies a :class:`HostPolicy` to every HTTP request before it is routed."""

    def __init__(self, app: Any, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                elif name == b"origin":
                    origin = value.decode("latin-1")
            refusal = self.policy.host_refusal(host)
            if refusal is None and origin is not None:
                reason = self.policy.origin_refusal(origin, host)
                refusal = None if reason is None else (403, reason)
            if refusal is not None:
                response = Response(orjson.dumps({"error": refusal[1]}), status_code=refusal[0], media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
