"""HTTP pieces every served route shares: answers, ETags, cache headers, parameters.

An `Answer` is a status and the exact body bytes; its strong ETag is the hash of those
bytes, so the same catalog and parameters always give the same ETag (SPEC 5).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response

from pipeline.errors import BadInput
from pipeline.timeutil import parse_time

PUBLIC = "public, max-age=300, stale-while-revalidate=300"
PRIVATE = "private, max-age=300"
MAX_PARAM_LENGTH = 512
JSON_TYPE = "application/json"
RETRY_AFTER = "2"  # seconds, on a 503 while another process writes the store


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Answer:
    """A computed response: cached by the mirror, sent by `send`."""

    status: int
    body: bytes
    media_type: str = "application/json"
    etag: str | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "etag", etag_of(self.body) if self.status == 200 else None)


def etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison over an `If-None-Match` list (`*`, `W/` forms)."""
    if not header:
        return False
    bare = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


def error_body(message: str) -> bytes:
    """The AiHubMix error shape: `{"success": false, "message": ...}`."""
    return json.dumps({"success": False, "message": message}, ensure_ascii=False).encode()


def openai_error(
    message: str, *, code: str, type: str = "invalid_request_error", param: str | None = None
) -> bytes:
    """The OpenAI error shape of the legacy routes."""
    return json.dumps(
        {"error": {"message": message, "type": type, "param": param, "code": code}},
        ensure_ascii=False,
    ).encode()


def non_utf8(request: Request) -> str | None:
    """Why the request's path or query is not valid UTF-8 once percent-decoded, if it is not."""
    raw = request.scope.get("query_string", b"") + b"&" + request.scope.get("raw_path", b"")
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return "the request URL holds percent-encoded bytes that are not UTF-8"
    return None


def single_params(request: Request) -> dict[str, str]:
    """The query parameters, each at most once and of bounded length."""
    seen: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in seen:
            raise BadInput(f"parameter {key!r} is given more than once")
        if len(value) > MAX_PARAM_LENGTH:
            raise BadInput(f"parameter {key!r} is longer than {MAX_PARAM_LENGTH} characters")
        seen[key] = value
    return seen


def time_param(params: dict[str, str], name: str) -> datetime | None:
    """An optional time parameter (`as_of`, `since`); a bad one is a `BadInput` (a 400)."""
    text = params.get(name, "").strip()
    return parse_time(text, name=name) if text else None


def source_param(params: dict[str, str], default: str) -> tuple[str | None, str]:
    """(the source the request named, or None; the source to answer for)."""
    requested = params.get("source", "").strip() or None
    return requested, requested or default


def checked_params(request: Request, accepted: tuple[str, ...]) -> dict[str, str]:
    """The request's parameters, each valid UTF-8, given once, bounded, and one the route
    takes: anything else is a `BadInput` (a 400), never silently ignored."""
    bad = non_utf8(request)
    if bad:
        raise BadInput(bad)
    params = single_params(request)
    unsupported = sorted(set(params) - set(accepted))
    if unsupported:
        raise BadInput(
            f"parameter {unsupported[0]!r} is not supported here; accepted: {', '.join(accepted)}"
        )
    return params


def send(
    request: Request, answer: Answer, *, private: bool = False, vary: bool = False
) -> Response:
    """An answer as a response: 304 on a matching If-None-Match, caching headers always."""
    if answer.etag is None:
        headers = {"Cache-Control": "no-store"}
        if answer.status == 503:
            headers["Retry-After"] = RETRY_AFTER
        return Response(
            answer.body, status_code=answer.status, media_type=answer.media_type, headers=headers
        )
    headers = {"Cache-Control": PRIVATE if private else PUBLIC, "ETag": answer.etag}
    if vary or private:
        headers["Vary"] = "Authorization"
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, status_code=200, media_type=answer.media_type, headers=headers)


def unauthorized(body: bytes) -> Response:
    """A 401 of the legacy routes: never cached, varies with the credentials."""
    return Response(
        body,
        status_code=401,
        media_type=JSON_TYPE,
        headers={
            "Vary": "Authorization",
            "Cache-Control": "no-store",
            "WWW-Authenticate": "Bearer",
        },
    )
