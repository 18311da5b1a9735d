"""SPEC 4 query semantics: case tables, and a property test against a plain reference."""

import json
import re
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import query
from pipeline.errors import BadInput, BadParameter
from pipeline.ingest import ingest
from pipeline.store import Store

T0 = datetime(2026, 2, 1)

CATALOG = [
    {
        "model_id": "gpt-4o",
        "types": "llm",
        "features": "tools,function_calling",
        "input_modalities": "text,image",
        "context_length": 128000,
        "pricing": {"input": 2.5},
    },
    {
        "model_id": "GPT-4o-mini",
        "types": "t2t",
        "features": "tools",
        "input_modalities": "text",
        "context_length": 128000,
        "pricing": {"input": 0.15},
    },
    {
        "model_id": "qwen3-coder",
        "types": "llm",
        "features": "tools,thinking",
        "input_modalities": "text",
        "context_length": 0,
        "pricing": {"input": 0},
    },
    {
        "model_id": "flux/dev",
        "types": "image_generation",
        "input_modalities": "text",
        "pricing": {},
    },
    {
        "model_id": "helper",
        "types": "llm",
        "desc": "Great at Coding tasks",
        "context_length": 1000000,
        "pricing": {"input": 2.5},
    },
    {
        "model_id": "tagged",
        "types": "llm,music",
        "tags": ["coding", "agent"],
        "context_length": 32000,
    },
    {
        "model_id": "decoder-ish",
        "types": "embedding",
        "desc": "encoding, not coding-adjacent",
        "pricing": {"input": 0.01},
    },
]


@pytest.fixture(scope="module")
def catalog_store():
    with Store.open(":memory:") as store:
        body = json.dumps({"data": CATALOG, "success": True}).encode()
        ingest(store, body, source="aihubmix", fetched_at=T0)
        yield store


def ids(store, **params):
    return query.models(store, as_of=T0, **params).get_column("model_id").to_list()


