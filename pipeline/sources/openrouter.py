"""OpenRouter `GET /api/v1/models` (SPEC 6): `{"data": [{"id", "pricing": {...}, ...}]}`.

Prices arrive as strings in USD per token (`"0.00000035"`); they are converted here, with
`decimal.Decimal`, to USD per 1M tokens (`0.35` exactly, no float noise), so the spec's
A price that is not a number is passed on as sent, and a
negative one (OpenRouter lists `-1` for routers such as `openrouter/auto`) is passed on
negative: the normaliser quarantines the row with the reason, it is never stored as a price.

The mapping is documented, field by field, in `docs/sources.md`.
"""

from __future__ import annotations

from typing import Any

from pipeline.sources import SourceSpec
from pipeline.sources._common import (
    PER_TOKEN_UNIT,
    ItemMemo,
    by_id,
    catalog_list,
    convert_all,
    extra_fields,
    parse_json,
    per_million,
    strings,
    types_from_outputs,
)

DEFAULT_URL = "https://openrouter.ai/api/v1/models"

# upstream pricing key -> AiHubMix pricing key; every other pricing key is kept, as sent,
# in extra.pricing_other (per request, per image, per web search... in OpenRouter's units)
PRICES = {
    "prompt": "input",
    "completion": "output",
    "input_cache_read": "cache_read",
    "input_cache_write": "cache_write",
}
# supported_parameters -> features (other parameters stay in extra.supported_parameters)
FEATURES: dict[str, tuple[str, ...]] = {
    "tools": ("tools", "function_calling"),
    "tool_choice": ("tools", "function_calling"),
    "reasoning": ("thinking",),
    "include_reasoning": ("thinking",),
    "structured_outputs": ("structured_outputs",),
    "response_format": ("structured_outputs",),
    "web_search_options": ("web",),
}
# input modality -> AiHubMix modality (`file` is OpenRouter's PDF/document input)
INPUT_MODALITIES = {"file": "pdf"}


def _modality(architecture: dict[str, Any]) -> tuple[Any, Any]:
    """(input modalities, output modalities): the lists, or parsed from the older
    `modality` string such as `text+image->text`."""
    inputs = architecture.get("input_modalities")
    outputs = architecture.get("output_modalities")
    modality = architecture.get("modality")
    if isinstance(modality, str) and "->" in modality:
        left, _, right = modality.partition("->")
        if inputs is None:
            inputs = [p for p in left.split("+") if p.strip()]
        if outputs is None:
            outputs = [p for p in right.split("+") if p.strip()]
    return inputs, outputs


def _inputs(value: Any) -> Any:
    listed = strings(value)
    if listed is None:
        return value
    return [INPUT_MODALITIES.get(v.strip().lower(), v) for v in listed]


def _features(params: Any) -> Any:
    listed = strings(params)
    if listed is None:
        return params
    return sorted({f for p in listed for f in FEATURES.get(p.strip().lower(), ())})


def to_item(model: Any) -> Any:
    """One OpenRouter model -> an AiHubMix-shaped item."""
    if not isinstance(model, dict):
        return model
    architecture = model.get("architecture")
    inputs, outputs = _modality(architecture if isinstance(architecture, dict) else {})
    top = model.get("top_provider")
    item: dict[str, Any] = {
        "model_id": model.get("id"),
        "desc": model.get("description"),
        "types": types_from_outputs(outputs),
        "features": _features(model.get("supported_parameters")),
        "input_modalities": _inputs(inputs),
        "context_length": model.get("context_length"),
        "max_output": top.get("max_completion_tokens") if isinstance(top, dict) else None,
    }
    pricing = model.get("pricing")
    if isinstance(pricing, dict):
        item["pricing"] = {PRICES[k]: per_million(v) for k, v in pricing.items() if k in PRICES}
        other = {k: v for k, v in pricing.items() if k not in PRICES}
        if other:
            item["pricing_other"] = other
    elif pricing is not None:
        item["pricing"] = pricing  # not an object: quarantined with the reason
    drop = ("id", "description", "context_length", "pricing")
    return {**item, **extra_fields(model, drop=drop)}


def parse(body: bytes, memo: ItemMemo | None = None) -> list[Any]:
    doc = parse_json(body, deep=False)
    return convert_all(by_id(catalog_list(doc)), to_item, memo, doc)


SPEC = SourceSpec(
    name="openrouter", default_url=DEFAULT_URL, parse=parse, price_unit=PER_TOKEN_UNIT
)
