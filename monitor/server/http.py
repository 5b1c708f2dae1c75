"""Serving the ASGI app with uvicorn on a thread of the daemon (over the guarded h11 protocol of
:mod:`monitor.server.protocol`), and stopping it cleanly."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from monitor.server.protocol import guarded_protocol


class HttpServer:
    def __init__(
        self,
        app,
        listen: str,
        *,
        header_timeout: float = 10.0,
        max_connections: int = 100,
        max_connections_per_client: int = 20,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host or "127.0.0.1"
        # h11 always, not uvicorn's "auto" (httptools when it happens to be installed): the header deadline
        # and the connection caps are built on the h11 protocol, and h11 is what a plain install has.
        protocol = guarded_protocol(
            header_timeout=header_timeout,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=self.host,
                port=int(port),
                http=protocol,
                log_level="warning",
                access_log=False,
                lifespan="off",
                loop="asyncio",
            )
        )
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Listen, then serve on a thread. The socket is bound here, so a port in use is an OSError
        raised to the caller, not a traceback printed by the server's thread."""
        port = self._server.config.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # What uvicorn sets on sockets it binds itself: without it, Nagle's algorithm and delayed ACKs
        # stall each response about 40 ms (ingest fell from ~127k to ~36k rows/s in bench/ingest.py).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {self.host}:{port}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"cannot listen on {self.host}:{self._server.config.port} (is it in use?)")
            if time.monotonic() > deadline:
                raise TimeoutError("the HTTP server did not start")
            time.sleep(0.01)

    @property
    def port(self) -> int:
        for server in self._server.servers:
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    return sock.getsockname()[1]
        return self._server.config.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
