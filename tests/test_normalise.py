"""SPEC 2: one upstream item -> one normalised record, or a quarantine reason."""

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.normalise import normalise_items
from pipeline.sources.aihubmix import parse
from tests.conftest import EMPTY_RECORD, doc


def one(item):
    result = normalise_items([item], source="aihubmix")
    if result.quarantine:
        return result.quarantine[0].reason
    return {
        k: v
        for k, v in result.frame.row(0, named=True).items()
        if k not in ("source", "position", "row_hash")
    }


BASE = EMPTY_RECORD


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"model_id": "m"}, {"model_id": "m"}),
        ({"model_id": "m", "types": "t2t"}, {"types": ["llm"]}),
        (
            {"model_id": "m", "types": "T2I, t2v ,reranking"},
            {"types": ["image_generation", "rerank", "video"]},
        ),
        (
            {"model_id": "m", "features": "tools,thinking,tools,"},
            {"features": ["thinking", "tools"]},
        ),
        ({"model_id": "m", "features": ""}, {"features": []}),
        (
            {"model_id": "m", "input_modalities": ["Image", "text"]},
            {"input_modalities": ["image", "text"]},
        ),
        ({"model_id": "m", "types": "music"}, {"types": ["music"]}),
        (
            {"model_id": "m", "max_output": 0, "context_length": "128000"},
            {"max_output": None, "context_length": 128000},
        ),
        ({"model_id": "m", "context_length": 8192.0}, {"context_length": 8192}),
        (
            {"model_id": "m", "pricing": {"input": 1.25, "output": 10, "cache_read": 0.125}},
            {"input_price": 1.25, "output_price": 10.0, "cache_read_price": 0.125},
        ),
        (
            {"model_id": "m", "pricing": {"input": "0.5", "output": 0}},
            {"input_price": 0.5, "output_price": 0.0},
        ),
        ({"model_id": "m", "pricing": {}}, {}),
        ({"model_id": "m", "desc": None}, {}),
        (
            {"model_id": "m", "desc": "<script>x</script>\nline"},
            {"description": "<script>x</script>\nline"},
        ),
        (
            {
                "model_id": "m",
                "model_name": "M",
                "order": 3,
                "pricing": {"input": 1, "per_image": 2},
            },
            {"input_price": 1.0, "extra": '{"model_name":"M","order":3,"pricing":{"per_image":2}}'},
        ),
        ({"model_id": "DeepSeek-V3/ünï"}, {"model_id": "DeepSeek-V3/ünï"}),
    ],
)
def test_valid_items(item, expected):
    assert one(item) == {**BASE, "model_id": item["model_id"], **expected}


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({}, "model_id is missing"),
        ({"model_id": ""}, "model_id is empty (got '')"),
        ({"model_id": 7}, "model_id must be a string, got 7; model_id is missing"),
        (
            {"model_id": "m", "pricing": {"input": -1}},
            "input_price must not be negative (got '-1.0')",
        ),
        (
            {"model_id": "m", "pricing": {"input": True}},
            "pricing.input must be a number, got boolean True",
        ),
        (
            {"model_id": "m", "pricing": {"output": "cheap"}},
            "pricing.output must be a number, got 'cheap'",
        ),
        ({"model_id": "m", "pricing": [1, 2]}, "pricing must be an object, got list"),
        ({"model_id": "m", "desc": 5}, "desc must be a string, got int"),
        ({"model_id": "m", "max_output": -5}, "max_output must be positive (got '-5')"),
        (
            {"model_id": "m", "context_length": False},
            "context_length must be a number, got boolean False",
        ),
        (
            {"model_id": "m", "context_length": 1.5},
            "context_length must be a whole number, got 1.5",
        ),
        (
            {"model_id": "m", "types": 3},
            "types must be a comma-separated string or a list of strings, got 3",
        ),
        ("gpt-5", "row must be a JSON object, got str; model_id is missing"),
    ],
)
def test_invalid_items_are_quarantined_with_reason(item, reason):
    assert one(item) == reason


