"""Questions over the history, with the AiHubMix API's filter and sort semantics (SPEC 4).

`models()` is the API's `/api/v1/models` at any past instant; `changes()`,
`price_history()` and `cost()` are what the history adds. The catalog at a time and
the change feed come from the store's SQL (`catalog_as_of`, `model_changes`), so SQL
users and these helpers read the same definitions; the filters and sorts live in
`pipeline.query.filters`, once.

    filters.py   SPEC 4: parameter checks, filters, sorts
    compare.py   the same model across sources
    render.py    records -> the upstream JSON shape
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.errors import BadInput, BadParameter
from pipeline.query.filters import QUERY_PARAMS, Query, apply_query, coding_expr, parse_query
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow

__all__ = [
    "QUERY_PARAMS",
    "Query",
    "apply_query",
    "changes",
    "coding_expr",
    "cost",
    "coverage",
    "median_price_by_type",
    "models",
    "parse_query",
    "price_history",
    "resolve_model",
]


def models(
    store: Store,
    *,
    source: str = "aihubmix",
    as_of: datetime | None = None,
    type: str | None = None,
    modalities: str | None = None,
    model: str | None = None,
    features: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> pl.DataFrame:
    """The catalog of `source` as last observed at or before `as_of` (default now),
    filtered and sorted as `/api/v1/models` would."""
    known = store.sources()
    if source not in known:
        stored = ", ".join(known) or "none yet"
        raise BadParameter(f"source {source!r} has no history here; stored sources: {stored}")
    frame = store.catalog_as_of(source, as_of or utcnow())
    query = parse_query(
        frame,
        type=type,
        modalities=modalities,
        features=features,
        model=model,
        sort_by=sort_by,
        sort_order=sort_order,
    )
    return apply_query(frame, query)


def changes(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """One row per change in (since, until]: added, removed, returned, or a changed field
    with old and new values (prices also as a percentage)."""
    return store.changes(since=since, until=until, source=source)


def resolve_model(store: Store, model: str, *, source: str | None = None) -> tuple[str, str]:
    """(source, model_id) for a user's spelling of a model: exact, else case-insensitive,
    else a one-line error with the closest ids."""
    rows = store.model_ids(source)
    exact = [r for r in rows if r[1] == model]
    folded = [r for r in rows if r[1].lower() == model.lower()]
    for found in (exact, folded):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            sources = ", ".join(sorted(r[0] for r in found))
            raise BadInput(f"model {model!r} is in several sources ({sources}); pass --source")
    close = difflib.get_close_matches(model, sorted({r[1] for r in rows}), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise BadInput(f"model {model!r} was never in the {source or 'stored'} catalog{hint}")


def price_history(store: Store, model: str, *, source: str | None = None) -> pl.DataFrame:
    """The step series of a model's prices: one row per version, valid_from/valid_to."""
    src, model_id = resolve_model(store, model, source=source)
    return store.versions(src, model_id)


def cost(
    store: Store,
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    at: datetime | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """USD for one request at the prices in force at `at` (default now).

    `cached_tokens` are part of `input_tokens` and billed at the cache-read price (the
    input price when the catalog has none)."""
    for name, value in (
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("cached_tokens", cached_tokens),
    ):
        if value < 0:
            raise BadInput(f"{name} must not be negative, got {value}")
    if cached_tokens > input_tokens:
        raise BadInput(f"cached_tokens ({cached_tokens}) exceeds input_tokens ({input_tokens})")
    when = at or utcnow()
    src, model_id = resolve_model(store, model, source=source)
    row = store.catalog_as_of(src, when).filter(pl.col("model_id") == model_id)
    if row.height == 0:
        versions = store.versions(src, model_id)
        first, last = versions["valid_from"].min(), versions["valid_to"].max()
        if isinstance(first, datetime) and when < first:
            hint = f"; it was first listed at {iso(first)}"
        elif isinstance(last, datetime):
            hint = f"; it was last listed until {iso(last)} (try --at a time before that)"
        else:
            hint = ""
        raise BadInput(f"model {model_id!r} was not in the {src} catalog at {iso(when)}{hint}")
    prices = row.row(0, named=True)
    missing = [c for c in ("input_price", "output_price") if prices[c] is None]
    if missing:
        raise BadInput(f"{model_id} has no {' or '.join(missing)} at {iso(when)}")
    cache_price = prices["cache_read_price"]
    if cache_price is None:
        cache_price = prices["input_price"]
    usd = (
        (input_tokens - cached_tokens) * prices["input_price"]
        + cached_tokens * cache_price
        + output_tokens * prices["output_price"]
    ) / 1_000_000
    return {
        "source": src,
        "model_id": model_id,
        "at": when,
        "input_tokens": input_tokens,
        "cached_tokens": cached_tokens,
        "output_tokens": output_tokens,
        "input_price": prices["input_price"],
        "cache_read_price": cache_price,
        "output_price": prices["output_price"],
        "usd": usd,
    }


def median_price_by_type(
    store: Store, *, source: str = "aihubmix", price: str = "input_price"
) -> pl.DataFrame:
    """Median price per type at each snapshot: how a segment's price level moves."""
    return store.median_price_by_type(source, price)


def coverage(store: Store, *, source: str = "aihubmix", column: str = "features") -> pl.DataFrame:
    """Number of models per feature (or modality, or type) at each snapshot."""
    return store.coverage(source, column)
