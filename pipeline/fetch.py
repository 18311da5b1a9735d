"""Fetch a catalog over HTTP with a conditional GET, bounded retries and a size cap (SPEC 1).

`fetch_catalog` answers with a `FetchResponse` for 200, 304 and final 4xx statuses; it raises
`UpstreamError` when the upstream keeps failing (connection errors, timeouts, 5xx, 429) and
`PayloadRejected` when a body is larger than allowed. Both exceptions carry `status`
(int or None) and `body` (bytes or None) so the caller can record and archive the attempt.

Nothing an upstream sends can hang or exhaust a fetch (SPEC 5):

- time: every attempt runs against the total budget (`max_total_seconds`, default
  `DEFAULT_MAX_TOTAL_SECONDS`). A body that drips in is cut at the first chunk past the
  deadline, and headers that never complete are given up on at the deadline itself (the
  request runs on a worker thread; a stalled one is abandoned and ends at its own next read
  or read timeout). Either way the fetch fails with one line naming the budget.
- size: the body is decoded here, not by httpx, in steps of at most `_DECODE_STEP` bytes,
  and the running size is checked before each further step, so a decompression bomb is
  refused after about `max_bytes` (default `DEFAULT_MAX_BYTES`) whatever it would expand
  to. Every layer of a nested encoding (`gzip, gzip`) is bounded the same way, and so are
  the raw bytes. Only gzip, deflate and zstd are decoded (at most `MAX_ENCODINGS` layers);
  any other Content-Encoding is rejected.
- headers: `max-age` is clamped to `MAX_AGE_LIMIT` (the largest INT32, RFC 9111 1.2.2)
  and `Retry-After` to `RETRY_AFTER_LIMIT` (a year), however many digits they have.
- redirects: only to http(s); any other scheme is a failed attempt.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, TypeVar, cast

import httpx
import zstandard

from pipeline import __version__
from pipeline.errors import BadInput, PayloadRejected, UpstreamError, upstream_message
from pipeline.secrets import redact

log = logging.getLogger(__name__)

USER_AGENT = f"modelwatch/{__version__}"

# Defaults of `fetch_catalog`, read at each call (a test or a caller may lower them).
DEFAULT_MAX_TOTAL_SECONDS = 60.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# `max-age` above this is taken as this: the largest INT32, what the fetch log can hold
# (RFC 9111 1.2.2 allows clamping delta-seconds to 2**31). A poller should cap its own wait.
MAX_AGE_LIMIT = 2**31 - 1
# `Retry-After` above this (a year) is taken as this: far past any fetch budget anyway.
RETRY_AFTER_LIMIT = 365 * 24 * 3600
# Content-Encoding layers decoded at most (`gzip, gzip` is 2).
MAX_ENCODINGS = 3
ACCEPT_ENCODING = "gzip, deflate, zstd"
# Decoded bytes produced per step: the most a bomb can add past the cap before it is seen.
_DECODE_STEP = 64 * 1024
# The largest zstd window accepted: 8 MB, as RFC 8878 recommends for HTTP.
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024

# Bytes of a retryable error body kept for the error message and the archive.
_ERROR_BODY_LIMIT = 64 * 1024
_MAX_AGE = re.compile(r'^max-age\s*=\s*"?([0-9]+)"?$', re.IGNORECASE | re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)

T = TypeVar("T")


@dataclass(frozen=True)
class FetchResponse:
    """One final answer from the upstream, so the caller can record it whatever it was."""

    url: str
    status: int  # 200, 304, or another final status (e.g. 400/404 that is not retried)
    body: bytes | None  # None for 304
    etag: str | None  # the ETag response header as sent (quoted)
    max_age: int | None  # from Cache-Control max-age=N, else None
    attempts: int


def parse_max_age(cache_control: str | None) -> int | None:
    """The `max-age` seconds of a Cache-Control header, so a poller knows how long to wait;
    at most `MAX_AGE_LIMIT`, however long the number.

    >>> parse_max_age("public, max-age=300, stale-while-revalidate=300")
    300
    """
    if not cache_control:
        return None
    for directive in cache_control.split(","):
        match = _MAX_AGE.match(directive.strip())
        if match:
            return _bounded_int(match.group(1), MAX_AGE_LIMIT)
    return None


def _bounded_int(digits: str, limit: int) -> int:
    """An ASCII digit string as an int, at most `limit`: never converts a huge number."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(limit)):
        return limit
    return min(int(significant or "0"), limit)


