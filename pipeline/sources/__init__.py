"""Source adapters: each turns its upstream body into items of the AiHubMix shape.

An adapter is a `SourceSpec`; `get_source(name)` finds one. The normaliser only ever sees
AiHubMix-shaped items, so every catalog lands in the same record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UnknownSource


@dataclass(frozen=True)
class SourceSpec:
    name: str
    default_url: str
    parse: Callable[..., list[Any]]  # (body, memo: ItemMemo | None = None) -> items
    # SPEC 1: prices are stored in USD per 1M tokens; adapters convert other units
    price_unit: str = "USD per 1M tokens"


def _registry() -> dict[str, SourceSpec]:
    from pipeline.sources import aihubmix, litellm, modelsdev, openai, openrouter

    specs = (
        aihubmix.SPEC,
        openai.AIHUBMIX_LEGACY,
        openai.SPEC,
        openrouter.SPEC,
        litellm.SPEC,
        modelsdev.SPEC,
    )
    return {spec.name: spec for spec in specs}


def get_source(name: str) -> SourceSpec:
    sources = _registry()
    try:
        return sources[name]
    except KeyError:
        raise UnknownSource(
            f"unknown source {name!r}; known sources: {', '.join(sorted(sources))}"
        ) from None


def source_names() -> list[str]:
    return sorted(_registry())
