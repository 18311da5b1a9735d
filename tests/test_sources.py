"""SPEC 6: the OpenRouter, LiteLLM, models.dev and OpenAI-compatible adapters.

The round-trip tests replay the real snapshots bundled in `data/` and check, as of each
snapshot, the ids (in order) and prices against values computed here, independently of
the adapters, from the raw JSON: prices are parsed as exact fractions from the JSON text
(`parse_float=Fraction`) and scaled to per 1M, and the rows that must be quarantined
(negative prices) are counted.
"""

from __future__ import annotations

import gzip
import json
import logging
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.errors import PayloadRejected
from pipeline.ingest import payload_files, replay, snapshot
from pipeline.normalise import normalise_items
from pipeline.sources import get_source, source_names
from pipeline.store import Store
from tests.conftest import DATA, EMPTY_RECORD, run_cli

PRICE_COLUMNS = ("input_price", "output_price", "cache_read_price", "cache_write_price")
Row = tuple[str, float | None, float | None, float | None, float | None]


def snapshots(name: str) -> list[tuple[datetime, Path]]:
    return payload_files(DATA / name)


def raw(path: Path) -> Any:
    """The raw payload, every JSON number with a fraction part as an exact Fraction."""
    return json.loads(gzip.decompress(path.read_bytes()), parse_float=Fraction)


def number(value: Any, scale: int = 1) -> float | None:
    return None if value is None else float(Fraction(value) * scale)


# -- what each payload must give, computed from the raw JSON ---------------------------------
def openrouter_expected(doc: Any) -> tuple[list[Row], list[str]]:
    keys = ("prompt", "completion", "input_cache_read", "input_cache_write")
    rows, quarantined = [], []
    for m in doc["data"]:
        prices = [m["pricing"].get(k) for k in keys]
        if any(p is not None and Fraction(p) < 0 for p in prices):
            quarantined.append(m["id"])
        else:
            rows.append((m["id"], *(number(p, 10**6) for p in prices)))
    return rows, quarantined


def litellm_expected(doc: Any) -> tuple[list[Row], list[str]]:
    keys = (
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
    )
    rows, quarantined = [], []
    for model_id, spec in doc.items():
        if model_id == "sample_spec" or not isinstance(spec, dict):
            continue
        prices = [spec.get(k) for k in keys]
        if any(p is not None and Fraction(p) < 0 for p in prices):
            quarantined.append(model_id)
        else:
            rows.append((model_id, *(number(p, 10**6) for p in prices)))
    return rows, quarantined


def modelsdev_expected(doc: Any) -> tuple[list[Row], list[str]]:
    rows, quarantined = [], []
    for provider_id, provider in doc.items():
        for key, model in provider["models"].items():
            cost = model.get("cost") or {}
            prices = [cost.get(k) for k in ("input", "output", "cache_read", "cache_write")]
            model_id = f"{provider_id}/{key}"
            if any(p is not None and p < 0 for p in prices):
                quarantined.append(model_id)
            else:
                rows.append((model_id, *(number(p) for p in prices)))
    return rows, quarantined


EXPECTED = {
    "openrouter": openrouter_expected,
    "litellm": litellm_expected,
    "modelsdev": modelsdev_expected,
}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory):
    """Every bundled history of the three sources, replayed into one store."""
    path = tmp_path_factory.mktemp("sources") / "sources.duckdb"
    with Store.open(path) as store:
        results = {
            name: replay(store, snapshots(name), source=name, accept_mass_removal=True)
            for name in EXPECTED
        }
        yield store, results


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay_reproduces_ids_prices_and_quarantine_of_every_snapshot(replayed, name):
    store, results = replayed
    files = snapshots(name)
    assert [r.outcome for r in results[name]] == ["new"] * len(files)
    for (fetched_at, path), result in zip(files, results[name], strict=True):
        want_rows, want_quarantined = EXPECTED[name](raw(path))
        got = store.catalog_as_of(name, fetched_at)
        assert list(got.select("model_id", *PRICE_COLUMNS).iter_rows()) == want_rows
        assert result.quarantined == len(want_quarantined)
        assert result.models == len(want_rows)
        quarantined = store.execute(
            "SELECT model_id FROM quarantine WHERE content_hash = ? ORDER BY position",
            [result.content_hash],
        )
        assert [q[0] for q in quarantined] == want_quarantined