def test_first_of_duplicate_ids_is_kept_and_case_variants_are_distinct():
    items = [
        {"model_id": "DeepSeek-V3", "pricing": {"input": 1}},
        {"model_id": "deepseek-v3", "pricing": {"input": 2}},
        {"model_id": "DeepSeek-V3", "pricing": {"input": 3}},
    ]
    result = normalise_items(items, source="aihubmix")
    assert result.frame.select("model_id", "input_price", "position").to_dicts() == [
        {"model_id": "DeepSeek-V3", "input_price": 1.0, "position": 0},
        {"model_id": "deepseek-v3", "input_price": 2.0, "position": 1},
    ]
    assert [(q.position, q.reason) for q in result.quarantine] == [
        (2, "duplicate model_id 'DeepSeek-V3' (the first occurrence is kept)")
    ]


def test_documented_example_payload():
    body = doc("docs-api-v1-models-success.json")
    result = normalise_items(parse(body), source="aihubmix")
    items = json.loads(body)["data"]
    assert result.frame.get_column("model_id").to_list() == [i["model_id"] for i in items]
    assert result.frame.get_column("position").to_list() == list(range(len(items)))
    gpt5 = result.frame.row(0, named=True)
    assert (gpt5["input_price"], gpt5["output_price"], gpt5["cache_read_price"]) == (
        1.25,
        10.0,
        0.125,
    )
    assert gpt5["features"] == ["function_calling", "structured_outputs", "thinking", "tools"]
    assert result.quarantine == []


def test_arrays_variant_keeps_unknown_values_and_quarantines_placeholder_prices():
    result = normalise_items(parse(doc("arrays-variant.SYNTHETIC.json")), source="aihubmix")
    # every row of that fixture carries placeholder price strings
    assert result.frame.height == 0
    assert len(result.quarantine) == 6
    assert all("must be a number" in q.reason for q in result.quarantine)
    fixed = [
        dict(i, pricing={"input": 1, "output": 2})
        for i in json.loads(doc("arrays-variant.SYNTHETIC.json"))["data"]
    ]
    ok = normalise_items(fixed, source="aihubmix")
    assert ok.quarantine == []
    assert ok.unknown_values == {"features": ["stream", "vision"], "types": ["chat", "responses"]}
    assert ok.frame.row(1, named=True)["types"] == ["chat", "responses"]


def test_reordering_lists_upstream_is_not_a_change():
    a = normalise_items([{"model_id": "m", "features": "tools,thinking"}], source="s").frame
    b = normalise_items([{"model_id": "m", "features": ["thinking", " Tools "]}], source="s").frame
    assert a["row_hash"].to_list() == b["row_hash"].to_list()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"<html>502 Bad Gateway</html>",
            "body is not JSON (JSONDecodeError): '<html>502 Bad Gateway</html>'",
        ),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b'{"models": []}', "body has no 'data' list (keys: models)"),
        (
            doc("docs-api-v1-models-error-500.json"),
            "upstream answered success:false: '服务器内部错误，请稍后重试'",
        ),
        (b'{"success": false, "data": []}', "upstream answered success:false: ''"),
    ],
)
def test_payloads_that_are_not_catalogs_are_rejected(body, message):
    from pipeline.errors import PayloadRejected

    with pytest.raises(PayloadRejected) as info:
        parse(body)
    assert str(info.value) == message


def test_frame_matches_the_record_schema():
    from schemas.record import SCHEMA

    frame = normalise_items([{"model_id": "m"}], source="s").frame
    assert dict(frame.drop("row_hash").schema) == SCHEMA
    assert frame.schema["row_hash"] == pl.String


