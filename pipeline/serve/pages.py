"""Pages for people (SPEC 5): the catalog, one model's history and the change feed as HTML.

GET /                  the catalog at a time: SPEC 4 parameters + as_of + source, as a form
GET /models/{model}    one model's history: every version, a price chart, its changes
GET /changes           the change feed as a page: the feed's filters + since

Rendered on the server by Jinja2 through Starlette (autoescape on; control characters
shown as U+FFFD), the chart as inline SVG by the report's renderer: no JavaScript, and
the `Content-Security-Policy` forbids loading anything from another host. Pages are
anonymous: they show public sources only, and a private source is a 404 exactly like a
source never stored. They go through the app's answer cache like the API does (ETags,
304s, and the page already served while another process writes the store).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from pipeline.errors import BadInput
from pipeline.query.filters import QUERY_PARAMS, SORT_BY, SORT_ORDER
from pipeline.query.plausibility import CHECK_THIS, DEFAULT_FACTOR, flag_implausible
from pipeline.report.charts import CONTROL
from pipeline.serve.cache import Mirror
from pipeline.serve.feed import ENTRIES, FEED_PARAMS, check_note, feed_rows, model_path
from pipeline.serve.http import Answer, checked_params, send, source_param, time_param
from pipeline.serve.tokens import public_sources, unknown_source
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow
from schemas.record import KNOWN_FEATURES, KNOWN_MODALITIES, KNOWN_TYPES, PRICE_COLUMNS

HTML_TYPE = "text/html; charset=utf-8"
CATALOG_PARAMS = (*QUERY_PARAMS, "as_of", "source")
MODEL_PARAMS = ("source",)
CHANGE_FILTERS = ("type", "model", "features", "modalities")
# no script at all, and nothing from another host: the styles and the SVG are inline
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
REASONS = {400: "Bad request", 404: "Not found", 500: "Server error", 503: "Busy"}
DESCRIPTION_CHARS = 160  # of a description in the catalog table
VALUE_CHARS = 80  # of an old or new value in a changes table
TOOLTIP_CHARS = 300  # of the same value, longer, on hover
SUGGESTIONS = {"types": KNOWN_TYPES, "features": KNOWN_FEATURES, "modalities": KNOWN_MODALITIES}
_CONTROL = re.compile(CONTROL)

AnswerFn = Callable[[Mirror, tuple[Any, ...], Callable[[Store], Answer]], Awaitable[Answer]]


def _printable(value: Any) -> Any:
    """Every `{{ value }}`: None as nothing, control characters as U+FFFD (as a browser
    shows them); markup the page built itself (the chart) is left alone."""
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return _CONTROL.sub("\ufffd", value)
    return value


TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_printable,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


def render(code: int, template: str, /, **context: Any) -> Answer:
    body = TEMPLATES.get_template(template).render(**context).encode("utf-8")
    return Answer(code, body, media_type=HTML_TYPE)


def error_page(
    status: int,
    message: str,
    *,
    sources: list[str] | None = None,
    suggestions: list[tuple[str, str]] | None = None,
) -> Answer:
    """A 4xx/5xx as a page: one line naming what was wrong, links to go on from."""
    return render(
        status,
        "error.html",
        status=status,
        reason=REASONS.get(status, "Error"),
        message=message,
        sources=sources or [],
        suggestions=suggestions or [],
    )


# -- the pages (each over an open store; the routes below cache them) ---------------------
def _price(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _listed(values: list[str] | None) -> str:
    return ", ".join(values or [])


def _cut(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _full(text: str | None) -> str:
    """A cut value in full, as the cell's tooltip (itself bounded)."""
    text = text or ""
    return _cut(text, TOOLTIP_CHARS) if len(text) > VALUE_CHARS else ""