def test_the_bundled_snapshots_hold_what_the_tests_rely_on(replayed):
    """The copied subsets show real changes, both OpenRouter formats, and routers."""
    store, results = replayed
    assert [r.quarantined for r in results["openrouter"]] == [1, 1, 1, 5, 5, 5]
    assert [len(r.changed) for r in results["litellm"]] == [0, 22, 0, 1, 142]
    assert [r.models for r in results["modelsdev"]] == [741, 1828, 5276]
    reasons = store.execute(
        "SELECT DISTINCT model_id, reason FROM quarantine WHERE source = 'openrouter' "
        "ORDER BY model_id"
    )
    assert [m for m, _ in reasons] == [
        "openrouter/auto",
        "openrouter/auto",
        "openrouter/auto-beta",
        "openrouter/bodybuilder",
        "openrouter/fusion",
        "openrouter/pareto-code",
    ]
    assert all(
        r.startswith("input_price must not be negative (got '-1000000.0')") for _, r in reasons
    )
    first, transition = snapshots("openrouter")[0][1], snapshots("openrouter")[1][1]
    assert "input_modalities" not in raw(first)["data"][0]["architecture"]
    assert "input_modalities" in raw(transition)["data"][0]["architecture"]


def test_old_modality_strings_and_new_lists_give_the_same_modalities(replayed):
    store, _ = replayed
    (old_at, _), (new_at, _) = snapshots("openrouter")[:2]
    columns = ("model_id", "types", "input_modalities")
    old = store.catalog_as_of("openrouter", old_at).select(columns)
    new = store.catalog_as_of("openrouter", new_at).select(columns)
    common = set(old["model_id"]) & set(new["model_id"])
    assert len(common) > 280
    assert (
        old.filter(old["model_id"].is_in(common))
        .sort("model_id")
        .equals(new.filter(new["model_id"].is_in(common)).sort("model_id"))
    )


# -- case tables: each adapter's mapping ------------------------------------------------------
def record(source: str, payload: Any) -> dict[str, Any]:
    """The one normalised row (or the quarantine reason) an adapter makes of a payload."""
    items = get_source(source).parse(json.dumps(payload).encode())
    norm = normalise_items(items, source=source)
    if norm.quarantine:
        return {"quarantined": norm.quarantine[0].reason}
    (row,) = norm.rows
    row = {k: v for k, v in row.items() if k not in ("source", "position", "description")}
    row["extra"] = json.loads(row["extra"]) if row["extra"] else None
    return row


def openrouter_payload(**fields: Any) -> dict[str, Any]:
    return {"data": [{"id": "v/m", **fields}]}


