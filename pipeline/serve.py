"""The stored history served as the AiHubMix API: a local, time-travelling mirror (SPEC 5).

    GET /api/v1/models        SPEC 4 parameters + as_of + source; the upstream body
    GET /v1/models            the legacy OpenAI-style list (anonymous or per token)
    GET /v1/models/{model}    one model; ids may contain '/'
    GET /openapi.json, /healthz

Bodies are cached per (database version, route, parameters, token scope), so a repeated
request costs a file `stat` and a dict lookup. The database is opened read-only and only
on a cache miss, so `modelwatch snapshot` can write between requests (DuckDB allows one
writing process per file, and no reader while it writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.errors import BadInput, ModelwatchError, StoreLocked
from pipeline.render import catalog_body, error_body
from pipeline.store import Store
from pipeline.timeutil import parse_time

PUBLIC = "public, max-age=300, stale-while-revalidate=300"
PRIVATE = "private, max-age=300"
QUERY_PARAMS = ("type", "modalities", "model", "features", "sort_by", "sort_order")
API_PARAMS = (*QUERY_PARAMS, "as_of", "source")
MAX_PARAM_LENGTH = 512
JSON_TYPE = "application/json"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


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


def openai_error(
    message: str, *, code: str, type: str = "invalid_request_error", param: str | None = None
) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type, "param": param, "code": code}},
        ensure_ascii=False,
    ).encode()


class _Answer:
    __slots__ = ("status", "body", "etag")

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body
        self.etag = etag_of(body) if status == 200 else None


class Mirror:
    """Answers for the served routes, cached by database version."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        store: Store | None = None,
        source: str = "aihubmix",
        cache_size: int = 512,
    ):
        if (db is None) == (store is None):
            raise ValueError("give exactly one of db or store")
        self.path = None if db is None else Path(db)
        # the file and its WAL: any write changes one of them
        self._watched = () if db is None else (str(db), f"{db}.wal")
        self.store = store
        self.source = source
        self._cache: OrderedDict[tuple[Any, ...], _Answer] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def version(self) -> tuple[Any, ...]:
        if self.store is not None:
            return (self.store.version(),)
        stats: list[tuple[int, int] | None] = []
        for path in self._watched:
            try:
                st = os.stat(path)
                stats.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stats.append(None)
        return tuple(stats)

    def cached(self, full_key: tuple[Any, ...]) -> _Answer | None:
        """The answer stored under (version, *key), if any: no lock, no thread hop."""
        return self._cache.get(full_key)

    def remember(self, full_key: tuple[Any, ...], answer: _Answer) -> None:
        with self._lock:
            self._cache[full_key] = answer
            self._cache.move_to_end(full_key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def answer(self, key: tuple[Any, ...], compute: Callable[[Store], _Answer]) -> _Answer:
        full_key = (self.version(), *key)
        hit = self.cached(full_key)
        if hit is not None:
            return hit
        if self.store is not None:
            result = compute(self.store)
        else:
            if not self.path or not self.path.exists():
                raise BadInput(f"database {str(self.path)!r} does not exist")
            with Store.open(self.path, read_only=True, lock_timeout=5.0) as store:
                result = compute(store)
        self.remember(full_key, result)
        return result


def _check_utf8(request: Request) -> str | None:
    raw = request.scope.get("query_string", b"") + b"&" + request.scope.get("raw_path", b"")
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return "the request URL holds percent-encoded bytes that are not UTF-8"
    return None


def _params(request: Request) -> dict[str, str]:
    seen: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in seen:
            raise BadInput(f"parameter {key!r} is given more than once")
        if len(value) > MAX_PARAM_LENGTH:
            raise BadInput(f"parameter {key!r} is longer than {MAX_PARAM_LENGTH} characters")
        seen[key] = value
    return seen


def _send(
    request: Request, answer: _Answer, *, private: bool = False, vary: bool = False
) -> Response:
    headers = {"Cache-Control": PRIVATE if private else PUBLIC}
    if vary or private:
        headers["Vary"] = "Authorization"
    if answer.etag is None:
        return Response(
            answer.body,
            status_code=answer.status,
            media_type=JSON_TYPE,
            headers={"Cache-Control": "no-store"},
        )
    headers["ETag"] = answer.etag
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, status_code=200, media_type=JSON_TYPE, headers=headers)