# the edges first (None, 0, just below and above it), then anything
_maybe_count = st.one_of(
    st.sampled_from([None, -1, 0, 1]), st.integers(min_value=-(2**62), max_value=2**62)
)
_maybe_price = st.one_of(
    st.sampled_from([None, -1e-9, -0.0, 0.0, 1e-9]),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(
    model_id=st.one_of(st.sampled_from(["m", "", None]), st.text(max_size=3)),
    description=st.sampled_from(["d", "", None]),
    counts=st.tuples(_maybe_count, _maybe_count),
    prices=st.tuples(_maybe_price, _maybe_price, _maybe_price, _maybe_price),
    types=st.sampled_from([["llm"], [], None]),
)
def test_the_python_row_screen_is_the_polars_one(model_id, description, counts, prices, types):
    """`row_ok` (a poll's new rows) and `_ROW_OK` (a frame of them, before pandera) agree
    on every row: a row the Python screen passes is one pandera would pass."""
    from schemas.catalog import _ROW_OK
    from schemas.record import COUNT_COLUMNS, PRICE_COLUMNS, frame_from_rows
    from schemas.rules import row_ok

    row = {
        "source": "s",
        "model_id": model_id,
        "description": description,
        "types": types,
        "features": [],
        "input_modalities": [],
        "position": 0,
        "extra": None,
        **dict(zip(COUNT_COLUMNS, counts, strict=True)),
        **dict(zip(PRICE_COLUMNS, prices, strict=True)),
    }
    assert row_ok(row) == frame_from_rows([row]).select(_ROW_OK).item()


_row = st.fixed_dictionaries(
    {
        "model_id": st.one_of(st.sampled_from(["m", "", None]), st.text(max_size=3)),
        "description": st.sampled_from(["d", "", None]),
        "counts": st.tuples(_maybe_count, _maybe_count),
        "prices": st.tuples(
            _maybe_price,
            _maybe_price,
            st.sampled_from([None, -1.0, float("nan"), 2.0]),
            _maybe_price,
        ),
        "types": st.sampled_from([["llm"], [], None]),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_row, min_size=2, max_size=6))
def test_rows_with_one_verdict_key_get_the_same_reasons_from_pandera(drawn):
    """Pandera is asked once per way of failing (`verdict_key`): two rows with the same
    key must get the same reasons from it, whatever else they hold."""
    from schemas.catalog import failure_reasons
    from schemas.record import COUNT_COLUMNS, PRICE_COLUMNS, frame_from_rows
    from schemas.rules import verdict_key

    rows = [
        {
            "source": "s",
            "model_id": d["model_id"],
            "description": d["description"],
            "types": d["types"],
            "features": [],
            "input_modalities": [],
            "position": 0,
            "extra": None,
            **dict(zip(COUNT_COLUMNS, d["counts"], strict=True)),
            **dict(zip(PRICE_COLUMNS, d["prices"], strict=True)),
        }
        for d in drawn
    ]
    reasons: dict[int, list[str]] = {i: [] for i in range(len(rows))}
    for index, reason in failure_reasons(frame_from_rows(rows)):
        reasons[index].append(reason)
    by_key: dict[tuple, list[str]] = {}
    for i, row in enumerate(rows):
        assert by_key.setdefault(verdict_key(row), sorted(reasons[i])) == sorted(reasons[i])


@pytest.mark.parametrize("source", ["openrouter", "litellm", "aihubmix"])
def test_reasons_from_the_verdict_cache_are_pandera_s_on_real_histories(monkeypatch, source):
    """Replaying the bundled histories with the verdict cache and without it (emptied at
    every body: pandera asked for every flagged row) quarantines the same rows for the
    same reasons. Emptying it must never lose an answer the body is about to read."""
    import pipeline.normalise
    from pipeline.ingest import payload_files, replay
    from pipeline.store import Store
    from tests.conftest import DATA, HISTORY

    folder = HISTORY if source == "aihubmix" else DATA / source

    def quarantine() -> list[tuple]:
        with Store.open(":memory:") as store:
            replay(store, payload_files(folder), source=source, accept_mass_removal=True)
            return store.execute("SELECT * FROM quarantine ORDER BY ALL")

    cached = quarantine()
    monkeypatch.setattr(pipeline.normalise, "_VERDICTS_KEPT", -1)
    asked = quarantine()
    assert asked == cached
    if source == "openrouter":
        assert cached  # the bundled OpenRouter history has rows to quarantine


def test_a_full_verdict_cache_is_emptied_without_losing_what_a_body_reads(monkeypatch):
    """The cache is emptied when full; a body with one known and one new way of failing
    must still get both reasons (emptying it between reading and using lost the known)."""
    import pipeline.normalise

    monkeypatch.setattr(pipeline.normalise, "_VERDICTS", {})
    monkeypatch.setattr(pipeline.normalise, "_VERDICTS_KEPT", 0)
    negative = {"model_id": "a", "pricing": {"input": -1, "output": 1}}
    zero_context = {"model_id": "b", "pricing": {"input": 1, "output": 1}, "context_length": -5}
    first = normalise_items([negative], source="s")
    assert [q.reason for q in first.quarantine] == ["input_price must not be negative (got '-1.0')"]
    both = normalise_items([dict(negative), zero_context], source="s")
    assert [q.model_id for q in both.quarantine] == ["a", "b"]
    assert both.quarantine[0].reason == first.quarantine[0].reason
    assert "context_length" in both.quarantine[1].reason