# the record with no description or extra: each adapter sets those its own way
BARE = {k: v for k, v in EMPTY_RECORD.items() if k not in ("description", "extra")}


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param({}, {}, id="bare"),
        pytest.param(
            {"pricing": {"prompt": "0.00000035", "completion": "0.0000004"}},
            {"input_price": 0.35, "output_price": 0.4},
            id="per-token strings to per 1M, exactly",
        ),
        pytest.param(
            {
                "pricing": {
                    "prompt": "0.000003",
                    "input_cache_read": "0.0000003",
                    "input_cache_write": "0.00000375",
                    "completion": "0.000015",
                }
            },
            {
                "input_price": 3.0,
                "output_price": 15.0,
                "cache_read_price": 0.3,
                "cache_write_price": 3.75,
            },
            id="cache prices",
        ),
        pytest.param(
            {"pricing": {"prompt": "0", "completion": "0", "image": "0.001", "request": "0"}},
            {
                "input_price": 0.0,
                "output_price": 0.0,
                "extra": {"pricing_other": {"image": "0.001", "request": "0"}},
            },
            id="free, other prices kept as sent",
        ),
        pytest.param(
            {"pricing": {"prompt": 1e-06, "completion": 2}},
            {"input_price": 1.0, "output_price": 2000000.0},
            id="numbers too",
        ),
        pytest.param(
            {"pricing": {"prompt": "-1", "completion": "-1"}},
            {
                "quarantined": "input_price must not be negative (got '-1000000.0'); "
                "output_price must not be negative (got '-1000000.0')"
            },
            id="router -1 quarantined",
        ),
        pytest.param(
            {"pricing": {"prompt": "n/a"}},
            {"quarantined": "pricing.input must be a number, got 'n/a'"},
            id="text price quarantined",
        ),
        pytest.param(
            {"pricing": {"prompt": True}},
            {"quarantined": "pricing.input must be a number, got boolean True"},
            id="boolean price quarantined",
        ),
        pytest.param(
            {"pricing": "free"},
            {"quarantined": "pricing must be an object, got str"},
            id="pricing not an object",
        ),
        pytest.param(
            {"architecture": {"modality": "text+image->text", "tokenizer": "GPT"}},
            {
                "types": ["llm"],
                "input_modalities": ["image", "text"],
                "extra": {"architecture": {"modality": "text+image->text", "tokenizer": "GPT"}},
            },
            id="old modality string",
        ),
        pytest.param(
            {
                "architecture": {
                    "input_modalities": ["text", "file", "audio", "video"],
                    "output_modalities": ["text", "image"],
                }
            },
            {
                "types": ["image_generation", "llm"],
                "input_modalities": ["audio", "pdf", "text", "video"],
                "extra": {
                    "architecture": {
                        "input_modalities": ["text", "file", "audio", "video"],
                        "output_modalities": ["text", "image"],
                    }
                },
            },
            id="modality lists, file is pdf",
        ),
        pytest.param(
            {"architecture": {"input_modalities": ["text"], "output_modalities": ["embeddings"]}},
            {
                "types": ["embedding"],
                "input_modalities": ["text"],
                "extra": {
                    "architecture": {
                        "input_modalities": ["text"],
                        "output_modalities": ["embeddings"],
                    }
                },
            },
            id="embeddings",
        ),
        pytest.param(
            {"architecture": {"modality": "text->audio"}},
            {
                "types": ["tts"],
                "input_modalities": ["text"],
                "extra": {"architecture": {"modality": "text->audio"}},
            },
            id="audio output is tts",
        ),
        pytest.param(
            {
                "supported_parameters": [
                    "tools",
                    "temperature",
                    "include_reasoning",
                    "response_format",
                    "web_search_options",
                ]
            },
            {
                "features": ["function_calling", "structured_outputs", "thinking", "tools", "web"],
                "extra": {
                    "supported_parameters": [
                        "tools",
                        "temperature",
                        "include_reasoning",
                        "response_format",
                        "web_search_options",
                    ]
                },
            },
            id="supported parameters",
        ),
        pytest.param(
            {"supported_parameters": ["tool_choice", "reasoning", "structured_outputs"]},
            {
                "features": ["function_calling", "structured_outputs", "thinking", "tools"],
                "extra": {
                    "supported_parameters": ["tool_choice", "reasoning", "structured_outputs"]
                },
            },
            id="supported parameters, other spellings",
        ),
        pytest.param(
            {
                "context_length": 131072,
                "top_provider": {"context_length": 32000, "max_completion_tokens": 8192},
            },
            {
                "context_length": 131072,
                "max_output": 8192,
                "extra": {"top_provider": {"context_length": 32000, "max_completion_tokens": 8192}},
            },
            id="limits",
        ),
        pytest.param(
            {"context_length": "lots"},
            {"quarantined": "context_length must be a number, got 'lots'"},
            id="text count quarantined",
        ),
        pytest.param(
            {"name": "V: M", "created": 1, "canonical_slug": "v/m-2025", "pricing": {}},
            {"extra": {"name": "V: M", "created": 1, "canonical_slug": "v/m-2025"}},
            id="everything else is extra",
        ),
    ],
)
def test_openrouter_mapping(fields, want):
    assert record("openrouter", openrouter_payload(**fields)) == (
        want if "quarantined" in want else {"model_id": "v/m", **BARE, "extra": None, **want}
    )


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        pytest.param(
            {
                "mode": "chat",
                "input_cost_per_token": 2.5e-06,
                "output_cost_per_token": 1e-05,
                "cache_read_input_token_cost": 1.25e-06,
                "max_input_tokens": 128000,
                "max_output_tokens": 16384,
                "litellm_provider": "openai",
            },
            {
                "types": ["llm"],
                "input_modalities": ["text"],
                "input_price": 2.5,
                "output_price": 10.0,
                "cache_read_price": 1.25,
                "context_length": 128000,
                "max_output": 16384,
                "extra": {"mode": "chat", "litellm_provider": "openai"},
            },
            id="chat",
        ),
        pytest.param(
            {"cache_creation_input_token_cost": 3.75e-06, "input_cost_per_token": 3e-07},
            {"cache_write_price": 3.75, "input_price": 0.3},
            id="cache write, no mode",
        ),
        pytest.param(
            {"input_cost_per_token": "0.000001"},
            {"input_price": 1.0},
            id="numeric string accepted",
        ),
        pytest.param(
            {"input_cost_per_token": "n/a"},
            {"quarantined": "pricing.input must be a number, got 'n/a'"},
            id="text cost quarantined",
        ),
        pytest.param(
            {"max_input_tokens": "128k"},
            {"quarantined": "context_length must be a number, got '128k'"},
            id="text count quarantined",
        ),
        pytest.param(
            {"max_output_tokens": None, "max_tokens": 4096},
            {"extra": {"max_tokens": 4096}},
            id="null count is unknown, max_tokens kept",
        ),
        pytest.param(
            {"input_cost_per_token": -1e-06},
            {"quarantined": "input_price must not be negative (got '-1.0')"},
            id="negative cost quarantined",
        ),
        pytest.param(
            {
                "mode": "chat",
                "supports_function_calling": True,
                "supports_reasoning": True,
                "supports_response_schema": True,
                "supports_web_search": True,
                "supports_vision": True,
                "supports_pdf_input": True,
                "supports_audio_input": True,
                "supports_video_input": True,
            },
            {
                "types": ["llm"],
                "features": ["function_calling", "structured_outputs", "thinking", "tools", "web"],
                "input_modalities": ["audio", "image", "pdf", "text", "video"],
                "extra": {
                    "mode": "chat",
                    "supports_function_calling": True,
                    "supports_reasoning": True,
                    "supports_response_schema": True,
                    "supports_web_search": True,
                    "supports_vision": True,
                    "supports_pdf_input": True,
                    "supports_audio_input": True,
                    "supports_video_input": True,
                },
            },
            id="every flag",
        ),
        pytest.param(
            {"mode": "chat", "supports_tool_choice": True, "supports_vision": False},
            {
                "types": ["llm"],
                "features": ["function_calling", "tools"],
                "input_modalities": ["text"],
                "extra": {"mode": "chat", "supports_tool_choice": True, "supports_vision": False},
            },
            id="tool choice, false flag",
        ),
        pytest.param(
            {"mode": "chat", "supports_vision": "yes"},
            {
                "types": ["llm"],
                "input_modalities": ["text"],
                "extra": {"mode": "chat", "supports_vision": "yes"},
            },
            id="only true is true",
        ),
    ],
)
def test_litellm_mapping(spec, want):
    assert record("litellm", {"m": spec}) == (
        want if "quarantined" in want else {"model_id": "m", **BARE, "extra": None, **want}
    )


