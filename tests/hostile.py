"""A hostile upstream on 127.0.0.1, for tests: one route per misbehaviour.

Each route is a `Route`: a status, headers and a body, sent as given (no Content-Length
or Content-Encoding is added or checked), optionally one byte at a time with a pause
(`drip`) in the headers or the body. Every drip is bounded in time and in count, and
stops as soon as the client hangs up or the server shuts down, so no test can hang on it.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import zstandard

# No drip runs longer than this, whatever the route asks for.
DRIP_LIMIT_SECONDS = 20.0
_MB = 1024 * 1024


@dataclass
class Route:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drip_body: float | None = None  # seconds between body bytes
    drip_headers: float | None = None  # seconds between header bytes
    content_length: bool = True  # send Content-Length: len(body)


class Hostile(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, routes: dict[str, Route]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = routes
        self.hits: list[str] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: Hostile

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.hits.append(path)
        route = self.server.routes.get(path, Route(404, body=b'{"success": false}'))
        lines = [f"HTTP/1.1 {route.status} Hostile"]
        headers = dict(route.headers)
        if route.content_length:
            headers.setdefault("Content-Length", str(len(route.body)))
        headers.setdefault("Connection", "close")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.close_connection = True
        try:
            self._send(head, route.drip_headers)
            self._send(route.body, route.drip_body)
        except OSError:  # the client hung up: that is what a limit is for
            pass

    def _send(self, data: bytes, drip: float | None) -> None:
        if drip is None:
            self.wfile.write(data)
            self.wfile.flush()
            return
        ends = time.monotonic() + DRIP_LIMIT_SECONDS
        for i in range(len(data)):
            if self.server.stopping.is_set() or time.monotonic() > ends:
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            if self.server.stopping.wait(drip):
                return


# ---------------------------------------------------------------------- hostile bodies


def zeros_gzip(size: int, *, layers: int = 1) -> bytes:
    """`size` zero bytes, gzip-compressed `layers` times, built without holding them."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(_MB)
    parts = []
    for _ in range(size // _MB):
        parts.append(comp.compress(chunk))
    parts.append(comp.compress(bytes(size % _MB)))
    parts.append(comp.flush())
    body = b"".join(parts)
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


def zeros_deflate(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    chunk = bytes(_MB)
    parts = [comp.compress(chunk) for _ in range(size // _MB)]
    parts += [comp.compress(bytes(size % _MB)), comp.flush()]
    return b"".join(parts)


def zeros_zstd(size: int) -> bytes:
    comp = zstandard.ZstdCompressor(level=19).compressobj()
    chunk = bytes(_MB)
    parts = [comp.compress(chunk) for _ in range(size // _MB)]
    parts += [comp.compress(bytes(size % _MB)), comp.flush()]
    return b"".join(parts)
