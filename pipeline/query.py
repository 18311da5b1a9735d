"""Questions over the history, with the AiHubMix API's filter and sort semantics (SPEC 4).

`models()` is the API's `/api/v1/models` at any past instant; `changes()`,
`price_history()` and `cost()` are what the history adds. Catalog snapshots come from
the store's SQL macros (`catalog_as_of`, `model_changes`), so SQL users and these
helpers read the same definitions; the filters and sorts live here, once.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.errors import BadInput, BadParameter
from pipeline.record import (
    KNOWN_FEATURES,
    KNOWN_MODALITIES,
    KNOWN_TYPES,
    PRICE_COLUMNS,
    TYPE_ALIASES,
)
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow

SORT_BY = ("order", "context_length", "model_ratio", "coding")
SORT_ORDER = ("asc", "desc")
_NON_ALNUM = r"[^\p{L}\p{N}]"
_CODING_WORD = re.compile(r"\bcoding\b", re.IGNORECASE)


@dataclass(frozen=True)
class Query:
    """The parameters of `/api/v1/models` after SPEC 4's clean-up (empty = absent)."""

    type: str | None = None
    modalities: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    model: str | None = None
    sort_by: str = "order"
    sort_order: str = "asc"


def _blank(value: str | None) -> bool:
    return value is None or value.strip() == ""


def _items(value: str | None) -> tuple[str, ...]:
    if _blank(value):
        return ()
    return tuple(dict.fromkeys(p.strip().lower() for p in str(value).split(",") if p.strip()))


def _accepted(documented: tuple[str, ...], present: set[str]) -> str:
    extra = sorted(present - set(documented))
    return ", ".join(documented) + (f" (also in this catalog: {', '.join(extra)})" if extra else "")