@pytest.mark.parametrize(
    ("mode", "types", "modalities"),
    [
        ("chat", ["llm"], ["text"]),
        ("completion", ["llm"], ["text"]),
        ("responses", ["llm"], ["text"]),
        ("embedding", ["embedding"], []),
        ("image_generation", ["image_generation"], []),
        ("audio_transcription", ["stt"], []),
        ("audio_speech", ["tts"], []),
        ("rerank", ["rerank"], []),
        ("video_generation", ["video"], []),
        ("moderation", ["moderation"], []),
        ("ocr", ["ocr"], []),
    ],
)
def test_litellm_modes(mode, types, modalities):
    row = record("litellm", {"m": {"mode": mode}})
    assert (row["types"], row["input_modalities"]) == (types, modalities)


def test_litellm_keeps_key_order_and_skips_the_sample_and_metadata():
    body = json.dumps(
        {"sample_spec": {"mode": "chat"}, "z": {}, "last_updated": "2026-07-01", "a": {}, "m": []}
    ).encode()
    items = get_source("litellm").parse(body)
    norm = normalise_items(items, source="litellm")
    assert norm.ids == ["z", "a"]
    assert [(q.position, q.reason) for q in norm.quarantine] == [
        (2, "row must be a JSON object, got list; model_id is missing")
    ]