def fetch_catalog(
    url: str,
    *,
    etag: str | None = None,
    client: httpx.Client | None = None,
    token: str | None = None,
    max_attempts: int = 4,
    max_total_seconds: float | None = None,
    backoff: float = 0.5,
    max_bytes: int | None = None,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> FetchResponse:
    """GET a catalog once (conditionally, when `etag` is given), retrying transient failures.

    Retries transport errors and 5xx with exponential backoff plus jitter, and 429 after its
    `Retry-After`, within `max_attempts` and `max_total_seconds` (request time, body
    included, plus waits; default `DEFAULT_MAX_TOTAL_SECONDS`); it never starts a wait that
    would end past the budget, and cuts off an answer still arriving when it runs out.
    Bodies are decoded to at most `max_bytes` (default `DEFAULT_MAX_BYTES`). Other statuses
    are returned as is. `timeout` applies only to the client created here when `client` is
    None.
    """
    if max_total_seconds is None:
        max_total_seconds = DEFAULT_MAX_TOTAL_SECONDS
    if max_bytes is None:
        max_bytes = DEFAULT_MAX_BYTES
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
    if not max_total_seconds > 0:
        raise ValueError(f"max_total_seconds must be positive, not {max_total_seconds}")
    _check_url(url, token)
    own_client = client is None
    http = httpx.Client(timeout=timeout, follow_redirects=True) if client is None else client
    try:
        return _fetch(
            http,
            url,
            etag=etag,
            token=token,
            max_attempts=max_attempts,
            max_total_seconds=max_total_seconds,
            backoff=backoff,
            max_bytes=max_bytes,
            sleep=sleep,
            rng=rng if rng is not None else random.Random(),
        )
    finally:
        if own_client:
            http.close()


def _check_url(url: str, token: str | None) -> None:
    """A URL the user gave must be http(s) with a host: anything else is their mistake."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BadInput(redact(f"cannot GET {url}: {_exc_line(exc)}", token)) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadInput(
            redact(f"cannot GET {url}: only http:// and https:// URLs with a host", token)
        )


@dataclass
class _Failure:
    """What the last failed attempt looked like, for the message and the archive."""

    status: int | None = None
    reason: str = ""
    body: bytes | None = None
    error: str | None = None  # exception class and first line, for transport errors
    retry_after: float | None = None


@dataclass
class _Progress:
    """How far one attempt got, shared with the thread running it, and its deadline."""

    url: str
    token: str | None
    deadline: float  # time.monotonic() at which the attempt is cut off
    budget: float  # the whole fetch's budget in seconds, for the message
    status: int | None = None
    received: int = 0  # raw body bytes

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.late()

    def late(self) -> UpstreamError:
        if self.status is None:
            what = "no response headers"
        else:
            what = f"HTTP {self.status} body still incomplete after {self.received} bytes"
        return UpstreamError(
            redact(
                f"GET {self.url}: {what} when the {self.budget:g}s time budget ran out",
                self.token,
            ),
            status=self.status,
        )

    def too_big(self, limit: int, how: str) -> PayloadRejected:
        status = "" if self.status is None else f", HTTP {self.status}"
        return PayloadRejected(
            redact(f"body exceeds {limit} bytes ({how}) from GET {self.url}{status}", self.token),
            status=self.status,
        )

    def undecodable(self, detail: str) -> PayloadRejected:
        # no status: the answer is unusable as a whole, as when httpx could not decode it
        return PayloadRejected(
            redact(f"GET {self.url}: body cannot be decoded ({_clip(detail)})", self.token)
        )


def _fetch(
    client: httpx.Client,
    url: str,
    *,
    etag: str | None,
    token: str | None,
    max_attempts: int,
    max_total_seconds: float,
    backoff: float,
    max_bytes: int,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> FetchResponse:
    headers = {
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
        "User-Agent": USER_AGENT,
    }
    if etag:
        headers["If-None-Match"] = etag
    if token:
        if not token.isascii() or not token.isprintable() or " " in token:
            # never quoted: the message must not carry the secret
            raise BadInput(
                "the bearer token holds spaces, control or non-ASCII characters, "
                "which an HTTP header cannot carry"
            )
        headers["Authorization"] = f"Bearer {token}"

    spent = 0.0  # seconds used so far: request time (measured) plus waits (as requested)
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        remaining = max_total_seconds - spent
        progress = _Progress(
            url=url, token=token, deadline=started + remaining, budget=max_total_seconds
        )
        try:
            failure, response = _in_time(
                progress,
                functools.partial(
                    _attempt,
                    client,
                    url,
                    headers=headers,
                    attempt=attempt,
                    max_bytes=max_bytes,
                    request_timeout=_cap_timeout(client.timeout, remaining),
                    token=token,
                    progress=progress,
                ),
            )
        finally:
            spent += time.monotonic() - started
        if response is not None:
            return response
        assert failure is not None

        if attempt >= max_attempts:
            raise _exhausted(url, failure, attempt, token=token, why=None)
        if failure.retry_after is not None:
            wait = failure.retry_after
        else:
            wait = backoff * 2 ** (attempt - 1) + rng.uniform(0, backoff)
        if spent + wait > max_total_seconds:
            why = f"next wait {wait:g}s would pass the {max_total_seconds:g}s budget"
            raise _exhausted(url, failure, attempt, token=token, why=why)
        log.warning(
            "%s",
            redact(
                f"GET {url}: {_describe(failure)} on attempt {attempt}/{max_attempts}; "
                f"retrying in {wait:.2f}s",
                token,
            ),
        )
        sleep(wait)
        spent += wait


def _in_time(progress: _Progress, work: Callable[[], T]) -> T:
    """`work()`, or UpstreamError once `progress.deadline` passes, whatever it is waiting for.

    A read timeout bounds each read, not the whole: headers that drip in a byte at a time
    would hold the caller for hours. So the attempt runs on a daemon thread; one still
    running at the deadline is abandoned (it stops at its next chunk, which is past the
    deadline, or at its own read timeout) and the fetch fails now."""
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread, never lost
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="modelwatch-fetch", daemon=True).start()
    if not done.wait(max(progress.deadline - time.monotonic(), 0.0)) or not outcome:
        raise progress.late()
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def _attempt(
    client: httpx.Client,
    url: str,
    *,
    headers: dict[str, str],
    attempt: int,
    max_bytes: int,
    request_timeout: httpx.Timeout,
    token: str | None,
    progress: _Progress,
) -> tuple[_Failure | None, FetchResponse | None]:
    """One request: a final `FetchResponse`, or a retryable `_Failure`."""
    try:
        with client.stream("GET", url, headers=headers, timeout=request_timeout) as resp:
            if resp.url.scheme not in ("http", "https"):  # a transport that followed it
                raise _bad_redirect(url, str(resp.url), token)
            status = resp.status_code
            progress.status = status
            progress.check_time()
            resp_etag = resp.headers.get("ETag")
            max_age = parse_max_age(resp.headers.get("Cache-Control"))
            if status == 304:
                return None, FetchResponse(
                    url=url,
                    status=304,
                    body=None,
                    etag=resp_etag,
                    max_age=max_age,
                    attempts=attempt,
                )
            if status == 429 or status >= 500:
                body = _read_capped(resp, min(max_bytes, _ERROR_BODY_LIMIT), progress)
                retry_after = None
                if status in (429, 503):
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                return _Failure(
                    status=status, reason=resp.reason_phrase, body=body, retry_after=retry_after
                ), None
            body = _read_limited(resp, max_bytes, progress)
            return None, FetchResponse(
                url=url, status=status, body=body, etag=resp_etag, max_age=max_age, attempts=attempt
            )
    except httpx.UnsupportedProtocol as exc:
        # the URL itself was checked before: this is where a redirect led
        try:
            target = str(exc.request.url)
        except RuntimeError:  # pragma: no cover - httpx sets it
            target = "a URL that is not http(s)"
        raise _bad_redirect(url, target, token) from None
    except httpx.InvalidURL as exc:
        raise UpstreamError(
            redact(f"GET {url}: redirected to an invalid URL ({_clip(_exc_line(exc))})", token)
        ) from None
    except httpx.TooManyRedirects as exc:
        raise UpstreamError(redact(f"GET {url}: {_exc_line(exc)}", token)) from exc
    except httpx.TransportError as exc:
        return _Failure(error=_exc_line(exc)), None
    except (ValueError, OverflowError) as exc:  # e.g. h11 on a Content-Length of 5000 digits
        raise UpstreamError(
            redact(f"GET {url}: unreadable response ({_clip(_exc_line(exc))})", token),
            status=progress.status,
        ) from None


def _bad_redirect(url: str, target: str, token: str | None) -> UpstreamError:
    return UpstreamError(
        redact(f"GET {url}: redirected to {_clip(target)}, which is not an http(s) URL", token)
    )


def _read_limited(resp: httpx.Response, max_bytes: int, progress: _Progress) -> bytes:
    """The whole decoded body, refused as soon as it is known to be larger than `max_bytes`."""
    declared = (resp.headers.get("Content-Length") or "").strip()
    if _DIGITS.fullmatch(declared) and _bounded_int(declared, max_bytes + 1) > max_bytes:
        shown = declared if len(declared) <= 20 else f"of {len(declared)} digits"
        raise progress.too_big(max_bytes, f"Content-Length {shown}")
    chunks: list[bytes] = []
    size = 0
    for chunk in _decoded(resp, max_bytes, progress):
        size += len(chunk)
        if size > max_bytes:
            raise progress.too_big(max_bytes, f"stopped reading at {size}")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_capped(resp: httpx.Response, limit: int, progress: _Progress) -> bytes | None:
    """At most `limit` bytes of an error body: enough to quote and archive, never unbounded.
    None when it cannot be decoded (the failure is what matters, not its body)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in _decoded(resp, limit, progress):
            chunks.append(chunk[: limit - size])
            size += len(chunks[-1])
            if size >= limit:
                break
    except PayloadRejected:
        return None
    return b"".join(chunks)


# -- decoding: ours, in bounded steps ------------------------------------------------------


def _decoded(resp: httpx.Response, limit: int, progress: _Progress) -> Iterator[bytes]:
    """The body's bytes with every Content-Encoding undone, in pieces of at most
    `_DECODE_STEP` bytes (or raw network chunks when not encoded). Nothing is decoded
    ahead of what the caller pulls, and no layer, nor the raw body, may pass `limit`."""
    if resp.is_stream_consumed:  # read (and decoded) already, e.g. by a MockTransport
        return iter([resp.content])
    encodings = _encodings(resp.headers.get("Content-Encoding"), progress)
    stream = _raw(resp, limit if encodings else None, progress)
    for name in reversed(encodings):  # listed in the order they were applied
        layer = _Layer(name, limit, progress)
        stream = _unzstd(stream, layer) if name == "zstd" else _inflate(stream, layer)
    return stream


_ENCODING_ALIASES = {"x-gzip": "gzip"}
_DECODERS = ("gzip", "deflate", "zstd")


def _encodings(header: str | None, progress: _Progress) -> list[str]:
    if not header:
        return []
    names = [_ENCODING_ALIASES.get(n, n) for n in (p.strip().lower() for p in header.split(","))]
    names = [n for n in names if n and n != "identity"]
    for name in names:
        if name not in _DECODERS:
            raise PayloadRejected(
                redact(
                    f"GET {progress.url}: unsupported Content-Encoding {_clip(name, 40)!r} "
                    f"(accepted: {', '.join(_DECODERS)})",
                    progress.token,
                ),
                status=progress.status,
            )
    if len(names) > MAX_ENCODINGS:
        raise PayloadRejected(
            redact(
                f"GET {progress.url}: {len(names)} content encodings "
                f"({_clip(', '.join(names), 60)}); at most {MAX_ENCODINGS} are decoded",
                progress.token,
            ),
            status=progress.status,
        )
    return names


def _raw(resp: httpx.Response, limit: int | None, progress: _Progress) -> Iterator[bytes]:
    """The body as sent, cut off at the deadline and, when `limit` is given, at `limit`."""
    for chunk in resp.iter_raw():
        progress.received += len(chunk)
        progress.check_time()
        if limit is not None and progress.received > limit:
            raise progress.too_big(limit, f"stopped at {progress.received} encoded bytes")
        yield chunk


@dataclass
class _Layer:
    """One Content-Encoding being undone: its name and how much it has produced."""

    name: str
    limit: int
    progress: _Progress
    produced: int = 0

    def check(self) -> None:
        """Called before each step: a layer already past the cap decodes no more."""
        if self.produced > self.limit:
            raise self.progress.too_big(
                self.limit, f"its {self.name} layer decoded {self.produced}"
            )

    def emit(self, out: bytes) -> bytes:
        self.produced += len(out)
        return out


_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _inflate(chunks: Iterator[bytes], layer: _Layer) -> Iterator[bytes]:
    """gzip (any number of members) or deflate (zlib-wrapped, or raw as some servers send),
    at most `_DECODE_STEP` bytes per step."""
    decoder: zlib._Decompress | None = None
    held = b""  # deflate: its first two bytes tell zlib-wrapped from raw
    for chunk in _ends(chunks):
        if chunk is None:  # the end: whatever was held back is all there is
            data, held = held, b""
        else:
            data, held = (held + chunk if held else chunk), b""
            if decoder is None and layer.name == "deflate" and len(data) < 2:
                held = data
                continue
        more = bool(data)
        while more:
            if decoder is None or decoder.eof:
                if decoder is not None and layer.name != "gzip":
                    raise layer.progress.undecodable(f"data after the end of the {layer.name}")
                decoder = _decompressobj(layer.name, data)  # gzip: one more member
            layer.check()
            try:
                out = decoder.decompress(data, _DECODE_STEP)
            except zlib.error as exc:
                raise layer.progress.undecodable(f"{layer.name}: {exc}") from None
            data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
            if out:
                yield layer.emit(out)
            # go on while input is left, or while output came out full (zlib may hold more)
            more = bool(data) or (len(out) == _DECODE_STEP and not decoder.eof)
    if decoder is not None and not decoder.eof:
        raise layer.progress.undecodable(f"the {layer.name} stream ends early")


def _ends(chunks: Iterator[bytes]) -> Iterator[bytes | None]:
    """The chunks, then None to mark their end."""
    yield from chunks
    yield None


def _decompressobj(name: str, data: bytes) -> zlib._Decompress:
    if name == "gzip":
        return zlib.decompressobj(_GZIP_WBITS)
    wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
    return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)


