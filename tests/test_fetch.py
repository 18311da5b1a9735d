"""pipeline.fetch: conditional GET, retries, budget, size cap, token hygiene.

Two kinds of upstream, never the internet: `httpx.MockTransport` handlers for exact
scripted answers, and a real `ThreadingHTTPServer` on 127.0.0.1 serving the bundled
AiHubMix payload with an ETag and Cache-Control. No test really sleeps: `sleep` is a
list's `append`, and jitter comes from a seeded `random.Random`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pipeline
from pipeline import fetch
from pipeline.errors import BadInput, PayloadRejected, UpstreamError
from pipeline.fetch import FetchResponse, fetch_catalog, parse_max_age, retry_after_seconds

DOCS = Path(__file__).resolve().parent.parent / "data" / "aihubmix-docs"
SUCCESS = (DOCS / "docs-api-v1-models-success.json").read_bytes()
ERROR_500 = (DOCS / "docs-api-v1-models-error-500.json").read_bytes()
ERROR_400 = (DOCS / "docs-api-v1-models-error-400.json").read_bytes()
MESSAGE_500 = "服务器内部错误，请稍后重试"
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=300"
ETAG = '"' + hashlib.sha256(SUCCESS).hexdigest()[:16] + '"'
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
URL = "https://upstream.test/api/v1/models"
SEED = 1234
TOKEN = "sk-test-0123456789abcdef"


def backoff_waits(n: int, *, backoff: float = 0.5, seed: int = SEED) -> list[float]:
    """The waits fetch_catalog must request: backoff * 2**(k-1) + uniform(0, backoff)."""
    rng = random.Random(seed)
    return [backoff * 2**k + rng.uniform(0, backoff) for k in range(n)]


class Script:
    """A MockTransport handler answering from a list (the last answer repeats)."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(handler: Callable[[httpx.Request], httpx.Response], **kwargs) -> FetchResponse:
    """fetch_catalog against a MockTransport, with recorded sleeps unless given."""
    kwargs.setdefault("sleep", [].append)
    kwargs.setdefault("rng", random.Random(SEED))
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return fetch_catalog(kwargs.pop("url", URL), client=client, **kwargs)


def ok(**headers: str) -> httpx.Response:
    return httpx.Response(200, content=SUCCESS, headers={"ETag": ETAG, **headers})


def error_500() -> httpx.Response:
    return httpx.Response(500, content=ERROR_500, headers={"Content-Type": "application/json"})