MODELSDEV_MODEL = {
    "name": "GPT-4o",
    "cost": {"input": 2.5, "output": 10, "cache_read": 1.25, "context_over_200k": {"input": 5}},
    "limit": {"context": 128000, "output": 16384},
    "modalities": {"input": ["text", "image", "pdf"], "output": ["text"]},
    "reasoning": False,
    "tool_call": True,
    "structured_output": True,
}
MODELSDEV_ROW = {
    "model_id": "openai/gpt-4o",
    **BARE,
    "types": ["llm"],
    "features": ["function_calling", "structured_outputs", "tools"],
    "input_modalities": ["image", "pdf", "text"],
    "context_length": 128000,
    "max_output": 16384,
    "input_price": 2.5,
    "output_price": 10.0,
    "cache_read_price": 1.25,
}
MODELSDEV_EXTRA = {
    "name": "GPT-4o",
    "limit": {"context": 128000, "output": 16384},
    "modalities": {"input": ["text", "image", "pdf"], "output": ["text"]},
    "reasoning": False,
    "tool_call": True,
    "structured_output": True,
    "pricing_other": {"context_over_200k": {"input": 5}},
    "provider_id": "openai",
    "provider_name": "OpenAI",
}


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        pytest.param(
            {
                "openai": {
                    "provider": {"name": "OpenAI", "npm": "@ai-sdk/openai"},
                    "models": {"gpt-4o": MODELSDEV_MODEL},
                }
            },
            {**MODELSDEV_ROW, "extra": MODELSDEV_EXTRA},
            id="recorded aggregate shape",
        ),
        pytest.param(
            {
                "openai": {
                    "id": "openai",
                    "name": "OpenAI",
                    "models": {"gpt-4o": {**MODELSDEV_MODEL, "id": "gpt-4o"}},
                }
            },
            {**MODELSDEV_ROW, "extra": {**MODELSDEV_EXTRA, "id": "gpt-4o"}},
            id="live api.json shape",
        ),
        pytest.param(
            {
                "openai": {
                    "models": {"gpt-4o": {"reasoning": True, "modalities": {"output": ["image"]}}}
                }
            },
            {
                "model_id": "openai/gpt-4o",
                **BARE,
                "types": ["image_generation"],
                "features": ["thinking"],
                "extra": {
                    "reasoning": True,
                    "modalities": {"output": ["image"]},
                    "provider_id": "openai",
                },
            },
            id="image output, reasoning",
        ),
        pytest.param(
            {"openai": {"models": {"gpt-4o": {"cost": {"input": -1}}}}},
            {"quarantined": "input_price must not be negative (got '-1.0')"},
            id="negative cost quarantined",
        ),
        pytest.param(
            {"openai": {"models": {"gpt-4o": {"limit": {"context": "big"}}}}},
            {"quarantined": "context_length must be a number, got 'big'"},
            id="text limit quarantined",
        ),
    ],
)
def test_modelsdev_mapping(payload, want):
    assert record("modelsdev", payload) == want


def test_modelsdev_ids_are_provider_slash_key_in_file_order():
    body = json.dumps(
        {"b": {"models": {"x/y": {}, "a": {}}}, "a": {"models": {"z": {}}}, "c": {"name": "C"}}
    ).encode()
    assert [i["model_id"] for i in get_source("modelsdev").parse(body)] == ["b/x/y", "b/a", "a/z"]


