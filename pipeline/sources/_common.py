"""What the adapters share: reading JSON, the `{"data": [...]}` envelope, `extra`
fields, and per-token prices as per-1M. Imported by every adapter, importing none."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.errors import PayloadRejected, upstream_message

PER_TOKEN_UNIT = "USD per 1M tokens (converted from USD per token)"

# output modality -> type (shared with models.dev); unlisted values are kept as they are
OUTPUT_TYPES = {
    "text": "llm",
    "image": "image_generation",
    "audio": "tts",
    "video": "video",
    "embedding": "embedding",
    "embeddings": "embedding",
}


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        start = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise PayloadRejected(f"body is not JSON ({exc.__class__.__name__}): {start!r}") from None


def catalog_list(doc: Any) -> list[Any]:
    """The `data` list of a `{"data": [...], "success": ...}` envelope (AiHubMix, new-api,
    OpenRouter); anything else is rejected whole, quoting the upstream's message."""
    if not isinstance(doc, dict):
        raise PayloadRejected(f"body is a JSON {type(doc).__name__}, not an object")
    if doc.get("success") is False:
        message = upstream_message(doc) or ""
        raise PayloadRejected(f"upstream answered success:false: {message!r}")
    if not isinstance(doc.get("data"), list):
        keys = ", ".join(sorted(map(str, doc))) or "none"
        raise PayloadRejected(f"body has no 'data' list (keys: {keys})")
    return doc["data"]


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


def per_million(value: Any) -> Any:
    """USD per token (number or numeric string) -> USD per 1M tokens, decimal-exact.

    Anything that is not a finite number (text, a boolean, a list, NaN) is returned as it
    came, so the normaliser quarantines the row and says why; None stays None (unknown)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return value
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return value
        if not number.is_finite():
            return value
    else:
        return value
    return float(number * 1_000_000)


def strings(value: Any) -> list[str] | None:
    """`value` if it is a list of strings, else None."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def types_from_outputs(outputs: Any) -> Any:
    """Output modalities -> types (`text` -> llm, `image` -> image_generation, ...)."""
    listed = strings(outputs)
    if listed is None:
        return outputs  # not a list of strings: the normaliser quarantines it
    return [OUTPUT_TYPES.get(v.strip().lower(), v) for v in listed]
