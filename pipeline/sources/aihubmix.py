"""AiHubMix `GET /api/v1/models` (SPEC 1): `{"data": [...], "message": "", "success": true}`."""

from __future__ import annotations

import json
from typing import Any

from pipeline.errors import PayloadRejected
from pipeline.sources import SourceSpec

DEFAULT_URL = "https://aihubmix.com/api/v1/models"


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        start = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise PayloadRejected(f"body is not JSON ({exc.__class__.__name__}): {start!r}") from None


def parse(body: bytes) -> list[Any]:
    """The catalog's items; anything that is not a catalog is rejected whole."""
    return catalog_list(parse_json(body))


def catalog_list(doc: Any) -> list[Any]:
    """The `data` list of a `{"data": [...], "success": ...}` envelope (AiHubMix, new-api,
    OpenRouter); anything else is rejected whole, quoting the upstream's message."""
    if not isinstance(doc, dict):
        raise PayloadRejected(f"body is a JSON {type(doc).__name__}, not an object")
    if doc.get("success") is False:
        message = " ".join(str(doc.get("message") or "").split())
        raise PayloadRejected(f"upstream answered success:false: {message!r}")
    if not isinstance(doc.get("data"), list):
        keys = ", ".join(sorted(map(str, doc))) or "none"
        raise PayloadRejected(f"body has no 'data' list (keys: {keys})")
    return doc["data"]


SPEC = SourceSpec(name="aihubmix", default_url=DEFAULT_URL, parse=parse)
