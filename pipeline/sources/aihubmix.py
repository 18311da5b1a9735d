"""AiHubMix `GET /api/v1/models` (SPEC 1): `{"data": [...], "message": "", "success": true}`."""

from __future__ import annotations

from typing import Any

from pipeline.sources import SourceSpec
from pipeline.sources._common import ItemMemo, catalog_list, convert_all, parse_json

DEFAULT_URL = "https://aihubmix.com/api/v1/models"


def _same(item: Any) -> Any:
    return item


def parse(body: bytes, memo: ItemMemo | None = None) -> list[Any]:
    """The catalog's items; anything that is not a catalog is rejected whole. With a
    memo, an item equal to the last body's is that very object (and is not walked for
    depth again)."""
    doc = parse_json(body, deep=False)
    items = catalog_list(doc)
    entries = ((i.get("model_id") if isinstance(i, dict) else None, (i,)) for i in items)
    return convert_all(entries, _same, memo, doc)


SPEC = SourceSpec(name="aihubmix", default_url=DEFAULT_URL, parse=parse)