OPENAI_MODEL = {
    "id": "gpt-4o-mini",
    "object": "model",
    "created": 1626777600,
    "owned_by": "OpenAI",
    "root": "gpt-4o-mini",
    "parent": None,
}


@pytest.mark.parametrize("kind", ["openai", "aihubmix-legacy"])
@pytest.mark.parametrize(
    ("payload", "want"),
    [
        pytest.param(
            {"object": "list", "data": [OPENAI_MODEL]},
            {
                "model_id": "gpt-4o-mini",
                **BARE,
                "extra": {k: v for k, v in OPENAI_MODEL.items() if k != "id"},
            },
            id="openai list",
        ),
        pytest.param(
            {"success": True, "data": [{"id": "m", "owned_by": "x", "pricing": 1}]},
            {"model_id": "m", **BARE, "extra": {"owned_by": "x", "upstream_pricing": 1}},
            id="new-api envelope; a same-named field cannot pose as ours",
        ),
        pytest.param(
            {"data": [{"object": "model"}]},
            {"quarantined": "model_id is missing"},
            id="no id",
        ),
    ],
)
def test_openai_mapping(kind, payload, want):
    assert record(kind, payload) == want


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            b'{"success": false, "message": "\xe6\x97\xa0\xe6\x95\x88"}',
            "upstream answered success:false: '无效'",
        ),
        (
            b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}',
            "upstream answered an error: 'Incorrect API key'",
        ),
        (b"<html>502</html>", "body is not JSON (JSONDecodeError): '<html>502</html>'"),
        (b'{"object": "list"}', "body has no 'data' list (keys: object)"),
        (b"[]", "body is a JSON list, not an object"),
    ],
)
def test_openai_rejects_what_is_not_a_list(body, error):
    with pytest.raises(PayloadRejected) as caught:
        get_source("openai").parse(body)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("source", "body", "error"),
    [
        (
            "openrouter",
            b'{"success": false, "message": "down"}',
            "upstream answered success:false: 'down'",
        ),
        ("openrouter", b'{"models": []}', "body has no 'data' list (keys: models)"),
        ("litellm", b"[1]", "body is a JSON list, not an object of models"),
        (
            "litellm",
            b'{"success": false, "message": "x"}',
            "body holds no model specs (keys: message, success)",
        ),
        ("modelsdev", b'"x"', "body is a JSON str, not an object of providers"),
        (
            "modelsdev",
            b'{"a": {"name": "A"}}',
            "body holds no provider with a 'models' object (keys: a)",
        ),
    ],
)
def test_payloads_that_are_not_catalogs_are_rejected(source, body, error):
    with pytest.raises(PayloadRejected) as caught:
        get_source(source).parse(body)
    assert str(caught.value) == error


def test_registry_names_default_urls_and_units():
    assert source_names() == [
        "aihubmix",
        "aihubmix-legacy",
        "litellm",
        "modelsdev",
        "openai",
        "openrouter",
    ]
    specs = {name: get_source(name) for name in source_names()}
    assert {n: s.default_url for n, s in specs.items()} == {
        "aihubmix": "https://aihubmix.com/api/v1/models",
        "aihubmix-legacy": "https://aihubmix.com/v1/models",
        "litellm": "https://raw.githubusercontent.com/BerriAI/litellm/main/"
        "model_prices_and_context_window.json",
        "modelsdev": "https://models.dev/api.json",
        "openai": "https://api.openai.com/v1/models",
        "openrouter": "https://openrouter.ai/api/v1/models",
    }
    assert (
        specs["openrouter"].price_unit
        == specs["litellm"].price_unit
        == ("USD per 1M tokens (converted from USD per token)")
    )
    assert specs["modelsdev"].price_unit == "USD per 1M tokens"