ALL = [m["model_id"] for m in CATALOG]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ALL),
        ({"type": ""}, ALL),
        ({"type": "  "}, ALL),
        ({"type": "llm"}, ["gpt-4o", "GPT-4o-mini", "qwen3-coder", "helper", "tagged"]),
        ({"type": "LLM"}, ["gpt-4o", "GPT-4o-mini", "qwen3-coder", "helper", "tagged"]),
        ({"type": "t2t"}, ["gpt-4o", "GPT-4o-mini", "qwen3-coder", "helper", "tagged"]),
        ({"type": "t2i"}, ["flux/dev"]),
        ({"type": "music"}, ["tagged"]),
        ({"type": "video"}, []),
        ({"modalities": "image"}, ["gpt-4o"]),
        ({"modalities": "text, image"}, ["gpt-4o"]),
        ({"modalities": "TEXT"}, ["gpt-4o", "GPT-4o-mini", "qwen3-coder", "flux/dev"]),
        ({"features": "tools"}, ["gpt-4o", "GPT-4o-mini", "qwen3-coder"]),
        ({"features": "tools,thinking"}, ["qwen3-coder"]),
        ({"features": "tools, function_calling", "type": "llm"}, ["gpt-4o"]),
        ({"features": ""}, ALL),
        ({"model": "gpt-4o"}, ["gpt-4o", "GPT-4o-mini"]),
        ({"model": "GPT4O"}, ["gpt-4o", "GPT-4o-mini"]),
        ({"model": "4omini"}, ["GPT-4o-mini"]),
        ({"model": "flux dev"}, ["flux/dev"]),
        ({"model": "nothing"}, []),
        ({"model": "-"}, ["gpt-4o", "GPT-4o-mini", "qwen3-coder", "decoder-ish"]),
        ({"sort_by": "order", "sort_order": "desc"}, ALL[::-1]),
        (
            {"sort_by": "context_length"},
            ["tagged", "gpt-4o", "GPT-4o-mini", "helper", "qwen3-coder", "flux/dev", "decoder-ish"],
        ),
        (
            {"sort_by": "context_length", "sort_order": "desc"},
            ["helper", "gpt-4o", "GPT-4o-mini", "tagged", "qwen3-coder", "flux/dev", "decoder-ish"],
        ),
        (
            {"sort_by": "model_ratio"},
            ["qwen3-coder", "decoder-ish", "GPT-4o-mini", "gpt-4o", "helper", "flux/dev", "tagged"],
        ),
        (
            {"sort_by": "model_ratio", "sort_order": "DESC"},
            ["gpt-4o", "helper", "GPT-4o-mini", "decoder-ish", "qwen3-coder", "flux/dev", "tagged"],
        ),
        (
            {"sort_by": "coding"},
            ["qwen3-coder", "helper", "tagged", "decoder-ish", "gpt-4o", "GPT-4o-mini", "flux/dev"],
        ),
        (
            {"sort_by": "coding", "sort_order": "desc"},
            ["qwen3-coder", "helper", "tagged", "decoder-ish", "gpt-4o", "GPT-4o-mini", "flux/dev"],
        ),
        ({"sort_by": "", "sort_order": ""}, ALL),
        (
            {"type": "llm", "sort_by": "model_ratio", "sort_order": "desc"},
            ["gpt-4o", "helper", "GPT-4o-mini", "qwen3-coder", "tagged"],
        ),
    ],
)
def test_filters_and_sorts(catalog_store, params, expected):
    assert ids(catalog_store, **params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"type": "chat"},
            "type 'chat' is not a known type; accepted: llm, image_generation, "
            "video, tts, stt, embedding, rerank, t2t, t2i, t2v, reranking "
            "(also in this catalog: music)",
        ),
        (
            {"modalities": "text,smell"},
            "modalities value 'smell' is not known; accepted: text, image, audio, video, pdf",
        ),
        (
            {"features": "tools,teleport"},
            "features value 'teleport' is not known; accepted: "
            "thinking, tools, function_calling, web, deepsearch, "
            "long_context, structured_outputs",
        ),
        (
            {"sort_by": "price"},
            "sort_by 'price' is not known; accepted: order, context_length, model_ratio, coding",
        ),
        ({"sort_order": "up"}, "sort_order 'up' is not known; accepted: asc, desc"),
    ],
)
def test_bad_values_name_themselves_and_the_accepted_ones(catalog_store, params, message):
    with pytest.raises(BadParameter) as info:
        ids(catalog_store, **params)
    assert str(info.value) == message


def test_an_unknown_source_is_an_error(catalog_store):
    with pytest.raises(BadParameter) as info:
        query.models(catalog_store, source="openrouterr")
    assert str(info.value) == ("source 'openrouterr' has no history here; stored sources: aihubmix")


def test_documented_values_are_accepted_even_if_absent(catalog_store):
    assert ids(catalog_store, type="tts") == []
    assert ids(catalog_store, features="deepsearch") == []
    assert ids(catalog_store, modalities="pdf") == []


def test_values_present_only_at_that_time_are_accepted_then(catalog_store):
    with Store.open(":memory:") as store:
        ingest(
            store,
            json.dumps({"data": [{"model_id": "a", "types": "music"}]}).encode(),
            source="aihubmix",
            fetched_at=T0,
        )
        ingest(
            store,
            json.dumps({"data": [{"model_id": "a", "types": "llm"}]}).encode(),
            source="aihubmix",
            fetched_at=T0 + timedelta(days=1),
        )
        assert query.models(store, as_of=T0, type="music")["model_id"].to_list() == ["a"]
        with pytest.raises(BadParameter, match="type 'music' is not a known type"):
            query.models(store, as_of=T0 + timedelta(days=1), type="music")


# -- the property: a small, obviously-correct reference -------------------------------


