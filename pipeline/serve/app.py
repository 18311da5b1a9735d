"""The stored history served as the AiHubMix API: a local, time-travelling mirror (SPEC 5).

GET /api/v1/models        SPEC 4 parameters + as_of + source; the upstream body
GET /v1/models            the legacy OpenAI-style list (anonymous or per token)
GET /v1/models/{model}    one model; ids may contain '/'
GET /changes.atom         the change feed (Atom 1.0), SPEC 4 filters + since
GET /, /models/{model}, /changes   pages for people (pages.py)
    GET /openapi.json, /healthz
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config import Config
from pipeline.errors import BadInput, ModelwatchError, StoreLocked
from pipeline.query import QUERY_PARAMS
from pipeline.query.plausibility import DEFAULT_FACTOR
from pipeline.query.render import catalog_body
from pipeline.serve.cache import Mirror
from pipeline.serve.http import (
    JSON_TYPE,
    Answer,
    checked_params,
    error_body,
    non_utf8,
    openai_error,
    send,
    source_param,
    time_param,
    unauthorized,
)
from pipeline.serve.pages import page_routes
from pipeline.serve.tokens import (
    ANONYMOUS,
    TokenScope,
    Unauthorized,
    public_sources,
    scope_of,
    unknown_source,
)
from pipeline.store import Store
from pipeline.timeutil import utcnow

API_PARAMS = (*QUERY_PARAMS, "as_of", "source")
log = logging.getLogger("modelwatch.serve")
T = TypeVar("T")


def create_app(
    db: str | Path | None = None,
    *,
    store: Store | None = None,
    source: str = "aihubmix",
    config: Config | None = None,
    busy_wait: float = 5.0,
) -> Starlette:
    """The ASGI app; give a database path (served read-only) or an open `Store` (tests).
    `config` names the sources whose staleness `/healthz` reports; `busy_wait` is how long
    a query never answered before waits for a busy store before a 503."""
    mirror = Mirror(db, store=store, source=source, wait=busy_wait)
    factor = config.plausibility_factor if config is not None else DEFAULT_FACTOR

    async def api_models(request: Request) -> Response:
        from pipeline.query import models

        # a repeated request: the same raw query against the same database version
        raw_key = (mirror.version(), "raw", request.scope.get("query_string", b""))
        hit = mirror.cached(raw_key)
        if hit is not None:
            return send(request, hit)
        try:
            params = checked_params(request, API_PARAMS)
            when = time_param(params, "as_of")
            requested, src = source_param(params, source)
        except ModelwatchError as exc:
            return Response(error_body(str(exc)), status_code=400, media_type=JSON_TYPE)

        def compute(s: Store) -> Answer:
            hidden = _unknown_or_private(s, src, requested)
            if hidden is not None:
                return hidden
            try:
                filters = {k: params.get(k) for k in QUERY_PARAMS}
                frame = models(s, source=src, as_of=when, **filters)
            except BadInput as exc:
                return Answer(400, error_body(str(exc)))
            return Answer(200, catalog_body(frame))

        key = ("api", src, when, *(params.get(k) for k in QUERY_PARAMS))
        answer = await _answer(mirror, key, compute)
        if answer.status in (200, 400):
            mirror.remember(raw_key, answer)
        return send(request, answer)

    async def changes_atom(request: Request) -> Response:
        from pipeline.serve.feed import FEED_PARAMS, atom_feed

        try:
            params = checked_params(request, FEED_PARAMS)
            since = time_param(params, "since")
            requested, src = source_param(params, source)
        except ModelwatchError as exc:
            return Response(error_body(str(exc)), status_code=400, media_type=JSON_TYPE)
        filters = {k: params.get(k) for k in ("type", "model", "features", "modalities")}
        base_url = str(request.base_url).rstrip("/")

        def compute(s: Store) -> Answer:
            hidden = _unknown_or_private(s, src, requested)
            if hidden is not None:
                return hidden
            try:
                return atom_feed(
                    s, source=src, since=since, filters=filters, base_url=base_url, factor=factor
                )
            except BadInput as exc:
                return Answer(400, error_body(str(exc)))

        key = ("atom", src, since, base_url, *filters.values())
        return send(request, await _answer(mirror, key, compute))

    async def legacy_models(request: Request) -> Response:
        return await _legacy(request, None)

    async def legacy_model(request: Request) -> Response:
        return await _legacy(request, request.path_params["model"])

    async def _legacy(request: Request, model_id: str | None) -> Response:
        from pipeline.serve.legacy import legacy_answer

        if non_utf8(request):
            body = openai_error("the request URL is not valid UTF-8", code="invalid_url")
            return Response(body, status_code=400, media_type=JSON_TYPE)
        if request.query_params:  # no parameter is supported: never silently ignored
            name = next(iter(request.query_params))
            body = openai_error(
                f"parameter {name!r} is not supported on this route; it takes none",
                code="invalid_parameter",
                param=name[:100],
            )
            return Response(body, status_code=400, media_type=JSON_TYPE)
        authorization = request.headers.get("authorization")

        def lookup(s: Store) -> TokenScope | Unauthorized:
            try:
                return scope_of(s, authorization)
            except Unauthorized as exc:
                return exc

        try:
            # anonymous needs no lookup; a token's scope is never stale: one revoked while
            # the store is busy must not pass
            key = ("token", _digest(authorization))
            scope = (
                ANONYMOUS
                if authorization is None
                else await _run(mirror, key, lookup, stale_ok=False)
            )
        except ModelwatchError as exc:
            return send(request, _failure(exc))
        if isinstance(scope, Unauthorized):
            return unauthorized(openai_error(str(scope), code="invalid_api_key"))
        answer = await _answer(
            mirror,
            ("legacy", scope, model_id),
            lambda s: legacy_answer(s, scope, model_id, default_source=source),
        )
        if answer.status == 401:  # the default catalog is private: a token is needed
            return unauthorized(answer.body)
        return send(request, answer, private=authorization is not None, vary=True)

    async def healthz(request: Request) -> Response:
        """200 only when the store is readable and no configured source is stale or
        failing (SPEC 5); otherwise 503 with the reasons."""
        from starlette.concurrency import run_in_threadpool

        problems = await run_in_threadpool(_health_problems, mirror, config)
        verdict = {"status": "unhealthy", "problems": problems} if problems else {"status": "ok"}
        body = json.dumps(verdict, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(
            body,
            status_code=503 if problems else 200,
            media_type=JSON_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    async def openapi(request: Request) -> Response:
        from pipeline.serve.openapi import OPENAPI

        return Response(json.dumps(OPENAPI).encode(), media_type=JSON_TYPE)

    return Starlette(
        routes=[
            Route("/api/v1/models", api_models, methods=["GET"]),
            Route("/v1/models", legacy_models, methods=["GET"]),
            Route("/v1/models/{model:path}", legacy_model, methods=["GET"]),
            Route("/changes.atom", changes_atom, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *page_routes(mirror, source=source, answer=_answer, factor=factor),
        ]
    )


def _health_problems(mirror: Mirror, config: Config | None) -> list[str]:
    """Why the mirror is not healthy: an unreadable store, stale or failing sources."""
    from pipeline.health import SourceHealth, source_health

    def check(s: Store) -> list[SourceHealth]:
        s.summary()  # reads every table: an unreadable store fails here
        return source_health(s, config) if config is not None else []

    try:  # staleness moves with the clock: cached for a minute at most
        health = mirror.compute(("health", utcnow().replace(second=0, microsecond=0)), check)
    except StoreLocked:
        return []  # a writer holds the file: busy, not broken (bodies are still served)
    except ModelwatchError as exc:
        log.warning("healthz: %s", exc)
        return ["the store cannot be read"]
    except Exception as exc:  # a corrupt file: DuckDB's own errors
        log.warning("healthz: %s: %s", type(exc).__name__, exc)
        return ["the store cannot be read"]
    configured = {s.name for s in config.sources} if config is not None else set()
    return [
        f"source {h.source} is {h.state}"
        for h in health
        if h.source in configured and (h.stale or h.failing)
    ]


def _unknown_or_private(store: Store, source: str, requested: str | None) -> Answer | None:
    """The 400 for a source with no public history; a private source is answered exactly
    as one that does not exist, naming only the public ones."""
    public = public_sources(store)
    if source in public:
        return None
    return Answer(400, error_body(unknown_source(requested, public)))


def _digest(authorization: str | None) -> str | None:
    """Cache keys hold a hash of the header, never the token itself."""
    return None if authorization is None else hashlib.sha256(authorization.encode()).hexdigest()


async def _run(
    mirror: Mirror, key: tuple[Any, ...], compute: Callable[[Store], T], *, stale_ok: bool = True
) -> T:
    """Cache hits answer inline; misses run in a worker thread (DuckDB blocks)."""
    from starlette.concurrency import run_in_threadpool

    hit = mirror.cached((mirror.version(), *key))
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    return await run_in_threadpool(lambda: mirror.compute(key, compute, stale_ok=stale_ok))


def _failure(exc: ModelwatchError) -> Answer:
    """A store failure as a served answer: the detail (paths, a writer's PID) is logged
    here, never sent."""
    if isinstance(exc, StoreLocked):
        log.warning("answering 503: %s", exc)
        return Answer(503, error_body("the database is busy; try again shortly"))
    log.error("answering 500: %s", exc)
    return Answer(500, error_body("the server cannot read its database; see its log"))


async def _answer(
    mirror: Mirror, key: tuple[Any, ...], compute: Callable[[Store], Answer]
) -> Answer:
    try:
        return await _run(mirror, key, compute)
    except ModelwatchError as exc:
        return _failure(exc)