@pytest.mark.parametrize("name", ["openrouter", "litellm", "modelsdev", "aihubmix-legacy"])
def test_snapshot_fetches_the_default_url_of_every_source(store, name):
    if name == "aihubmix-legacy":
        body = (DATA / "aihubmix-docs" / "docs-legacy-v1-models.json").read_bytes()
    else:
        body = gzip.decompress(snapshots(name)[-1][1].read_bytes())
    urls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, content=body, headers={"ETag": '"v1"'})

    at = datetime(2026, 11, 1)
    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        result = snapshot(store, source=name, client=client, now=lambda: at)
    spec = get_source(name)
    assert urls == [spec.default_url]
    assert (result.outcome, result.source) == ("new", name)
    want = normalise_items(spec.parse(body), source=name).frame.drop("row_hash")
    assert store.catalog_as_of(name, at).equals(want)


# -- tokens ----------------------------------------------------------------------------------
TOKENS = {
    "sk-team-a-5d1c0ffee5ecret": ["gpt-4o", "claude-haiku-4-5"],
    "sk-team-b-7b0bacafe5ecret": ["gpt-4o", "deepseek-v3"],
}


def legacy_list(ids: list[str]) -> bytes:
    return json.dumps(
        {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": 1, "owned_by": "x"} for i in ids],
        }
    ).encode()


