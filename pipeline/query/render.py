"""Records -> the upstream AiHubMix shape (SPEC 7): what `models --format json` prints
and `/api/v1/models` serves.

Lists are joined with commas in normalised order, unknown counts become 0, `pricing`
holds only known prices, and the keys kept in `extra` return to the top level.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import polars as pl

from schemas.record import LIST_COLUMNS, PRICE_KEYS


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def upstream_model(row: dict[str, Any]) -> dict[str, Any]:
    extra = json.loads(row["extra"]) if row.get("extra") else {}
    pricing = {
        key: _number(row[col]) for key, col in PRICE_KEYS.items() if row.get(col) is not None
    }
    extra_pricing = extra.pop("pricing", None)
    if isinstance(extra_pricing, dict):
        pricing.update(extra_pricing)
    model: dict[str, Any] = {
        "model_id": row["model_id"],
        "desc": row.get("description") or "",
        "pricing": pricing,
        **{col: ",".join(row.get(col) or []) for col in LIST_COLUMNS},
        "max_output": row.get("max_output") or 0,
        "context_length": row.get("context_length") or 0,
    }
    for key, value in extra.items():
        model.setdefault(key, value)
    return model


def catalog_body(rows: Iterable[dict[str, Any]] | pl.DataFrame) -> bytes:
    """The exact bytes of a successful `/api/v1/models` answer: same rows, same bytes."""
    if isinstance(rows, pl.DataFrame):
        rows = rows.iter_rows(named=True)
    body = {"data": [upstream_model(r) for r in rows], "message": "", "success": True}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def error_body(message: str) -> bytes:
    return json.dumps({"success": False, "message": message}, ensure_ascii=False).encode()
