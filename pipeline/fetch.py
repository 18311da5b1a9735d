"""Fetch a catalog over HTTP with a conditional GET, bounded retries and a size cap (SPEC 1).

`fetch_catalog` answers with a `FetchResponse` for 200, 304 and final 4xx statuses; it raises
`UpstreamError` when the upstream keeps failing (connection errors, timeouts, 5xx, 429) and
`PayloadRejected` when a body is larger than allowed. Both exceptions carry `status`
(int or None) and `body` (bytes or None) so the caller can record and archive the attempt.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from pipeline import __version__
from pipeline.errors import BadInput, PayloadRejected, UpstreamError, upstream_message
from pipeline.secrets import redact

log = logging.getLogger(__name__)

USER_AGENT = f"modelwatch/{__version__}"

# Bytes of a retryable error body kept for the error message and the archive.
_ERROR_BODY_LIMIT = 64 * 1024
_MAX_AGE = re.compile(r'^max-age\s*=\s*"?(\d+)"?$', re.IGNORECASE)


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
    """The `max-age` seconds of a Cache-Control header, so a poller knows how long to wait.

    >>> parse_max_age("public, max-age=300, stale-while-revalidate=300")
    300
    """
    if not cache_control:
        return None
    for directive in cache_control.split(","):
        match = _MAX_AGE.match(directive.strip())
        if match:
            return int(match.group(1))
    return None


def fetch_catalog(
    url: str,
    *,
    etag: str | None = None,
    client: httpx.Client | None = None,
    token: str | None = None,
    max_attempts: int = 4,
    max_total_seconds: float = 60.0,
    backoff: float = 0.5,
    max_bytes: int = 64 * 1024 * 1024,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> FetchResponse:
    """GET a catalog once (conditionally, when `etag` is given), retrying transient failures.

    Retries transport errors and 5xx with exponential backoff plus jitter, and 429 after its
    `Retry-After`, within `max_attempts` and `max_total_seconds` (request time plus waits);
    it never starts a wait that would end past the budget. Other statuses are returned as is.
    `timeout` applies only to the client created here when `client` is None.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
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


@dataclass
class _Failure:
    """What the last failed attempt looked like, for the message and the archive."""

    status: int | None = None
    reason: str = ""
    body: bytes | None = None
    error: str | None = None  # exception class and first line, for transport errors
    retry_after: float | None = None


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
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if token:
        headers["Authorization"] = f"Bearer {token}"

    spent = 0.0  # seconds used so far: request time (measured) plus waits (as requested)
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        try:
            failure, response = _attempt(
                client,
                url,
                headers=headers,
                attempt=attempt,
                max_bytes=max_bytes,
                request_timeout=_cap_timeout(client.timeout, max_total_seconds - spent),
                token=token,
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


def _attempt(
    client: httpx.Client,
    url: str,
    *,
    headers: dict[str, str],
    attempt: int,
    max_bytes: int,
    request_timeout: httpx.Timeout,
    token: str | None,
) -> tuple[_Failure | None, FetchResponse | None]:
    """One request: a final `FetchResponse`, or a retryable `_Failure`."""
    try:
        with client.stream("GET", url, headers=headers, timeout=request_timeout) as resp:
            status = resp.status_code
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
                body = _read_capped(resp, min(max_bytes, _ERROR_BODY_LIMIT))
                retry_after = None
                if status in (429, 503):
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                return _Failure(
                    status=status, reason=resp.reason_phrase, body=body, retry_after=retry_after
                ), None
            body = _read_limited(resp, url, max_bytes, token=token)
            return None, FetchResponse(
                url=url, status=status, body=body, etag=resp_etag, max_age=max_age, attempts=attempt
            )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BadInput(redact(f"cannot GET {url}: {_exc_line(exc)}", token)) from None
    except httpx.DecodingError as exc:
        raise PayloadRejected(
            redact(f"GET {url}: body cannot be decoded ({_exc_line(exc)})", token)
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise UpstreamError(redact(f"GET {url}: {_exc_line(exc)}", token)) from exc
    except httpx.TransportError as exc:
        return _Failure(error=_exc_line(exc)), None


def _read_limited(resp: httpx.Response, url: str, max_bytes: int, *, token: str | None) -> bytes:
    """The whole body, refused as soon as it is known to be larger than `max_bytes`."""
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise PayloadRejected(
            redact(
                f"body exceeds {max_bytes} bytes (Content-Length {int(declared)}) "
                f"from GET {url}, HTTP {resp.status_code}",
                token,
            ),
            status=resp.status_code,
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():  # decoded bytes, so a compressed bomb is caught too
        size += len(chunk)
        if size > max_bytes:
            raise PayloadRejected(
                redact(
                    f"body exceeds {max_bytes} bytes (stopped reading at {size}) "
                    f"from GET {url}, HTTP {resp.status_code}",
                    token,
                ),
                status=resp.status_code,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _read_capped(resp: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of an error body: enough to quote and archive, never unbounded."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), else None.

    A date in the past means 0; an unreadable value means None (use backoff instead).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    seconds = (when - reference).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


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
    except (UnicodeDecodeError, ValueError):
        return None
    return None if message is None else json.dumps(message, ensure_ascii=False)


def _exc_line(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