def token_handler(seen: list[str]):
    """A one-api style `/v1/models`: each token gets its own list, others get a 401."""

    def handle(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        seen.append(auth)
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or token not in TOKENS:
            return httpx.Response(401, json={"error": {"message": "invalid token"}})
        return httpx.Response(
            200, content=legacy_list(TOKENS[token]), headers={"Content-Type": "application/json"}
        )

    return handle


def test_token_scoped_lists_are_separate_sources(tmp_path):
    seen: list[str] = []
    t0 = datetime(2026, 3, 1)
    with (
        Store.open(tmp_path / "t.duckdb") as store,
        httpx.Client(transport=httpx.MockTransport(token_handler(seen))) as client,
    ):
        results = [
            snapshot(
                store,
                source=name,
                kind="aihubmix-legacy",
                url="http://gw.test/v1/models",
                client=client,
                token=token,
                now=lambda: t0,
            )
            for name, token in zip(("aihubmix-team-a", "aihubmix-team-b"), TOKENS, strict=True)
        ]
        assert [(r.source, r.outcome, r.added) for r in results] == [
            ("aihubmix-team-a", "new", ["claude-haiku-4-5", "gpt-4o"]),
            ("aihubmix-team-b", "new", ["deepseek-v3", "gpt-4o"]),
        ]
        assert [
            store.catalog_as_of(s, t0)["model_id"].to_list()
            for s in ("aihubmix-team-a", "aihubmix-team-b")
        ] == list(TOKENS.values())
        assert store.execute(
            "SELECT source, list(model_id ORDER BY model_id) FROM model_versions "
            "GROUP BY source ORDER BY source"
        ) == [
            ("aihubmix-team-a", ["claude-haiku-4-5", "gpt-4o"]),
            ("aihubmix-team-b", ["deepseek-v3", "gpt-4o"]),
        ]
    assert seen == [f"Bearer {t}" for t in TOKENS]


def test_the_token_reaches_no_database_log_or_result(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    token = "sk-team-a-5d1c0ffee5ecret"
    seen: list[str] = []
    path = tmp_path / "secret.duckdb"
    with (
        Store.open(path) as store,
        httpx.Client(transport=httpx.MockTransport(token_handler(seen))) as client,
    ):
        texts = []
        for minute, (tok, force) in enumerate([(token, False), (token, True), ("sk-wrong", True)]):
            try:
                result = snapshot(
                    store,
                    source="aihubmix-team-a",
                    kind="aihubmix-legacy",
                    url="http://gw.test/v1/models",
                    client=client,
                    token=tok,
                    force=force,
                    now=lambda m=minute: datetime(2026, 3, 1, 0, m),
                )
                texts.append(json.dumps(result.as_dict()))
            except Exception as exc:  # the wrong token's 401
                texts.append(repr(exc))
        texts += [repr(r) for r in store.execute("SELECT * FROM fetch_log")]
        texts += [
            store.raw_payload(h).decode()
            for (h,) in store.execute("SELECT content_hash FROM raw_payloads")
        ]
        for table in ("model_versions", "quarantine", "snapshots", "orders", "meta"):
            texts += [repr(r) for r in store.execute(f"SELECT * FROM {table}")]
        outcomes = [r[0] for r in store.execute("SELECT outcome FROM fetch_log ORDER BY fetch_id")]
    assert seen == [f"Bearer {token}", f"Bearer {token}", "Bearer sk-wrong"]
    assert outcomes == ["new", "unchanged", "rejected"]
    assert caplog.records  # httpx's request lines were captured, and hold no token
    texts += [r.getMessage() for r in caplog.records]
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert files
    for secret in (token, "sk-wrong"):
        assert not [t for t in texts if secret in t]
        assert not [p.name for p in files if secret.encode() in p.read_bytes()]


# -- the command line ------------------------------------------------------------------------
def test_cli_replays_openrouter_and_lists_the_newest_snapshot(tmp_path):
    db = str(tmp_path / "or.duckdb")
    done = run_cli(
        "replay", "data/openrouter", "--source", "openrouter", "--db", db, "--accept-mass-removal"
    )
    assert done.returncode == 0, done.stderr
    listed = run_cli("models", "--source", "openrouter", "--format", "json", "--db", db)
    assert listed.returncode == 0, listed.stderr
    newest = raw(snapshots("openrouter")[-1][1])
    want, _ = openrouter_expected(newest)
    served = json.loads(listed.stdout)
    assert [m["model_id"] for m in served["data"]] == [r[0] for r in want]
    assert served["data"][0]["pricing"] == {
        k: v
        for k, v in zip(("input", "output", "cache_read", "cache_write"), want[0][1:], strict=True)
        if v is not None
    }


def _deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("source", ["aihubmix", "openrouter", "litellm", "modelsdev", "openai"])
def test_the_memo_skips_only_entries_equal_to_ones_already_checked(source):
    """With an `ItemMemo`, an entry equal to the last body's is reused and not walked for
    depth again; a changed entry, or anything outside the entries, still is. A rejected
    body leaves the memo as it was."""
    from pipeline.errors import PayloadRejected
    from pipeline.sources._common import MAX_DEPTH, ItemMemo

    spec = get_source(source)
    if source == "litellm":
        doc = {"m-a": {"input_cost_per_token": 1e-6}, "m-b": {"input_cost_per_token": 2e-6}}
        entry = lambda d: d["m-b"]  # noqa: E731
    elif source == "modelsdev":
        doc = {"p": {"models": {"a": {"id": "a"}, "b": {"id": "b"}}}}
        entry = lambda d: d["p"]["models"]["b"]  # noqa: E731
    else:
        key = "model_id" if source == "aihubmix" else "id"
        doc = {"data": [{key: "a"}, {key: "b"}], "success": True}
        entry = lambda d: d["data"][1]  # noqa: E731
    memo = ItemMemo()
    first = spec.parse(json.dumps(doc).encode(), memo)
    assert spec.parse(json.dumps(doc).encode(), memo) == first  # equal: reused

    hostile = json.loads(json.dumps(doc))
    entry(hostile)["nested"] = _deep(MAX_DEPTH)  # a changed entry: walked, too deep
    with pytest.raises(PayloadRejected, match="nested deeper"):
        spec.parse(json.dumps(hostile).encode(), memo)
    outside = json.loads(json.dumps(doc))
    target = outside["p"] if source == "modelsdev" else outside
    target["meta"] = _deep(MAX_DEPTH)  # outside every entry: walked, too deep
    with pytest.raises(PayloadRejected, match="nested deeper"):
        spec.parse(json.dumps(outside).encode(), memo)
    # the rejected bodies taught the memo nothing: the hostile entry is still walked
    with pytest.raises(PayloadRejected, match="nested deeper"):
        spec.parse(json.dumps(hostile).encode(), memo)
    assert spec.parse(json.dumps(doc).encode(), memo) == first
    assert spec.parse(json.dumps(doc).encode()) == first  # and the same without a memo