def create_app(
    db: str | Path | None = None, *, store: Store | None = None, source: str = "aihubmix"
) -> Starlette:
    """The ASGI app; give a database path (served read-only) or an open `Store` (tests)."""
    mirror = Mirror(db, store=store, source=source)

    async def api_models(request: Request) -> Response:
        from pipeline.query import models

        # a repeated request: the same raw query against the same database version
        raw_key = (mirror.version(), "raw", request.scope.get("query_string", b""))
        hit = mirror.cached(raw_key)
        if hit is not None:
            return _send(request, hit)
        try:
            bad = _check_utf8(request)
            if bad:
                raise BadInput(bad)
            params = _params(request)
            as_of = params.get("as_of", "").strip()
            when = parse_time(as_of, name="as_of") if as_of else None
            src = params.get("source", "").strip() or source
        except ModelwatchError as exc:
            return Response(error_body(str(exc)), status_code=400, media_type=JSON_TYPE)
        # parameters other than API_PARAMS are ignored, as upstream does

        def compute(s: Store) -> _Answer:
            try:
                filters = {k: params.get(k) for k in QUERY_PARAMS}
                frame = models(s, source=src, as_of=when, **filters)
            except BadInput as exc:
                return _Answer(400, error_body(str(exc)))
            return _Answer(200, catalog_body(frame))

        key = ("api", src, when, *(params.get(k) for k in QUERY_PARAMS))
        answer = await _run(mirror, key, compute)
        if answer.status in (200, 400):
            mirror.remember(raw_key, answer)
        return _send(request, answer)

    async def legacy_models(request: Request) -> Response:
        return await _legacy(request, None)

    async def legacy_model(request: Request) -> Response:
        return await _legacy(request, request.path_params["model"])

    async def _legacy(request: Request, model_id: str | None) -> Response:
        from pipeline.legacy import legacy_answer, token_scope

        if _check_utf8(request):
            body = openai_error("the request URL is not valid UTF-8", code="invalid_url")
            return Response(body, status_code=400, media_type=JSON_TYPE)
        authorization = request.headers.get("authorization")
        scope_answer = await _run(
            mirror, ("token", _digest(authorization)), lambda s: token_scope(s, authorization)
        )
        if scope_answer.status != 200:
            return Response(
                scope_answer.body,
                status_code=scope_answer.status,
                media_type=JSON_TYPE,
                headers={
                    "Vary": "Authorization",
                    "Cache-Control": "no-store",
                    "WWW-Authenticate": "Bearer",
                },
            )
        scope = json.loads(scope_answer.body)
        key = ("legacy", json.dumps(scope, sort_keys=True), model_id)
        answer = await _run(
            mirror, key, lambda s: legacy_answer(s, scope, model_id, default_source=source)
        )
        return _send(request, answer, private=authorization is not None, vary=True)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON_TYPE)

    async def openapi(request: Request) -> Response:
        from pipeline.legacy import OPENAPI

        return Response(json.dumps(OPENAPI).encode(), media_type=JSON_TYPE)

    return Starlette(
        routes=[
            Route("/api/v1/models", api_models, methods=["GET"]),
            Route("/v1/models", legacy_models, methods=["GET"]),
            Route("/v1/models/{model:path}", legacy_model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ]
    )


def _digest(authorization: str | None) -> str | None:
    """Cache keys hold a hash of the header, never the token itself."""
    return None if authorization is None else hashlib.sha256(authorization.encode()).hexdigest()


async def _run(
    mirror: Mirror, key: tuple[Any, ...], compute: Callable[[Store], _Answer]
) -> _Answer:
    """Cache hits answer inline; misses run in a worker thread (DuckDB blocks)."""
    from starlette.concurrency import run_in_threadpool

    try:
        full_key = (mirror.version(), *key)
        hit = mirror.cached(full_key)
        if hit is not None:
            return hit
        return await run_in_threadpool(mirror.answer, key, compute)
    except StoreLocked as exc:
        return _Answer(503, error_body(f"the database is busy: {exc}"))
    except ModelwatchError as exc:
        return _Answer(500, error_body(str(exc)))