def reference(
    rows, *, type=None, modalities=None, features=None, model=None, sort_by=None, sort_order=None
):
    aliases = {"t2t": "llm", "t2i": "image_generation", "t2v": "video", "reranking": "rerank"}
    out = list(rows)
    if type and type.strip():
        t = aliases.get(type.strip().lower(), type.strip().lower())
        out = [r for r in out if t in r["types"]]
    for key, column in (("modalities", "input_modalities"), ("features", "features")):
        value = {"modalities": modalities, "features": features}[key]
        if value and value.strip():
            want = [v.strip().lower() for v in value.split(",") if v.strip()]
            out = [r for r in out if all(w in r[column] for w in want)]
    if model and model.strip():
        needle = model.strip().lower()
        squeeze = lambda s: "".join(ch for ch in s if ch.isalnum())  # noqa: E731
        out = [
            r
            for r in out
            if needle in r["model_id"].lower()
            or (squeeze(needle) and squeeze(needle) in squeeze(r["model_id"].lower()))
        ]
    out.sort(key=lambda r: r["position"])
    key = (sort_by or "order").strip().lower() or "order"
    desc = (sort_order or "asc").strip().lower() == "desc"
    if key == "order":
        return out[::-1] if desc else out
    if key == "coding":

        def coding(r):
            tags = json.loads(r["extra"] or "{}").get("tags", "")
            tags = tags if isinstance(tags, str) else ",".join(tags)
            return (
                "coding" in r["features"]
                or re.search(r"\bcoding\b", tags.lower())
                or "code" in r["model_id"].lower()
                or re.search(r"\bcoding\b", r["description"], re.IGNORECASE)
            )

        return [r for r in out if coding(r)] + [r for r in out if not coding(r)]
    value = (
        (lambda r: r["context_length"])
        if key == "context_length"
        else (lambda r: None if r["input_price"] is None else r["input_price"] / 2)
    )
    known = [r for r in out if value(r) is not None]
    unknown = [r for r in out if value(r) is None]
    known.sort(key=lambda r: (-value(r) if desc else value(r), r["position"]))
    return known + unknown


ID_POOL = [
    "gpt-4o",
    "GPT-4o",
    "gpt4o-mini",
    "claude/3.5",
    "qwen-coder",
    "codestral",
    "Ünï-模型",
    "a.b_c",
    "x",
]
model_strategy = st.fixed_dictionaries(
    {"model_id": st.sampled_from(ID_POOL)},
    optional={
        "types": st.sampled_from(["llm", "t2t", "image_generation", "llm,video", "tts"]),
        "features": st.sampled_from(["tools", "tools,thinking", "web", "", "coding"]),
        "input_modalities": st.sampled_from(["text", "text,image", "image", "audio,text"]),
        "context_length": st.sampled_from([0, 8000, 128000, 128000, 1000000]),
        "pricing": st.fixed_dictionaries(
            {}, optional={"input": st.sampled_from([0, 0.5, 2.5, 2.5, 10])}
        ),
        "desc": st.sampled_from(["", "good at coding", "Coding!", "encoding"]),
        "tags": st.sampled_from([["coding"], "agent,coding", ["vision"]]),
    },
)
params_strategy = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["", "llm", "T2T", "image_generation", "video", "tts"]),
        "modalities": st.sampled_from(["", "text", "image, text", "audio"]),
        "features": st.sampled_from(["", "tools", "tools,thinking", "web"]),
        "model": st.sampled_from(["", "gpt", "GPT4O", "4o mini", "coder", "模型", "_", "3.5"]),
        "sort_by": st.sampled_from(["", "order", "context_length", "model_ratio", "coding"]),
        "sort_order": st.sampled_from(["", "asc", "desc", "DESC"]),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.lists(st.lists(model_strategy, max_size=8), min_size=1, max_size=4),
    params=params_strategy,
    pick=st.integers(0, 100),
    offset=st.integers(0, 400),
)
def test_models_agree_with_the_reference(history, params, pick, offset):
    with Store.open(":memory:") as store:
        times = [T0 + timedelta(minutes=10 * i) for i in range(len(history))]
        for at, models in zip(times, history, strict=True):
            ingest(
                store,
                json.dumps({"data": models}).encode(),
                source="aihubmix",
                fetched_at=at,
                accept_mass_removal=True,
            )
        as_of = times[0] + timedelta(minutes=offset % (10 * len(history) + 5))
        rows = store.catalog_as_of("aihubmix", as_of).to_dicts()
        # every sampled value is documented, so none may be refused
        got = query.models(store, as_of=as_of, **params).to_dicts()
        assert got == reference(rows, **params)