def _form(params: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The form's fields as the caller typed them (absent ones empty)."""
    return {name: params.get(name, "") for name in names}


def catalog_page(
    store: Store, *, source: str, sources: list[str], params: dict[str, str]
) -> Answer:
    """`/`: the catalog of `source` at `as_of` (default now), filtered and sorted as
    `/api/v1/models` would; a bad parameter raises `BadInput` (a 400)."""
    from pipeline.query import models

    when = time_param(params, "as_of")
    frame = models(store, source=source, as_of=when, **{k: params.get(k) for k in QUERY_PARAMS})
    snapshots = store.snapshot_times(source)
    seen = snapshots.filter(pl.col("observed_at") <= (when or utcnow()))["observed_at"].max()
    rows = [
        {
            "model_id": m["model_id"],
            "href": model_path(m["model_id"], source),
            "types": _listed(m["types"]),
            "features": _listed(m["features"]),
            "input_modalities": _listed(m["input_modalities"]),
            "description": _cut(m["description"], DESCRIPTION_CHARS),
            "input_price": _price(m["input_price"]),
            "output_price": _price(m["output_price"]),
            "cache_read_price": _price(m["cache_read_price"]),
            "context_length": _count(m["context_length"]),
            "max_output": _count(m["max_output"]),
        }
        for m in frame.iter_rows(named=True)
    ]
    form = _form(params, CATALOG_PARAMS)
    form["sort_by"] = form["sort_by"] or "order"
    form["sort_order"] = form["sort_order"] or "asc"
    return render(
        200,
        "catalog.html",
        source=source,
        sources=sources,
        models=rows,
        described=any(r["description"] for r in rows),  # no empty column
        observed=iso(seen) if isinstance(seen, datetime) else None,
        params=form,
        sort_by=SORT_BY,
        sort_order=SORT_ORDER,
        suggestions=SUGGESTIONS,
    )


def price_steps(versions: pl.DataFrame, until: datetime | None) -> pl.DataFrame:
    """A model's prices as points of a step line: each version's price at its start and
    at its end (`until` for the version in force), drawn in `seq` order; `run` changes
    where the model was not listed (or the price was absent), so the line breaks there."""
    parts = []
    for column in PRICE_COLUMNS:
        listed = versions.filter(pl.col(column).is_not_null()).select(
            "valid_from",
            pl.col("valid_to").fill_null(
                pl.max_horizontal(pl.col("valid_from"), pl.lit(until or datetime.min))
            ),
            pl.col(column).cast(pl.Float64).alias("usd"),
        )
        if listed.height == 0:
            continue
        gap = pl.col("valid_from") != pl.col("valid_to").shift(1)
        listed = listed.with_columns(
            gap.fill_null(True).cum_sum().alias("run"),
            (pl.int_range(pl.len()) * 2).alias("seq"),
            pl.lit(column.removesuffix("_price").replace("_", " ")).alias("price"),
        )
        parts += [
            listed.select(pl.col("valid_from").alias("at"), "price", "usd", "run", "seq"),
            listed.select(pl.col("valid_to").alias("at"), "price", "usd", "run", pl.col("seq") + 1),
        ]
    if not parts:
        return pl.DataFrame(schema={"at": pl.Datetime("us"), "price": pl.String, "usd": pl.Float64})
    return pl.concat(parts).sort("price", "seq")


def _changes(frame: pl.DataFrame, source: str) -> list[dict[str, Any]]:
    """Rows of `model_changes` (with `check`) as a changes table shows them."""
    rows = []
    for c in frame.iter_rows(named=True):
        pct = c["pct_change"]
        rows.append(
            {
                "changed_at": iso(c["changed_at"]),
                "model_id": c["model_id"],
                "href": model_path(c["model_id"], source),
                "kind": c["kind"],
                "field": c["field"],
                "old_value": _cut(c["old_value"], VALUE_CHARS),
                "new_value": _cut(c["new_value"], VALUE_CHARS),
                "old_full": _full(c["old_value"]),
                "new_full": _full(c["new_value"]),
                "pct": "" if pct is None else f"{pct:+.1f}%",
                "direction": (  # for a price: cheaper is good news
                    ""
                    if pct is None or c["field"] not in PRICE_COLUMNS
                    else ("cut" if pct < 0 else "rise")
                ),
                "check": bool(c["check"]),
            }
        )
    return rows


def model_page(store: Store, *, source: str, model_id: str, factor: float) -> Answer:
    """`/models/{model}`: every version of one model of `source`, its prices as a chart,
    its changes (flagged "check this" beyond `factor`); a 404 page if it was never listed."""
    history = store.model_history(source, model_id)
    if history.height == 0:
        known = sorted({m for _, m in store.model_ids(source)})
        close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.5)
        return error_page(
            404,
            f"model {model_id!r} was never in the {source} catalog",
            suggestions=[(m, model_path(m, source)) for m in close],
        )
    last_fetch, _ = store.last_success_and_change(source)
    steps = price_steps(history, last_fetch)
    chart = None
    if steps.height:
        from pipeline.report.charts import chart_model_prices, svg

        chart = Markup(svg(chart_model_prices(steps, f"{model_id}: prices (USD per 1M tokens)")))
    changes = flag_implausible(store.changes(source=source, model_id=model_id), factor)
    latest = history.row(-1, named=True)
    versions = [
        {
            "valid_from": iso(v["valid_from"]),
            "valid_to": iso(v["valid_to"]),
            **{c: _price(v[c]) for c in PRICE_COLUMNS},
            "context_length": _count(v["context_length"]),
            "max_output": _count(v["max_output"]),
        }
        for v in history.reverse().iter_rows(named=True)
    ]
    return render(
        200,
        "model.html",
        source=source,
        model_id=model_id,
        latest={
            "description": latest["description"],
            **{c: _listed(latest[c]) for c in ("types", "features", "input_modalities")},
        },
        first_listed=iso(history["valid_from"].min()),  # type: ignore[arg-type]
        listed_now=latest["valid_to"] is None,
        last_listed=iso(latest["valid_to"]),
        chart=chart,
        versions=versions,
        changes=_changes(changes.reverse(), source),
        with_model=False,
        check_this=CHECK_THIS,
        check_note=check_note(factor),
    )


