"""models.dev `api.json` (SPEC 6): `{provider_id: {..., "models": {model_id: {...}}}}`.

Both shapes seen in the wild are read: the live API puts the provider's fields next to
`models` (`{"id", "name", "env", "npm", "doc", "models"}`), the recorded aggregates in
`data/modelsdev/` nest them (`{"provider": {"name", ...}, "models": {...}}`). Each model
becomes `provider_id/model_key` (the key of the `models` object; an `id` field inside the
model, which can differ, is kept in `extra`), in the file's order. Costs are already USD
per 1M tokens. A provider entry without a `models` object is skipped; a body with no
provider at all is rejected.

The mapping is documented, field by field, in `docs/sources.md`.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PayloadRejected
from pipeline.sources import SourceSpec
from pipeline.sources._common import (
    ItemMemo,
    convert_all,
    extra_fields,
    parse_json,
    types_from_outputs,
)

DEFAULT_URL = "https://models.dev/api.json"

PRICES = ("input", "output", "cache_read", "cache_write")  # the same names as AiHubMix's
FEATURES: dict[str, tuple[str, ...]] = {
    "reasoning": ("thinking",),
    "tool_call": ("tools", "function_calling"),
    "structured_output": ("structured_outputs",),
}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def to_item(provider_id: str, provider_name: Any, key: str, model: Any) -> Any:
    """One models.dev model -> an AiHubMix-shaped item (`True` is the only true flag)."""
    if not isinstance(model, dict):
        return model  # quarantined: "row must be a JSON object"
    modalities = _object(model.get("modalities"))
    limit = _object(model.get("limit"))
    outputs = modalities.get("output")
    item: dict[str, Any] = {
        "model_id": f"{provider_id}/{key}",
        "types": [] if outputs is None else types_from_outputs(outputs),
        "features": sorted(
            {f for flag, fs in FEATURES.items() if model.get(flag) is True for f in fs}
        ),
        "input_modalities": modalities.get("input"),
        "context_length": limit.get("context"),
        "max_output": limit.get("output"),
        "provider_id": provider_id,
    }
    if provider_name is not None:
        item["provider_name"] = provider_name
    cost = model.get("cost")
    if isinstance(cost, dict):
        item["pricing"] = {k: v for k, v in cost.items() if k in PRICES}
        other = {k: v for k, v in cost.items() if k not in PRICES}
        if other:
            item["pricing_other"] = other
    elif cost is not None:
        item["pricing"] = cost  # not an object: quarantined with the reason
    return {**item, **extra_fields(model, drop=("cost",))}


def parse(body: bytes, memo: ItemMemo | None = None) -> list[Any]:
    doc = parse_json(body, deep=False)
    if not isinstance(doc, dict):
        raise PayloadRejected(f"body is a JSON {type(doc).__name__}, not an object of providers")
    providers = [
        (pid, p)
        for pid, p in doc.items()
        if isinstance(p, dict) and isinstance(p.get("models"), dict)
    ]
    if doc and not providers:
        keys = ", ".join(sorted(map(str, doc)))[:200]
        raise PayloadRejected(f"body holds no provider with a 'models' object (keys: {keys})")
    entries = []
    for provider_id, provider in providers:
        nested = _object(provider.get("provider"))
        name = nested.get("name", provider.get("name"))
        for key, model in provider["models"].items():
            entries.append(((provider_id, key), (provider_id, name, key, model)))
    return convert_all(entries, to_item, memo, doc)


SPEC = SourceSpec(name="modelsdev", default_url=DEFAULT_URL, parse=parse)
