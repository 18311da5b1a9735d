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

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.errors import PayloadRejected
from pipeline.sources import SourceSpec
from pipeline.sources.aihubmix import catalog_list, parse_json

DEFAULT_URL = "https://api.openai.com/v1/models"
AIHUBMIX_LEGACY_URL = "https://aihubmix.com/v1/models"

# keys of an AiHubMix-shaped item: an upstream field of the same name must not pose as one
ITEM_KEYS = frozenset(
    {
        "model_id",
        "desc",
        "types",
        "features",
        "input_modalities",
        "max_output",
        "context_length",
        "pricing",
    }
)


def extra_fields(obj: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """Every field of `obj` but `drop`, for `extra`; a field named like an AiHubMix item
    key (e.g. an upstream `pricing`) is kept as `upstream_<name>` so it cannot pose as one."""
    dropped = set(drop)
    return {
        (f"upstream_{k}" if k in ITEM_KEYS else k): v for k, v in obj.items() if k not in dropped
    }


def to_item(model: Any) -> Any:
    """One `/v1/models` object -> an AiHubMix-shaped item (a non-object is passed on, to be
    quarantined by the normaliser)."""
    if not isinstance(model, dict):
        return model
    return {"model_id": model.get("id"), **extra_fields(model, drop=("id",))}


def parse(body: bytes) -> list[Any]:
    doc = parse_json(body)
    if isinstance(doc, dict) and "data" not in doc and isinstance(doc.get("error"), dict):
        message = " ".join(str(doc["error"].get("message") or "").split())
        raise PayloadRejected(f"upstream answered an error: {message!r}")
    return [to_item(m) for m in catalog_list(doc)]


SPEC = SourceSpec(name="openai", default_url=DEFAULT_URL, parse=parse)
AIHUBMIX_LEGACY = SourceSpec(name="aihubmix-legacy", default_url=AIHUBMIX_LEGACY_URL, parse=parse)
