"""A scripted upstream catalog server on 127.0.0.1, for tests that need real HTTP.

It serves `/api/v1/models` like AiHubMix: a quoted ETag, `Cache-Control` with max-age,
and `304` for a matching `If-None-Match`. Tests set the body, or queue failures. Also
here: starting the installed `modelwatch serve|up` (`launch`, `wait_until_answering`) and
another process holding a store (`hold`, `held`).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import httpx

CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=300"


class LocalServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 that serves while its `with` block runs."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02})

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class Upstream(LocalServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.body = b'{"data": [], "message": "", "success": true}'
        self.failures: deque[tuple[int, bytes]] = deque()
        self.requests: list[dict[str, str]] = []
        self.cache_control = CACHE_CONTROL
        self.delay = 0.0  # seconds to wait before answering (a slow upstream)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/models"


class _Handler(BaseHTTPRequestHandler):
    server: Upstream

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(dict(self.headers.items()))
        if self.server.delay:
            time.sleep(self.server.delay)
        if self.server.failures:
            status, body = self.server.failures.popleft()
            return self._send(status, body, {"Content-Type": "text/html"})
        body = self.server.body
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Cache-Control": self.server.cache_control}
        if etag in (self.headers.get("If-None-Match") or ""):
            return self._send(304, b"", headers)
        self._send(200, body, {**headers, "Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


ANNOUNCED = re.compile(r"http://127\.0\.0\.1:(\d+)")


def launch(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """The installed `modelwatch ARGS` (`serve` or `up`, with `--port 0`) and the address
    its first line on stderr announces (it announces once it listens)."""
    proc = subprocess.Popen(
        ["modelwatch", *args], stderr=subprocess.PIPE, text=True, cwd=cwd, env=env
    )
    line = proc.stderr.readline() if proc.stderr else ""
    found = ANNOUNCED.search(line)
    if found is None:
        proc.kill()
        proc.wait()
        raise AssertionError(f"modelwatch {args[0]} announced no address: {line!r}")
    return proc, f"http://127.0.0.1:{found.group(1)}"


def wait_until_answering(base: str, *, seconds: float = 30) -> None:
    """Until `base`/healthz answers: a server announces its address once bound, but the
    first connection may still queue."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=5)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{base} never answered"
            time.sleep(0.1)


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])        # a writer (a replay, a notebook) holds the file
con.execute("SELECT count(*) FROM fetch_log").fetchall()
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(db: Path, seconds: float = 30) -> subprocess.Popen[str]:
    """Another process holding `db` (DuckDB lets one process open a file), from when this
    returns until it is killed or `seconds` pass."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


@contextmanager
def held(db: Path, seconds: float = 30) -> Iterator[subprocess.Popen[str]]:
    """`hold(db)` for the block."""
    proc = hold(db, seconds)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
