"""The same model across sources: prices side by side, and their history.

Sources name models differently (`gpt-4o` at AiHubMix and LiteLLM, `openai/gpt-4o` at
OpenRouter and models.dev, `azure/gpt-4o-2024-08-06` in LiteLLM). They are matched on a
canonical key, defined once, in SQL, as the macro `canonical_model_key(id)`
(`pipeline.sql`): this module calls it, so Python, the `model_compare` view and an
analyst's own SQL can never disagree on what "the same model" is.

    compare(store, "gpt-4o")              every source's current listings of it
    compare(store, "gpt-4o", at=t)        ... as they were at t
    compare_history(store, "gpt-4o")      their price steps over time
"""

from __future__ import annotations

import difflib
from datetime import datetime

import polars as pl

from pipeline.errors import BadInput
from pipeline.record import PRICE_COLUMNS
from pipeline.sql import COMPARE_VIEWS
from pipeline.store import Store
from pipeline.timeutil import iso

_PRICES = ", ".join(PRICE_COLUMNS)


def _ensure_sql(store: Store) -> None:
    """A database last written by an older modelwatch and opened read-only lacks the
    macros: create them for this connection only (TEMP objects need no write access)."""
    found = store.con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'model_compare_as_of'"
    ).fetchall()[0][0]
    if not found:
        temp = COMPARE_VIEWS.replace("CREATE OR REPLACE MACRO", "CREATE OR REPLACE TEMP MACRO")
        store.con.execute(temp.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW"))


def canonical_key(store: Store, model_id: str) -> str:
    """The key `model_id` is matched on (see `canonical_model_key` in `pipeline.sql`)."""
    _ensure_sql(store)
    return store.con.execute("SELECT canonical_model_key(?)", [model_id]).fetchall()[0][0]


def compare(store: Store, model: str, *, at: datetime | None = None) -> pl.DataFrame:
    """Every source's listing of `model` (any naming scheme), prices side by side.

    `at` None means each source's latest catalog (the `model_compare` view); otherwise the
    catalogs as last observed at or before `at`. Rows: canonical_key, source, model_id as
    that source lists it, input/output/cache prices (USD per 1M tokens), context_length,
    max_output; by source, then model_id. No match at all is a `BadInput` naming close keys.
    """
    key = canonical_key(store, model)
    if at is None:
        frame = store.frame(
            "SELECT * FROM model_compare WHERE canonical_key = $key ORDER BY source, model_id",
            {"key": key},
        )
    else:
        frame = store.frame(
            "SELECT * FROM model_compare_as_of($at) WHERE canonical_key = $key "
            "ORDER BY source, model_id",
            {"key": key, "at": at},
        )
    if frame.height == 0:
        when = "now" if at is None else f"at {iso(at)}"
        keys = store.con.execute(
            "SELECT DISTINCT canonical_key FROM model_compare_as_of($at)",
            {"at": at or datetime(9999, 12, 31)},
        ).fetchall()
        close = difflib.get_close_matches(key, sorted(k for (k,) in keys if k), n=3, cutoff=0.6)
        hint = f"; close keys: {', '.join(close)}" if close else ""
        raise BadInput(f"no source lists a model with key {key!r} ({model!r}) {when}{hint}")
    return frame


def compare_history(store: Store, model: str) -> pl.DataFrame:
    """The price history of every listing of `model` across sources: one row per price
    step (versions that changed only other fields are merged), with valid_from/valid_to
    (NULL while current); a gap in a listing (removed, then back) starts a new step."""
    key = canonical_key(store, model)
    frame = store.frame(
        f"""
        WITH v AS (
            SELECT source, model_id, valid_from, valid_to, {_PRICES},
                   lag(valid_to) OVER w AS prev_to,
                   lag(struct_pack({_PRICES})) OVER w AS prev_prices
            FROM model_versions
            WHERE canonical_model_key(model_id) = $key
            WINDOW w AS (PARTITION BY source, model_id ORDER BY valid_from)
        ),
        steps AS (
            SELECT *, sum(CASE WHEN prev_to IS NOT DISTINCT FROM valid_from
                                AND prev_prices IS NOT DISTINCT FROM struct_pack({_PRICES})
                               THEN 0 ELSE 1 END)
                      OVER (PARTITION BY source, model_id ORDER BY valid_from) AS step
            FROM v
        )
        SELECT $key AS canonical_key, source, model_id, min(valid_from) AS valid_from,
               CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END
                   AS valid_to,
               {", ".join(f"any_value({c}) AS {c}" for c in PRICE_COLUMNS)}
        FROM steps
        GROUP BY source, model_id, step
        ORDER BY source, model_id, valid_from
        """,
        {"key": key},
    )
    if frame.height == 0:
        raise BadInput(f"no source ever listed a model with key {key!r} ({model!r})")
    return frame
