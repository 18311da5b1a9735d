"""A deterministic synthetic AiHubMix catalog and its poll history, for the ingest benchmark.

`catalog_history` yields `(fetched_at, body)` pairs 5 minutes apart. The first poll is the
initial catalog; after that a share of polls (`changed_poll_share`) change about
`change_rate` of the models (mostly price changes, some additions and removals, rare
description edits), and every other poll returns exactly the bytes of the previous one,
as a real API does when nothing moved.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

START = datetime(2025, 1, 1, 0, 0, 0)  # naive UTC, like the store
SPACING = timedelta(minutes=5)

# change kind -> weight, on a changed poll
CHANGE_KINDS = (("price", 0.80), ("add", 0.08), ("remove", 0.07), ("description", 0.05))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_VENDORS = _words(
    "openai anthropic google meta mistral deepseek qwen alicloud zhipu moonshot xai "
    "cohere baidu tencent bytedance minimax stepfun perplexity ai21 nvidia ibm amazon "
    "microsoft 01ai"
)
_FAMILIES = _words(
    "gpt claude gemini llama mixtral deepseek qwen glm kimi grok command ernie hunyuan "
    "doubao abab step sonar jamba nemotron granite nova phi yi flux imagen veo whisper "
    "tts"
)
_VARIANTS = _words(
    "mini pro flash turbo lite max plus ultra instruct chat vision reasoner coder preview "
    "latest haiku sonnet opus nano"
)
_WORDS = _words(  # real catalogs carry non-ASCII text
    "a fast capable multilingual model for reasoning coding agents with long context and "
    "tool use optimised low latency tasks high quality outputs supports structured JSON "
    "function calling image understanding across domains the latest release of its family "
    "balanced cost performance enterprise workloads chat math science analysis retrieval "
    "summarisation translation frontier open weights instruction-tuned distilled "
    "efficient deployment in production 多语言 推理 模型 长上下文 支持 工具调用"
)
# SPEC 1's documented sets (see schemas.record), with realistic frequencies
_TYPES = (
    ("llm", 0.82),
    ("image_generation", 0.06),
    ("embedding", 0.04),
    ("video", 0.03),
    ("tts", 0.02),
    ("stt", 0.015),
    ("rerank", 0.015),
)
_FEATURES = _words("thinking tools function_calling web deepsearch long_context structured_outputs")
_MODALITY_SETS = (
    ("text", 0.40),
    ("text,image", 0.25),
    ("text,image,pdf", 0.15),
    ("text,image,video", 0.10),
    ("text,image,audio,video,pdf", 0.07),
    ("text,audio", 0.03),
)
_CONTEXTS = (8192, 32768, 65536, 128000, 131072, 200000, 256000, 1000000, 1048576)
_MAX_OUTPUTS = (4096, 8192, 16384, 32768, 65536, 128000)


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


def _description(rng: random.Random) -> str:
    target = rng.randint(100, 300)
    words: list[str] = []
    length = -1
    while length < target:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def _price(rng: random.Random) -> float:
    # log-uniform between $0.02 and $30 per 1M tokens, rounded like a price list
    return round(10 ** rng.uniform(-1.7, 1.48), 4)


class _Catalog:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.items: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.serial = 0

    def new_model(self) -> dict[str, Any]:
        rng = self.rng
        while True:
            self.serial += 1
            vendor = rng.choice(_VENDORS)
            name = f"{rng.choice(_FAMILIES)}-{rng.choice(_VARIANTS)}-{self.serial}"
            model_id = f"{vendor}/{name}"
            if model_id not in self.ids:
                break
        kind = _pick(rng, _TYPES)
        price_in = _price(rng)
        pricing: dict[str, float] = {"input": price_in}
        if kind == "llm":
            pricing["output"] = round(price_in * rng.choice((2, 3, 4, 5, 8)), 4)
            if rng.random() < 0.5:
                pricing["cache_read"] = round(price_in * 0.1, 5)
            features = sorted(f for f in _FEATURES if rng.random() < 0.45)
            modalities = _pick(rng, _MODALITY_SETS)
        else:
            features = []
            modalities = "text" if kind != "stt" else "audio"
        item = {
            "model_id": model_id,
            "desc": _description(rng),
            "model_name": name.replace("-", " ").title(),
            "pricing": pricing,
            "types": kind,
            "features": ",".join(features),
            "input_modalities": modalities,
            "max_output": rng.choice(_MAX_OUTPUTS) if kind == "llm" else 0,
            "context_length": rng.choice(_CONTEXTS) if kind == "llm" else 0,
        }
        self.ids.add(model_id)
        return item

    def change(self, kind: str) -> None:
        rng = self.rng
        if kind == "add" or not self.items:
            self.items.insert(rng.randrange(len(self.items) + 1), self.new_model())
            return
        index = rng.randrange(len(self.items))
        if kind == "remove":
            removed = self.items.pop(index)
            self.ids.discard(removed["model_id"])
            return
        item = dict(self.items[index])
        if kind == "price":
            pricing = dict(item["pricing"])
            factor = rng.choice((0.5, 0.8, 0.9, 1.1, 1.25, 2.0))
            for key in pricing:
                pricing[key] = round(pricing[key] * factor, 5)
            item["pricing"] = pricing
        else:  # description edit
            item["desc"] = _description(rng)
        self.items[index] = item

    def body(self) -> bytes:
        doc = {"data": self.items, "message": "", "success": True}
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def catalog_history(
    n_models: int = 1000,
    polls: int = 1000,
    change_rate: float = 0.01,
    changed_poll_share: float = 0.3,
    seed: int = 0,
) -> Iterator[tuple[datetime, bytes]]:
    """`polls` catalog bodies, oldest first, 5 minutes apart; the same seed, the same bytes.

    A changed poll changes about `change_rate * n_models` models (at least one); an
    unchanged poll yields the previous poll's very bytes.
    """
    rng = random.Random(seed)
    catalog = _Catalog(rng)
    catalog.items = [catalog.new_model() for _ in range(n_models)]
    kinds, weights = zip(*CHANGE_KINDS, strict=True)
    body = catalog.body()
    for poll in range(polls):
        if poll > 0 and rng.random() < changed_poll_share:
            mean = n_models * change_rate
            count = max(1, round(rng.uniform(0.5, 1.5) * mean))
            for kind in rng.choices(kinds, weights=weights, k=count):
                catalog.change(kind)
            body = catalog.body()
        yield START + poll * SPACING, body
