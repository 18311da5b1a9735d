"""Catalog queries over the history (SPEC 4)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from pipeline.store import Store
from pipeline.timeutil import utcnow


def models(
    store: Store,
    *,
    source: str = "aihubmix",
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """The catalog of `source` as last observed at or before `as_of` (default: now)."""
    return store.catalog_as_of(source, as_of or utcnow())
