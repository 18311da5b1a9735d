"""The normalised model record (SPEC 2): the one definition every layer derives from.

The pandera schema (`schemas/catalog.py`), the DuckDB DDL (`pipeline/store.py`) and the
upstream-shape renderer (`pipeline/render.py`) all read `FIELDS`, so the field list
cannot drift between them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Field:
    name: str
    dtype: pl.DataType
    sql: str
    doc: str
    versioned: bool = True  # part of a model version's values (a change opens a new version)


_LIST = pl.List(pl.String)

FIELDS: tuple[Field, ...] = (
    Field("source", pl.String(), "VARCHAR", "catalog the row came from, e.g. aihubmix", False),
    Field("model_id", pl.String(), "VARCHAR", "upstream id, exact (case-sensitive)", False),
    Field("description", pl.String(), "VARCHAR", "upstream `desc`; untrusted text"),
    Field("types", _LIST, "VARCHAR[]", "sorted, de-duplicated, aliases mapped (t2t -> llm)"),
    Field("features", _LIST, "VARCHAR[]", "sorted, de-duplicated, lower-case"),
    Field("input_modalities", _LIST, "VARCHAR[]", "sorted, de-duplicated, lower-case"),
    Field("max_output", pl.Int64(), "BIGINT", "tokens; NULL = unknown (upstream 0 or missing)"),
    Field("context_length", pl.Int64(), "BIGINT", "tokens; NULL = unknown (upstream 0 or missing)"),
    Field("input_price", pl.Float64(), "DOUBLE", "USD per 1M input tokens; NULL = unknown"),
    Field("output_price", pl.Float64(), "DOUBLE", "USD per 1M output tokens; NULL = unknown"),
    Field("cache_read_price", pl.Float64(), "DOUBLE", "USD per 1M cached input tokens read"),
    Field("cache_write_price", pl.Float64(), "DOUBLE", "USD per 1M tokens written to cache"),
    Field("position", pl.Int64(), "INTEGER", "index in the upstream list (default order)", False),
    Field("extra", pl.String(), "JSON", "every other upstream field, as canonical JSON"),
)

COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
SCHEMA: dict[str, pl.DataType] = {f.name: f.dtype for f in FIELDS}
VALUE_COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.versioned)
LIST_COLUMNS: tuple[str, ...] = ("types", "features", "input_modalities")
COUNT_COLUMNS: tuple[str, ...] = ("max_output", "context_length")
PRICE_COLUMNS: tuple[str, ...] = (
    "input_price",
    "output_price",
    "cache_read_price",
    "cache_write_price",
)


def row_hash(values: dict[str, Any]) -> str:
    """Stable digest of a row's versioned values: equal digests mean no change. The
    store keeps it for open versions only; `Store.rewind` recomputes it from the stored
    values (they round-trip exactly) for the versions it opens again."""
    canon = json.dumps([values[c] for c in VALUE_COLUMNS], ensure_ascii=False, allow_nan=False)
    return hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()


# upstream `pricing` key -> record column
PRICE_KEYS: dict[str, str] = {
    "input": "input_price",
    "output": "output_price",
    "cache_read": "cache_read_price",
    "cache_write": "cache_write_price",
}

# SPEC 1: documented values; anything else is kept and reported as unknown.
KNOWN_TYPES = ("llm", "image_generation", "video", "tts", "stt", "embedding", "rerank")
TYPE_ALIASES = {"t2t": "llm", "t2i": "image_generation", "t2v": "video", "reranking": "rerank"}
KNOWN_FEATURES = (
    "thinking",
    "tools",
    "function_calling",
    "web",
    "deepsearch",
    "long_context",
    "structured_outputs",
)
KNOWN_MODALITIES = ("text", "image", "audio", "video", "pdf")
KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "types": KNOWN_TYPES,
    "features": KNOWN_FEATURES,
    "input_modalities": KNOWN_MODALITIES,
}
ALIASES: dict[str, dict[str, str]] = {"types": TYPE_ALIASES, "features": {}, "input_modalities": {}}


def arrow_type(dtype: pl.DataType) -> Any:
    import pyarrow as pa

    if isinstance(dtype, pl.List):
        return pa.list_(pa.string())
    return {pl.String: pa.string(), pl.Int64: pa.int64(), pl.Float64: pa.float64()}[type(dtype)]


def frame_from_rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Record dicts -> a frame of `SCHEMA`, column by column through Arrow (polars'
    row-wise constructor builds one Python object per list cell: 15x slower)."""
    import pyarrow as pa

    table = pa.table(
        {f.name: pa.array([r[f.name] for r in rows], type=arrow_type(f.dtype)) for f in FIELDS}
    )
    return pl.from_arrow(table)  # type: ignore[return-value]