def test_changes_feed_on_a_small_history():
    a = {"model_id": "a", "pricing": {"input": 2.0}}
    b = {"model_id": "b", "features": "tools"}
    with Store.open(":memory:") as store:
        for i, models in enumerate([[a, b], [dict(a, pricing={"input": 1.0}), b], [a], [a, b]]):
            ingest(
                store,
                json.dumps({"data": models}).encode(),
                source="aihubmix",
                fetched_at=T0 + timedelta(days=i),
                accept_mass_removal=True,
            )
        feed = query.changes(store).select(
            "changed_at", "model_id", "kind", "field", "old_value", "new_value", "pct_change"
        )
        day = [T0 + timedelta(days=i) for i in range(4)]
        assert feed.rows() == [
            (day[0], "a", "added", None, None, None, None),
            (day[0], "b", "added", None, None, None, None),
            (day[1], "a", "changed", "input_price", "2.0", "1.0", -50.0),
            (day[2], "a", "changed", "input_price", "1.0", "2.0", 100.0),
            (day[2], "b", "removed", None, None, None, None),
            (day[3], "b", "returned", None, None, None, None),
        ]
        assert query.changes(store, since=day[1], until=day[2]).height == 2
        prices = store.frame(
            "SELECT model_id, old_price, new_price, direction FROM price_changes "
            "ORDER BY changed_at"
        )
        assert prices.rows() == [("a", 2.0, 1.0, "cut"), ("a", 1.0, 2.0, "rise")]


def test_cost_uses_the_prices_in_force(catalog_store):
    with Store.open(":memory:") as store:
        steps = [{"input": 2.0, "output": 8.0, "cache_read": 0.5}, {"input": 1.0, "output": 4.0}]
        for i, pricing in enumerate(steps):
            ingest(
                store,
                json.dumps({"data": [{"model_id": "m", "pricing": pricing}]}).encode(),
                source="aihubmix",
                fetched_at=T0 + timedelta(days=i),
            )
        early = query.cost(
            store, "m", input_tokens=1_000_000, output_tokens=500_000, cached_tokens=200_000, at=T0
        )
        assert early["usd"] == pytest.approx((800_000 * 2.0 + 200_000 * 0.5 + 500_000 * 8.0) / 1e6)
        late = query.cost(
            store,
            "M",
            input_tokens=1_000_000,
            output_tokens=0,
            cached_tokens=10,
            at=T0 + timedelta(days=2),
        )
        assert (late["model_id"], late["cache_read_price"]) == ("m", 1.0)
        assert late["usd"] == pytest.approx(1.0)
        with pytest.raises(BadInput, match="was not in the aihubmix catalog at 2026-01-01"):
            query.cost(store, "m", input_tokens=1, output_tokens=1, at=datetime(2026, 1, 1))
        with pytest.raises(BadInput, match="cached_tokens \\(5\\) exceeds input_tokens \\(1\\)"):
            query.cost(store, "m", input_tokens=1, output_tokens=1, cached_tokens=5)


def test_helpers_on_the_bundled_history(store, bundled):
    for at, payload in bundled:
        ingest(store, payload, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    snapshots = len(bundled)
    medians = query.median_price_by_type(store)
    assert medians.get_column("observed_at").n_unique() == snapshots
    first = store.catalog_as_of("aihubmix", bundled[0][0])
    assert medians.row(0, named=True)["median_input_price"] == first["input_price"].median()
    cover = query.coverage(store, column="input_modalities")
    last = store.catalog_as_of("aihubmix", bundled[-1][0])
    want = (
        last.explode("input_modalities").group_by("input_modalities").len().sort("input_modalities")
    )
    got = cover.filter(pl.col("observed_at") == bundled[-1][0]).select("value", "models")
    assert got.rows() == want.rows()
    history = query.price_history(store, "claude-haiku-4-5")
    assert (
        history.height > 1
        and history["valid_to"][:-1].to_list() == history["valid_from"][1:].to_list()
    )
