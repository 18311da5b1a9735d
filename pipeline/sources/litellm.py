"""LiteLLM's `model_prices_and_context_window.json` (SPEC 6): `{model_id: spec, ...}`.

Each key is a model (in the file's key order); `sample_spec` documents the format and is
skipped, and so are top-level strings (`last_updated`), which are metadata. Costs are USD
per token and are converted here, decimal-exact, to USD per 1M tokens. A cost or a token
count that is not a number (say `"n/a"`) is passed on as sent, so the normaliser
quarantines that row with the reason; a spec that is not an object is quarantined too.

The mapping is documented, field by field, in `docs/sources.md`.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PayloadRejected
from pipeline.sources import SourceSpec
from pipeline.sources._common import (
    PER_TOKEN_UNIT,
    ItemMemo,
    convert_all,
    extra_fields,
    parse_json,
    per_million,
)

DEFAULT_URL = (
    "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"
)
SKIPPED = frozenset({"sample_spec"})

PRICES = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
}
COUNTS = {"max_input_tokens": "context_length", "max_output_tokens": "max_output"}
# mode -> type; any other mode (moderation, image_edit, ocr, search...) is kept as it is
MODES = {
    "chat": "llm",
    "completion": "llm",
    "responses": "llm",
    "embedding": "embedding",
    "image_generation": "image_generation",
    "audio_transcription": "stt",
    "audio_speech": "tts",
    "rerank": "rerank",
    "video_generation": "video",
}
TEXT_MODES = frozenset({"chat", "completion", "responses"})
FEATURES: dict[str, tuple[str, ...]] = {
    "supports_function_calling": ("tools", "function_calling"),
    "supports_tool_choice": ("tools", "function_calling"),
    "supports_reasoning": ("thinking",),
    "supports_response_schema": ("structured_outputs",),
    "supports_web_search": ("web",),
}
MODALITIES = {
    "supports_vision": "image",
    "supports_pdf_input": "pdf",
    "supports_audio_input": "audio",
    "supports_video_input": "video",
}


def to_item(model_id: str, spec: Any) -> Any:
    """One LiteLLM entry -> an AiHubMix-shaped item (`True` is the only true flag)."""
    if not isinstance(spec, dict):
        return spec  # quarantined: "row must be a JSON object"
    mode = spec.get("mode")
    if mode is None:
        types: Any = []
    elif isinstance(mode, str):
        types = [MODES.get(mode.strip().lower(), mode)]
    else:
        types = mode  # not a string: quarantined
    text = isinstance(mode, str) and mode.strip().lower() in TEXT_MODES
    modalities = ["text"] if text else []
    modalities += [m for flag, m in MODALITIES.items() if spec.get(flag) is True]
    item: dict[str, Any] = {
        "model_id": model_id,
        "types": types,
        "features": sorted(
            {f for flag, fs in FEATURES.items() if spec.get(flag) is True for f in fs}
        ),
        "input_modalities": modalities,
        **{column: spec.get(key) for key, column in COUNTS.items()},
        "pricing": {name: per_million(spec[key]) for key, name in PRICES.items() if key in spec},
    }
    return {**item, **extra_fields(spec, drop=(*PRICES, *COUNTS))}


def parse(body: bytes, memo: ItemMemo | None = None) -> list[Any]:
    doc = parse_json(body, deep=False)
    if not isinstance(doc, dict):
        raise PayloadRejected(f"body is a JSON {type(doc).__name__}, not an object of models")
    if doc and not any(isinstance(v, dict) for k, v in doc.items() if k not in SKIPPED):
        keys = ", ".join(sorted(map(str, doc)))[:200]
        raise PayloadRejected(f"body holds no model specs (keys: {keys})")
    entries = (
        (model_id, (model_id, spec))
        for model_id, spec in doc.items()
        if model_id not in SKIPPED and not isinstance(spec, str)
    )
    return convert_all(entries, to_item, memo, doc)


SPEC = SourceSpec(name="litellm", default_url=DEFAULT_URL, parse=parse, price_unit=PER_TOKEN_UNIT)
