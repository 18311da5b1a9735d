"""Round trip as a property: any sequence of catalogs comes back exactly, as of each snapshot."""

import json
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.ingest import ingest
from pipeline.normalise import normalise_items
from pipeline.sources.aihubmix import parse
from pipeline.store import Store

IDS = [
    "gpt-4o",
    "GPT-4o",
    "openai/gpt-4o",
    "deepseek-v3",
    "DeepSeek-V3",
    "模型-ünï/1",
    "claude/opus:4",
    "a",
    "b",
    "c",
]

price = st.one_of(st.none(), st.sampled_from([0, 0.1, 1.25, 10, "2.5", 1e-7, 15000]))
model = st.fixed_dictionaries(
    {"model_id": st.sampled_from(IDS)},
    optional={
        "desc": st.text(max_size=20),
        "types": st.sampled_from(["llm", "t2t", "image_generation,video", "music", "", "LLM, tts"]),
        "features": st.one_of(
            st.lists(st.sampled_from(["tools", "thinking", "web", "Tools "]), max_size=3),
            st.sampled_from(["tools,thinking", "", "web"]),
        ),
        "input_modalities": st.sampled_from(["text", "text,image", "image,text", "pdf"]),
        "max_output": st.sampled_from([0, 4096, "8192", None]),
        "context_length": st.sampled_from([0, 128000, 1000000]),
        "pricing": st.fixed_dictionaries(
            {}, optional={"input": price, "output": price, "cache_read": price}
        ),
        "model_name": st.text(max_size=5),
        "order": st.integers(0, 3),
        "broken": st.sampled_from([{"pricing": {"input": -1}}, {"desc": 1}]),
    },
)


def flatten(m):
    broken = m.pop("broken", None)
    return {**m, **broken} if broken else m


catalog = st.lists(model.map(flatten), max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(catalog, min_size=1, max_size=6))
def test_any_history_round_trips(history):
    t0 = datetime(2026, 3, 1)
    bodies = [
        json.dumps({"data": c, "success": True}, ensure_ascii=False).encode() for c in history
    ]
    with Store.open(":memory:") as store:
        accepted = []
        for i, body in enumerate(bodies):
            at = t0 + timedelta(minutes=5 * i)
            result = ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
            assert result.outcome in ("new", "unchanged")
            accepted.append((at, body))
        for at, body in accepted:
            want = normalise_items(parse(body), source="aihubmix").frame.drop("row_hash")
            assert_frame_equal(store.catalog_as_of("aihubmix", at), want)
        # storage grows with changes: at most one version per model per snapshot
        versions = store.summary()["versions"]
        assert versions <= sum(
            normalise_items(parse(b), source="aihubmix").frame.height for b in bodies
        )


@settings(max_examples=100, deadline=None)
@given(before=catalog, after=catalog)
def test_the_item_cache_changes_no_answer(before, after):
    """Reusing the previous snapshot's verdicts gives exactly a fresh normalisation."""
    fresh = normalise_items(after, source="aihubmix")
    first = normalise_items(before, source="aihubmix")
    cached = normalise_items(after, source="aihubmix", cache=first.cache)
    assert cached.rows == fresh.rows
    assert cached.hashes == fresh.hashes
    assert cached.quarantine == fresh.quarantine
