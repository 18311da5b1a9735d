"""The same model across sources: prices side by side, and their history.

Sources name models differently (`gpt-4o` at AiHubMix and LiteLLM, `openai/gpt-4o` at
OpenRouter and models.dev, `azure/gpt-4o-2024-08-06` in LiteLLM). They are matched on a
canonical key, defined once, in SQL, as the macro `canonical_model_key(id)`
(`pipeline.store.schema`): the store's reads call it, so Python, the `model_compare`
view and an analyst's own SQL can never disagree on what "the same model" is.

    compare(store, "gpt-4o")              every source's current listings of it
    compare(store, "gpt-4o", at=t)        ... as they were at t
    compare_history(store, "gpt-4o")      their price steps over time
"""

from __future__ import annotations

import difflib
from datetime import datetime

import polars as pl

from pipeline.errors import BadInput
from pipeline.store import Store
from pipeline.timeutil import iso


def canonical_key(store: Store, model_id: str) -> str:
    """The key `model_id` is matched on (see `canonical_model_key` in the store's schema)."""
    return store.canonical_key(model_id)


def compare(store: Store, model: str, *, at: datetime | None = None) -> pl.DataFrame:
    """Every source's listing of `model` (any naming scheme), prices side by side.

    `at` None means each source's latest catalog (the `model_compare` view); otherwise the
    catalogs as last observed at or before `at`. Rows: canonical_key, source, model_id as
    that source lists it, input/output/cache prices (USD per 1M tokens), context_length,
    max_output; by source, then model_id. No match at all is a `BadInput` naming close keys.
    """
    key = store.canonical_key(model)
    frame = store.listings(key, at)
    if frame.height == 0:
        when = "now" if at is None else f"at {iso(at)}"
        close = difflib.get_close_matches(key, sorted(store.canonical_keys(at)), n=3, cutoff=0.6)
        hint = f"; close keys: {', '.join(close)}" if close else ""
        raise BadInput(f"no source lists a model with key {key!r} ({model!r}) {when}{hint}")
    return frame


def compare_history(store: Store, model: str) -> pl.DataFrame:
    """The price history of every listing of `model` across sources: one row per price
    step (versions that changed only other fields are merged), with valid_from/valid_to
    (NULL while current); a gap in a listing (removed, then back) starts a new step."""
    key = store.canonical_key(model)
    frame = store.listing_price_steps(key)
    if frame.height == 0:
        raise BadInput(f"no source ever listed a model with key {key!r} ({model!r})")
    return frame