def changes_page(
    store: Store, *, source: str, sources: list[str], params: dict[str, str], factor: float
) -> Answer:
    """`/changes`: the Atom feed's entries as a table, same filters, same "check this"."""
    since = time_param(params, "since")
    filters: dict[str, str | None] = {k: params.get(k) for k in CHANGE_FILTERS}
    rows = feed_rows(store, source=source, since=since, filters=filters, factor=factor)
    given = {k: v for k, v in params.items() if v.strip() and k != "source"}
    return render(
        200,
        "changes.html",
        source=source,
        sources=sources,
        params=_form(params, FEED_PARAMS),
        suggestions=SUGGESTIONS,
        changes=_changes(rows, source),
        with_model=True,
        limit=ENTRIES,
        atom="/changes.atom?" + urlencode({"source": source, **given}),
        check_this=CHECK_THIS,
        check_note=check_note(factor),
    )


# -- the routes ----------------------------------------------------------------------------
def page_routes(
    mirror: Mirror, *, source: str, answer: AnswerFn, factor: float = DEFAULT_FACTOR
) -> list[Route]:
    """The pages' routes over the app's `mirror`; `answer` is the app's cached, busy-aware
    way to compute an `Answer` (pages never open the store themselves)."""

    async def page(
        request: Request,
        accepted: tuple[str, ...],
        build: Callable[[Store, str, list[str], dict[str, str]], Answer],
    ) -> Response:
        try:
            params = checked_params(request, accepted)
        except BadInput as exc:
            return _send(request, error_page(400, str(exc)))
        requested, src = source_param(params, source)

        def compute(store: Store) -> Answer:
            public = public_sources(store)
            if src not in public:  # a private source is answered as one never stored
                return error_page(404, unknown_source(requested, public), sources=public)
            try:
                return build(store, src, public, params)
            except BadInput as exc:
                return error_page(400, str(exc), sources=public)

        key = ("page", request.url.path, *sorted(params.items()))
        return _send(request, _as_page(await answer(mirror, key, compute)))

    async def catalog(request: Request) -> Response:
        return await page(
            request,
            CATALOG_PARAMS,
            lambda s, src, public, params: catalog_page(
                s, source=src, sources=public, params=params
            ),
        )

    async def model(request: Request) -> Response:
        model_id = request.path_params["model"]
        return await page(
            request,
            MODEL_PARAMS,
            lambda s, src, public, params: model_page(
                s, source=src, model_id=model_id, factor=factor
            ),
        )

    async def changes(request: Request) -> Response:
        return await page(
            request,
            FEED_PARAMS,
            lambda s, src, public, params: changes_page(
                s, source=src, sources=public, params=params, factor=factor
            ),
        )

    return [
        Route("/", catalog, methods=["GET"]),
        Route("/models/{model:path}", model, methods=["GET"]),
        Route("/changes", changes, methods=["GET"]),
    ]


def _as_page(answer: Answer) -> Answer:
    """The app's own failures (busy, unreadable: JSON) as pages, with the same status."""
    if answer.media_type == HTML_TYPE:
        return answer
    try:
        message = str(json.loads(answer.body)["message"])
    except (ValueError, KeyError, TypeError):
        message = "the server cannot answer this now"
    return error_page(answer.status, message)


def _send(request: Request, answer: Answer) -> Response:
    response = send(request, answer)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
