"""Running the app with uvicorn, hardened against slow and half-open clients.

uvicorn has no timeout on reading request headers: a client that sends half a request
line and waits holds a connection (and a file descriptor) forever, and some thousand of
them make the server unreachable (slowloris). `run` serves over `GuardedH11Protocol`:

- a connection must complete its request headers within `header_timeout` seconds of
  opening, or of its previous response, or it is closed;
- at most `max_connections` connections are open (kept below the file-descriptor
  limit): one more evicts the oldest connection still waiting for its headers, or is
  closed at once when every connection is busy with a request;
- headers are bounded by h11 (16 KiB); no `server` header; no access log (request lines
  may carry credentials).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.errors import BadInput

log = logging.getLogger("modelwatch.serve")

HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000
FD_RESERVE = 64  # descriptors kept free for the database, logs and the listening socket


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read deadline and a connection cap."""

    header_timeout: float = HEADER_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    _deadline: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # monotonic time it began waiting for headers

    # -- waiting for request headers -----------------------------------------------------
    def _await_headers(self) -> None:
        self._stop_waiting()
        self._waiting_since = time.monotonic()
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_since = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self._waiting_since is not None:
            self._drop()

    def _drop(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()  # connection_lost tells h11

    # -- the protocol interface ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self.max_connections:
            self._evict()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self._stop_waiting()

    def on_response_complete(self) -> None:
        # armed first: a pipelined request handled below stops it again
        self._await_headers()
        super().on_response_complete()

    def _evict(self) -> None:
        """Over the cap: close the connection that has waited longest for its headers,
        this one if every other is busy with a request."""
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c._waiting_since is not None
        ]
        oldest = min(waiting, key=lambda c: c._waiting_since or 0.0, default=self)
        oldest._drop()


def connection_cap(requested: int) -> int:
    """`requested`, lowered to stay below the process's file-descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - FD_RESERVE))


def config(
    app: Any,
    *,
    host: str,
    port: int,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    log_level: str = "warning",
) -> uvicorn.Config:
    """The uvicorn configuration `run` uses (tests start a `uvicorn.Server` from it)."""
    if header_timeout <= 0:
        raise ValueError("header_timeout must be positive")
    cap = connection_cap(max_connections)
    protocol = type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": float(header_timeout), "max_connections": cap},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        server_header=False,
        access_log=False,
        log_level=log_level,
        # a backstop: connections are capped by the protocol, so this only answers 503
        # while evicted connections are still closing
        limit_concurrency=2 * cap,
        backlog=min(cap, 1024),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop signal (SIGINT, SIGTERM) ends `run()` like a
    normal return instead of being raised again once the server is down: the caller
    (`modelwatch up`) still has its own work to finish, and a requested stop is exit 0."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def bind(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), so the caller learns the
    real port, and a port in use, before anything is announced."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def run(
    app: Any,
    *,
    host: str,
    port: int,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    log_level: str = "warning",
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve `app` on host:port until interrupted (SIGINT or SIGTERM: a graceful stop).
    `on_ready(host, port)` is called once the socket listens, with the real port."""
    cfg = config(
        app,
        host=host,
        port=port,
        header_timeout=header_timeout,
        max_connections=max_connections,
        log_level=log_level,
    )
    sock = bind(host, port, backlog=cfg.backlog)
    if on_ready is not None:
        on_ready(host, sock.getsockname()[1])
    try:
        _Server(cfg).run(sockets=[sock])
    finally:
        sock.close()