def parse_query(
    frame: pl.DataFrame,
    *,
    type: str | None = None,
    modalities: str | None = None,
    features: str | None = None,
    model: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> Query:
    """Check parameters against SPEC 4 and the catalog being queried; name any bad value."""

    def present(column: str) -> set[str]:
        return set(frame.get_column(column).explode().drop_nulls().unique().to_list())

    kind = None
    if not _blank(type):
        kind = str(type).strip().lower()
        kind = TYPE_ALIASES.get(kind, kind)
        types = present("types")
        if kind not in KNOWN_TYPES and kind not in types:
            raise BadParameter(
                f"type {type!r} is not a known type; accepted: "
                f"{_accepted(KNOWN_TYPES + tuple(TYPE_ALIASES), types)}"
            )
    wanted: dict[str, tuple[str, ...]] = {}
    for name, value, column, known in (
        ("modalities", modalities, "input_modalities", KNOWN_MODALITIES),
        ("features", features, "features", KNOWN_FEATURES),
    ):
        items = _items(value)
        have = present(column)
        bad = [v for v in items if v not in known and v not in have]
        if bad:
            raise BadParameter(
                f"{name} value {bad[0]!r} is not known; accepted: {_accepted(known, have)}"
            )
        wanted[name] = items
    order_key = "order" if _blank(sort_by) else str(sort_by).strip().lower()
    if order_key not in SORT_BY:
        raise BadParameter(f"sort_by {sort_by!r} is not known; accepted: {', '.join(SORT_BY)}")
    direction = "asc" if _blank(sort_order) else str(sort_order).strip().lower()
    if direction not in SORT_ORDER:
        raise BadParameter(
            f"sort_order {sort_order!r} is not known; accepted: {', '.join(SORT_ORDER)}"
        )
    return Query(
        type=kind,
        modalities=wanted["modalities"],
        features=wanted["features"],
        model=None if _blank(model) else str(model).strip(),
        sort_by=order_key,
        sort_order=direction,
    )


def coding_expr() -> pl.Expr:
    """SPEC 4's coding model: tagged `coding`, an id containing `code`, or `coding` in the
    description as a word."""
    tags = pl.col("extra").str.json_path_match("$.tags").fill_null("")
    return (
        pl.col("features").list.contains("coding")
        | tags.str.to_lowercase().str.contains(r"\bcoding\b")
        | pl.col("model_id").str.to_lowercase().str.contains("code", literal=True)
        | pl.col("description").str.contains(r"(?i)\bcoding\b")
    )


def apply_query(frame: pl.DataFrame, query: Query) -> pl.DataFrame:
    """Filter and sort a catalog (in default order) exactly as SPEC 4 says."""
    conditions: list[pl.Expr] = []
    if query.type:
        conditions.append(pl.col("types").list.contains(query.type))
    conditions += [pl.col("input_modalities").list.contains(m) for m in query.modalities]
    conditions += [pl.col("features").list.contains(f) for f in query.features]
    if query.model:
        needle = query.model.lower()
        ids = pl.col("model_id").str.to_lowercase()
        match = ids.str.contains(needle, literal=True)
        squeezed = re.sub(r"[\W_]", "", needle)
        if squeezed:
            match = match | ids.str.replace_all(_NON_ALNUM, "").str.contains(squeezed, literal=True)
        conditions.append(match)
    if conditions:
        frame = frame.filter(pl.all_horizontal(conditions))
    frame = frame.sort("position")
    descending = query.sort_order == "desc"
    if query.sort_by == "coding":
        return frame.sort(coding_expr(), descending=True, maintain_order=True)
    if query.sort_by == "context_length":
        key = pl.col("context_length")
    elif query.sort_by == "model_ratio":
        key = pl.col("input_price") / 2
    else:
        return frame.sort("position", descending=descending)
    # unknown values last in both directions; ties keep default order
    return frame.sort(
        [key.is_null(), key, pl.col("position")],
        descending=[False, descending, False],
        maintain_order=True,
    )


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
    return store.frame(
        """SELECT * FROM model_changes
           WHERE ($since IS NULL OR changed_at > $since)
             AND ($until IS NULL OR changed_at <= $until)
             AND ($source IS NULL OR source = $source)
           ORDER BY changed_at, source, model_id, kind_order, field""",
        {"since": since, "until": until, "source": source},
    ).drop("kind_order")


def resolve_model(store: Store, model: str, *, source: str | None = None) -> tuple[str, str]:
    """(source, model_id) for a user's spelling of a model: exact, else case-insensitive,
    else a one-line error with the closest ids."""
    rows = store.con.execute(
        "SELECT DISTINCT source, model_id FROM model_versions "
        "WHERE $source IS NULL OR source = $source",
        {"source": source},
    ).fetchall()
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
    return store.frame(
        f"""SELECT source, model_id, valid_from, valid_to, {", ".join(PRICE_COLUMNS)},
                   context_length, max_output
            FROM model_versions WHERE source = ? AND model_id = ? ORDER BY valid_from""",
        [src, model_id],
    )


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
        raise BadInput(f"model {model_id!r} was not in the {src} catalog at {iso(when)}")
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
    if price not in PRICE_COLUMNS:
        raise BadInput(f"price {price!r} is not one of {', '.join(PRICE_COLUMNS)}")
    return store.frame(
        f"""SELECT s.observed_at, t.type, median(m.{price}) AS median_{price},
                   count(m.{price}) AS models_priced
            FROM snapshots s, catalog_as_of(s.source, s.observed_at) m,
                 unnest(m.types) AS t(type)
            WHERE s.source = $source
            GROUP BY ALL ORDER BY s.observed_at, t.type""",
        {"source": source},
    )


def coverage(store: Store, *, source: str = "aihubmix", column: str = "features") -> pl.DataFrame:
    """Number of models per feature (or modality, or type) at each snapshot."""
    if column not in ("features", "input_modalities", "types"):
        raise BadInput(f"column {column!r} is not one of features, input_modalities, types")
    return store.frame(
        f"""SELECT s.observed_at, v.value, count(*) AS models
            FROM snapshots s, catalog_as_of(s.source, s.observed_at) m,
                 unnest(m.{column}) AS v(value)
            WHERE s.source = $source
            GROUP BY ALL ORDER BY s.observed_at, v.value""",
        {"source": source},
    )
