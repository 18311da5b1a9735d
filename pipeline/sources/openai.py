"""Any OpenAI-compatible `GET /v1/models` (SPEC 1 legacy, SPEC 6).

Accepts OpenAI's `{"object": "list", "data": [{"id", "object", "created", "owned_by", ...}]}`
and new-api's `{"success": true, "data": [...]}`. `success: false` and OpenAI's error shape
`{"error": {"message": ...}}` are rejected whole. `id` becomes `model_id`; every other field
is kept in `extra`. These lists carry no prices.

Two adapters share the parser: `openai` (default: OpenAI's own list, which needs a token;
pass `--url` for any other server) and `aihubmix-legacy` (AiHubMix's own `/v1/models`).
A bearer token is sent when the source's `token_env` names one; a token-scoped list is its
own source name (say `aihubmix-team-a` with kind `aihubmix-legacy`), so one token's models
never mix with another's.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PayloadRejected, upstream_message
from pipeline.sources import SourceSpec
from pipeline.sources._common import (
    ItemMemo,
    by_id,
    catalog_list,
    convert_all,
    extra_fields,
    parse_json,
)

DEFAULT_URL = "https://api.openai.com/v1/models"
AIHUBMIX_LEGACY_URL = "https://aihubmix.com/v1/models"


def to_item(model: Any) -> Any:
    """One `/v1/models` object -> an AiHubMix-shaped item (a non-object is passed on, to be
    quarantined by the normaliser)."""
    if not isinstance(model, dict):
        return model
    return {"model_id": model.get("id"), **extra_fields(model, drop=("id",))}


def parse(body: bytes, memo: ItemMemo | None = None) -> list[Any]:
    doc = parse_json(body, deep=False)
    if isinstance(doc, dict) and "data" not in doc and isinstance(doc.get("error"), dict):
        message = upstream_message(doc) or ""
        raise PayloadRejected(f"upstream answered an error: {message!r}")
    models = catalog_list(doc)
    return convert_all(by_id(models), to_item, memo, doc)


SPEC = SourceSpec(name="openai", default_url=DEFAULT_URL, parse=parse)
AIHUBMIX_LEGACY = SourceSpec(name="aihubmix-legacy", default_url=AIHUBMIX_LEGACY_URL, parse=parse)
