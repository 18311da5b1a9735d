"""AiHubMix `GET /api/v1/models` (SPEC 1): `{"data": [...], "message": "", "success": true}`."""

from __future__ import annotations

from typing import Any

from pipeline.sources import SourceSpec
from pipeline.sources._common import ItemMemo, catalog_list, parse_json

DEFAULT_URL = "https://aihubmix.com/api/v1/models"


def parse(body: bytes, memo: ItemMemo | None = None) -> list[Any]:
    """The catalog's items; anything that is not a catalog is rejected whole."""
    return catalog_list(parse_json(body))


SPEC = SourceSpec(name="aihubmix", default_url=DEFAULT_URL, parse=parse)