# ---------------------------------------------------------------------- a real local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))
        route = self.path.split("?")[0]
        if route == "/api/v1/models":
            if self.headers.get("If-None-Match") == ETAG:
                self._send(304, b"", etag=True)
            else:
                self._send(200, SUCCESS, content_type="application/json", etag=True)
        elif route == "/flaky":
            self.server.flaky_calls += 1
            if self.server.flaky_calls <= 2:
                self._send(500, ERROR_500, content_type="application/json")
            else:
                self._send(200, SUCCESS, content_type="application/json", etag=True)
        elif route == "/html502":
            self._send(502, HTML_502, content_type="text/html")
        elif route == "/declared-big":
            self._send(200, b"x" * 5000, content_type="application/json")
        elif route == "/chunked-big":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(10):
                    self.wfile.write(b"%x\r\n%s\r\n" % (500, b"y" * 500))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client hung up once it had enough: that is the point
                self.close_connection = True
        else:
            self._send(404, b'{"success": false, "message": "not found"}')

    def _send(
        self, status: int, body: bytes, *, content_type: str | None = None, etag: bool = False
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if etag:
            self.send_header("ETag", ETAG)
            self.send_header("Cache-Control", CACHE_CONTROL)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.flaky_calls = 0

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(
        target=srv.serve_forever,
        kwargs={"poll_interval": 0.02},
        name="fetch-test-server",
        daemon=True,
    )
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def test_real_server_200_then_304(server: _Server, client: httpx.Client) -> None:
    url = server.url("/api/v1/models")
    first = fetch_catalog(url, client=client, sleep=[].append)
    assert first == FetchResponse(
        url=url, status=200, body=SUCCESS, etag=ETAG, max_age=300, attempts=1
    )
    assert first.etag is not None and first.etag.startswith('"') and first.etag.endswith('"')
    assert json.loads(first.body or b"")["success"] is True

    second = fetch_catalog(url, etag=first.etag, client=client, sleep=[].append)
    assert second == FetchResponse(
        url=url, status=304, body=None, etag=ETAG, max_age=300, attempts=1
    )
    assert not client.is_closed  # a client we were given is the caller's to close

    (_, h1), (_, h2) = server.seen
    assert "If-None-Match" not in h1
    assert h2["If-None-Match"] == ETAG
    for headers in (h1, h2):
        assert headers["Accept"] == "application/json"
        assert headers["User-Agent"] == f"modelwatch/{pipeline.__version__}"
        assert "Authorization" not in headers


def test_real_server_own_client(server: _Server) -> None:
    url = server.url("/api/v1/models")
    response = fetch_catalog(url, sleep=[].append)  # client=None: created and closed here
    assert (response.status, response.body, response.etag) == (200, SUCCESS, ETAG)


def test_real_server_500_twice_then_200(server: _Server, client: httpx.Client) -> None:
    slept: list[float] = []
    response = fetch_catalog(
        server.url("/flaky"), client=client, sleep=slept.append, rng=random.Random(SEED)
    )
    assert (response.status, response.body, response.attempts) == (200, SUCCESS, 3)
    assert slept == backoff_waits(2)
    assert [path for path, _ in server.seen] == ["/flaky"] * 3


def test_real_server_html_502_exhausts(server: _Server, client: httpx.Client) -> None:
    slept: list[float] = []
    url = server.url("/html502")
    with pytest.raises(UpstreamError) as info:
        fetch_catalog(url, client=client, sleep=slept.append, rng=random.Random(SEED))
    assert str(info.value) == f"GET {url} failed after 4 attempts: HTTP 502 Bad Gateway"
    assert info.value.status == 502  # type: ignore[attr-defined]
    assert info.value.body == HTML_502  # type: ignore[attr-defined]
    assert slept == backoff_waits(3)
    assert len(server.seen) == 4


@pytest.mark.parametrize("path", ["/declared-big", "/chunked-big"])
def test_real_server_oversize_rejected(server: _Server, client: httpx.Client, path: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        fetch_catalog(server.url(path), client=client, max_bytes=1000, sleep=[].append)
    message = str(info.value)
    assert message.startswith("body exceeds 1000 bytes (")
    assert "\n" not in message
    assert ("Content-Length 5000" in message) == (path == "/declared-big")
    assert info.value.status == 200  # type: ignore[attr-defined]
    assert info.value.body is None  # type: ignore[attr-defined]
    assert len(server.seen) == 1  # a too-large body is not retried


def test_real_connection_refused_retries_then_fails() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/v1/models"
    slept: list[float] = []
    with pytest.raises(UpstreamError) as info:
        fetch_catalog(url, max_attempts=3, sleep=slept.append, rng=random.Random(SEED))
    assert str(info.value).startswith(f"GET {url} failed after 3 attempts: ConnectError")
    assert info.value.status is None and info.value.body is None  # type: ignore[attr-defined]
    assert slept == backoff_waits(2)


# ---------------------------------------------------------------------- scripted (MockTransport)


def test_headers_sent_and_etag_returned_as_sent() -> None:
    script = Script(httpx.Response(304, headers={"ETag": 'W/"v1"', "Cache-Control": "max-age=60"}))
    response = run(script, etag='W/"v1"', token=TOKEN)
    assert response == FetchResponse(
        url=URL, status=304, body=None, etag='W/"v1"', max_age=60, attempts=1
    )
    (request,) = script.requests
    assert request.method == "GET"
    assert request.headers["If-None-Match"] == 'W/"v1"'
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("modelwatch/")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_no_cache_headers() -> None:
    response = run(Script(httpx.Response(200, content=SUCCESS)))
    assert (response.etag, response.max_age) == (None, None)


def test_500_then_success() -> None:
    slept: list[float] = []
    script = Script(error_500(), ok(**{"Cache-Control": CACHE_CONTROL}))
    response = run(script, sleep=slept.append)
    assert response == FetchResponse(
        url=URL, status=200, body=SUCCESS, etag=ETAG, max_age=300, attempts=2
    )
    assert slept == backoff_waits(1)


def test_500_exhausted_quotes_upstream_message() -> None:
    slept: list[float] = []
    script = Script(error_500())
    with pytest.raises(UpstreamError) as info:
        run(script, sleep=slept.append)
    assert str(info.value) == (
        f"GET {URL} failed after 4 attempts: HTTP 500 Internal Server Error; "
        f'upstream message: "{MESSAGE_500}"'
    )
    assert info.value.status == 500  # type: ignore[attr-defined]
    assert info.value.body == ERROR_500  # type: ignore[attr-defined]
    assert len(script.requests) == 4
    assert slept == backoff_waits(3)


def test_openai_error_shape_message_quoted() -> None:
    body = json.dumps({"error": {"message": "upstream\noverloaded", "type": "server_error"}})
    with pytest.raises(UpstreamError) as info:
        run(Script(httpx.Response(503, content=body.encode())), max_attempts=1)
    assert str(info.value) == (
        f"GET {URL} failed after 1 attempt: HTTP 503 Service Unavailable; "
        'upstream message: "upstream overloaded"'
    )


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_retried(exc: Exception) -> None:
    slept: list[float] = []
    script = Script(exc, exc, ok())
    response = run(script, sleep=slept.append)
    assert (response.status, response.body, response.attempts) == (200, SUCCESS, 3)
    assert slept == backoff_waits(2)


def test_connect_errors_exhausted() -> None:
    slept: list[float] = []
    script = Script(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(UpstreamError) as info:
        run(script, sleep=slept.append, max_attempts=2)
    assert str(info.value) == (
        f"GET {URL} failed after 2 attempts: ConnectError: [Errno 111] Connection refused"
    )
    assert len(script.requests) == 2
    assert slept == backoff_waits(1)


def test_429_honours_retry_after_seconds() -> None:
    slept: list[float] = []
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), ok())
    response = run(script, sleep=slept.append)
    assert (response.status, response.attempts) == (200, 2)
    assert slept == [2.0]


def test_429_honours_retry_after_http_date() -> None:
    slept: list[float] = []
    past = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    script = Script(httpx.Response(429, headers={"Retry-After": past}), ok())
    assert run(script, sleep=slept.append).attempts == 2
    assert slept == [0.0]


def test_429_without_retry_after_uses_backoff() -> None:
    slept: list[float] = []
    script = Script(httpx.Response(429), httpx.Response(429, headers={"Retry-After": "x"}), ok())
    assert run(script, sleep=slept.append).attempts == 3
    assert slept == backoff_waits(2)


def test_retry_after_past_the_budget_stops_without_sleeping() -> None:
    slept: list[float] = []
    script = Script(httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(UpstreamError) as info:
        run(script, sleep=slept.append, max_total_seconds=60)
    assert str(info.value) == (
        f"GET {URL} failed after 1 attempt: HTTP 429 Too Many Requests "
        "(next wait 120s would pass the 60s budget)"
    )
    assert info.value.status == 429  # type: ignore[attr-defined]
    assert slept == []
    assert len(script.requests) == 1


def test_backoff_stops_at_the_budget() -> None:
    slept: list[float] = []
    script = Script(error_500())
    with pytest.raises(UpstreamError, match=r"after 2 attempts: HTTP 500 .*60s budget"):
        run(script, sleep=slept.append, backoff=20.0, max_total_seconds=60.0, max_attempts=10)
    # waits would be 20+j, 40+j: the second would end past 60 s, so only the first happens
    assert slept == backoff_waits(1, backoff=20.0)
    assert len(script.requests) == 2


def test_max_attempts_one_never_sleeps() -> None:
    slept: list[float] = []
    with pytest.raises(UpstreamError, match="after 1 attempt: HTTP 500"):
        run(Script(error_500()), sleep=slept.append, max_attempts=1)
    assert slept == []


@pytest.mark.parametrize(("status", "body"), [(400, ERROR_400), (401, b""), (404, b"nope")])
def test_client_errors_returned_without_retry(status: int, body: bytes) -> None:
    slept: list[float] = []
    script = Script(httpx.Response(status, content=body))
    response = run(script, sleep=slept.append)
    assert response == FetchResponse(
        url=URL, status=status, body=body, etag=None, max_age=None, attempts=1
    )
    assert len(script.requests) == 1
    assert slept == []


def test_declared_content_length_over_limit() -> None:
    script = Script(httpx.Response(200, content=b"x" * 101))
    with pytest.raises(PayloadRejected) as info:
        run(script, max_bytes=100)
    assert str(info.value) == (
        f"body exceeds 100 bytes (Content-Length 101) from GET {URL}, HTTP 200"
    )


def test_streamed_body_over_limit_stops_reading() -> None:
    produced: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(100):
            produced.append(i)
            yield b"z" * 10

    script = Script(httpx.Response(200, content=chunks()))  # no Content-Length
    with pytest.raises(PayloadRejected) as info:
        run(script, max_bytes=55)
    assert str(info.value) == (
        f"body exceeds 55 bytes (stopped reading at 60) from GET {URL}, HTTP 200"
    )
    assert len(produced) == 6
    assert len(script.requests) == 1


def test_body_of_exactly_max_bytes_is_accepted() -> None:
    response = run(Script(httpx.Response(200, content=SUCCESS)), max_bytes=len(SUCCESS))
    assert response.body == SUCCESS


def test_compressed_body_is_limited_after_decoding() -> None:
    bomb = gzip.compress(b"0" * 100_000)
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
    script = Script(httpx.Response(200, content=iter([bomb]), headers=headers))
    assert len(bomb) < 1000  # the declared (compressed) length passes; the decoded body does not
    with pytest.raises(PayloadRejected, match="body exceeds 1000 bytes"):
        run(script, max_bytes=1000)


def test_undecodable_body_rejected() -> None:
    gz = {"Content-Encoding": "gzip"}
    script = Script(httpx.Response(200, content=iter([b"not gzip"]), headers=gz))
    with pytest.raises(PayloadRejected, match="body cannot be decoded") as info:
        run(script)
    assert info.value.status is None  # type: ignore[attr-defined]
    assert len(script.requests) == 1


def test_token_sent_but_never_in_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    echo = json.dumps({"success": False, "message": f"bad key {TOKEN}"}).encode()
    script = Script(httpx.Response(500, content=echo))
    caplog.set_level(logging.DEBUG)  # httpx's own request log lines included
    with pytest.raises(UpstreamError) as info:
        run(script, token=TOKEN)
    assert [r.headers["Authorization"] for r in script.requests] == [f"Bearer {TOKEN}"] * 4
    assert str(info.value) == (
        f"GET {URL} failed after 4 attempts: HTTP 500 Internal Server Error; "
        'upstream message: "bad key [REDACTED]"'
    )
    ours = [r for r in caplog.records if r.name == "pipeline.fetch"]
    assert [r.levelno for r in ours] == [logging.WARNING] * 3  # one line per retry
    assert caplog.records and all(TOKEN not in r.getMessage() for r in caplog.records)


def test_token_in_url_redacted_from_message() -> None:
    with pytest.raises(UpstreamError) as info:
        run(
            Script(httpx.ConnectError(f"cannot reach ?key={TOKEN}")),
            token=TOKEN,
            url=f"{URL}?key={TOKEN}",
            max_attempts=1,
        )
    assert str(info.value) == (
        f"GET {URL}?key=[REDACTED] failed after 1 attempt: "
        "ConnectError: cannot reach ?key=[REDACTED]"
    )


def test_own_client_is_created_with_timeout_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[httpx.Client] = []
    script = Script(ok())

    class Recording(httpx.Client):
        def __init__(self, **kwargs) -> None:
            super().__init__(transport=httpx.MockTransport(script), **kwargs)
            created.append(self)

    monkeypatch.setattr(fetch.httpx, "Client", Recording)
    response = fetch_catalog(URL, timeout=7.0, sleep=[].append)
    assert response.status == 200
    (own,) = created
    assert own.is_closed
    assert own.timeout == httpx.Timeout(7.0)
    assert own.follow_redirects is True


def test_own_client_closed_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[httpx.Client] = []

    class Recording(httpx.Client):
        def __init__(self, **kwargs) -> None:
            super().__init__(transport=httpx.MockTransport(Script(error_500())), **kwargs)
            created.append(self)

    monkeypatch.setattr(fetch.httpx, "Client", Recording)
    with pytest.raises(UpstreamError):
        fetch_catalog(URL, sleep=[].append, max_attempts=2)
    assert created[0].is_closed


def test_request_timeout_capped_by_budget() -> None:
    script = Script(ok())
    with httpx.Client(transport=httpx.MockTransport(script), timeout=30.0) as c:
        fetch_catalog(URL, client=c, max_total_seconds=5.0, sleep=[].append)
    timeouts = script.requests[0].extensions["timeout"]
    assert set(timeouts) == {"connect", "read", "write", "pool"}
    assert all(0 < value <= 5.0 for value in timeouts.values())


def test_bad_url_is_bad_input() -> None:
    with pytest.raises(BadInput, match="cannot GET ftp://example.test/x"):
        fetch_catalog("ftp://example.test/x", sleep=[].append)  # refused before any connection


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        run(Script(ok()), max_attempts=0)


# ---------------------------------------------------------------------- header parsing


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (CACHE_CONTROL, 300),
        ("max-age=0", 0),
        ("private, MAX-AGE = 60", 60),
        ('max-age="30"', 30),
        ("s-maxage=10, no-cache", None),
        ("max-age=-1", None),
        ("max-age=soon", None),
        ("no-store", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_max_age(header: str | None, expected: int | None) -> None:
    assert parse_max_age(header) == expected


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["public", "private", ""]))
def test_parse_max_age_any_value(seconds: int, visibility: str) -> None:
    header = f"{visibility}, max-age={seconds}, stale-while-revalidate=300".lstrip(", ")
    assert parse_max_age(header) == seconds


def test_retry_after_seconds() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, 400_000, tzinfo=UTC)
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:00:10 GMT", now=now) == 9.6
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("-3") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