def _unzstd(chunks: Iterator[bytes], layer: _Layer) -> Iterator[bytes]:
    """zstd (any number of frames), at most `_DECODE_STEP` bytes per step, with a window of
    at most `_ZSTD_MAX_WINDOW` (a frame may ask the decoder for up to 2 GB otherwise)."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    reader = decompressor.stream_reader(
        cast(IO[bytes], _ChunkReader(chunks)), read_size=_DECODE_STEP, read_across_frames=True
    )
    while True:
        layer.check()
        try:
            out = reader.read(_DECODE_STEP)
        except zstandard.ZstdError as exc:
            raise layer.progress.undecodable(f"zstd: {_clip(str(exc))}") from None
        if not out:
            return
        yield layer.emit(out)


class _ChunkReader:
    """A file-like `read(size)` over an iterator of chunks (what zstandard reads from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _clip(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters, for quoting what an upstream sent."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), else None.

    A date in the past means 0; an unreadable value means None (use backoff instead); any
    wait is at most `RETRY_AFTER_LIMIT`, however many digits it has.
    """
    if value is None:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return float(_bounded_int(text, RETRY_AFTER_LIMIT))
    if len(text) > 100:  # no HTTP date is this long
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    try:
        seconds = (when - reference).total_seconds()
    except OverflowError:
        return None
    return min(max(0.0, seconds), float(RETRY_AFTER_LIMIT)) if math.isfinite(seconds) else None


def _cap_timeout(base: httpx.Timeout, remaining: float) -> httpx.Timeout:
    """The client's timeouts, none longer than what is left of the budget."""
    cap = max(remaining, 0.001)

    def capped(value: float | None) -> float:
        return cap if value is None else min(value, cap)

    return httpx.Timeout(
        connect=capped(base.connect),
        read=capped(base.read),
        write=capped(base.write),
        pool=capped(base.pool),
    )


def _exhausted(
    url: str, failure: _Failure, attempts: int, *, token: str | None, why: str | None
) -> UpstreamError:
    plural = "attempt" if attempts == 1 else "attempts"
    message = f"GET {url} failed after {attempts} {plural}: {_describe(failure)}"
    if why:
        message += f" ({why})"
    upstream = _upstream_message(failure.body)
    if upstream:
        message += f"; upstream message: {upstream}"
    return UpstreamError(redact(message, token), status=failure.status, body=failure.body)


def _describe(failure: _Failure) -> str:
    if failure.status is None:
        return failure.error or "transport error"
    return f"HTTP {failure.status}" + (f" {failure.reason}" if failure.reason else "")


def _upstream_message(body: bytes | None) -> str | None:
    """The `message` of a JSON error body, quoted on one line."""
    if not body:
        return None
    try:
        message = upstream_message(json.loads(body))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return None if message is None else json.dumps(message, ensure_ascii=False)


def _exc_line(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
