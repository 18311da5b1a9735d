"""Cross-source comparison: the canonical key, `compare`, `compare_history`, the
`model_compare` view and `modelwatch compare`, on real snapshots of four catalogs."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import BadInput
from pipeline.ingest import payload_files, replay
from pipeline.query.compare import canonical_key, compare, compare_history
from pipeline.store import Store
from tests.conftest import DATA, HISTORY, run_cli

PRICES = ("input_price", "output_price", "cache_read_price", "cache_write_price")
AIHUBMIX_PRICES = ("input", "output", "cache_read", "cache_write")


@pytest.mark.parametrize(
    ("model_id", "key"),
    [
        # the same model under several naming schemes
        ("gpt-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("azure/gpt-4o-2024-08-06", "gpt-4o"),
        ("azure/eu/gpt-4o-2024-11-20", "gpt-4o"),
        ("GPT-4o-20240806", "gpt-4o"),
        ("openai/gpt-4o:extended", "gpt-4o"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic/claude-3.5-sonnet:beta", "claude-3-5-sonnet"),
        ("vertex_ai/claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
        ("models/gemini-2.5-pro", "gemini-2-5-pro"),
        ("deepseek-ai/DeepSeek_V3", "deepseek-v3"),
        # distinct models stay distinct
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("claude-opus-4-6-think", "claude-opus-4-6-think"),
        # documented non-matches
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic-claude-3-5-sonnet-20240620-v1"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-latest"),
        ("gpt-4-0613", "gpt-4-0613"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2-5-72b-instruct"),
        ("qwen/qwen-2.5-72b-instruct", "qwen-2-5-72b-instruct"),
        ("accounts/fireworks/models/llama-v3p1-8b-instruct", "llama-v3p1-8b-instruct"),
    ],
)
def test_canonical_key(store, model_id, key):
    assert canonical_key(store, model_id) == key


# -- on real data ----------------------------------------------------------------------------
def files(name: str) -> list[tuple[datetime, Path]]:
    return payload_files(DATA / name)


def raw(path: Path) -> Any:
    return json.loads(gzip.decompress(path.read_bytes()), parse_float=Fraction)


def key(model_id: str) -> str:
    """The documented key, written again here to check the SQL macro against."""
    k = re.sub(r":.*$", "", model_id.lower().rsplit("/", 1)[-1])
    return re.sub(r"[-@](\d{4}-\d{2}-\d{2}|\d{8})$", "", re.sub(r"[._]", "-", k))


def price(value: Any, scale: int = 1) -> float | None:
    return None if value is None else float(Fraction(value) * scale)


def listings(source: str, doc: Any) -> list[tuple[str, str, tuple[float | None, ...]]]:
    """(key, model_id, per-1M prices) of every valid model of a raw payload."""
    out = []
    if source == "openrouter":
        for m in doc["data"]:
            p = m["pricing"]
            prices = tuple(
                price(p.get(k), 10**6)
                for k in ("prompt", "completion", "input_cache_read", "input_cache_write")
            )
            out.append((m["id"], prices))
    elif source == "litellm":
        for model_id, spec in doc.items():
            if model_id != "sample_spec" and isinstance(spec, dict):
                prices = tuple(
                    price(spec.get(k), 10**6)
                    for k in (
                        "input_cost_per_token",
                        "output_cost_per_token",
                        "cache_read_input_token_cost",
                        "cache_creation_input_token_cost",
                    )
                )
                out.append((model_id, prices))
    elif source == "modelsdev":
        for provider_id, provider in doc.items():
            for k, m in provider["models"].items():
                cost = m.get("cost") or {}
                prices = tuple(price(cost.get(c)) for c in AIHUBMIX_PRICES)
                out.append((f"{provider_id}/{k}", prices))
    else:  # aihubmix
        for m in doc["data"]:
            p = m.get("pricing") or {}
            prices = tuple(price(p.get(c)) for c in AIHUBMIX_PRICES)
            out.append((m["model_id"], prices))
    return [(key(i), i, p) for i, p in out if all(v is None or v >= 0 for v in p)]


def expected(model: str, payloads: dict[str, Any]) -> list[tuple]:
    rows = [
        (source, model_id, *prices)
        for source, doc in payloads.items()
        for k, model_id, prices in listings(source, doc)
        if k == key(model)
    ]
    return sorted(rows, key=lambda r: (r[0], r[1]))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OpenRouter (its oldest and newest copied snapshots), LiteLLM and models.dev (newest),
    and the bundled AiHubMix history, in one database."""
    path = tmp_path_factory.mktemp("compare") / "compare.duckdb"
    plan = {
        "openrouter": [files("openrouter")[0], files("openrouter")[-1]],
        "litellm": files("litellm")[-1:],
        "modelsdev": files("modelsdev")[-1:],
        "aihubmix": payload_files(HISTORY),
    }
    with Store.open(path) as store:
        for source, chosen in plan.items():
            results = replay(store, chosen, source=source, accept_mass_removal=True)
            assert {r.outcome for r in results} <= {"new", "unchanged"}
    return path


@pytest.fixture(scope="module")
def reader(db: Path):
    with Store.open(db, read_only=True) as store:
        yield store


NEWEST = {name: files(name)[-1][1] for name in ("openrouter", "litellm", "modelsdev")}


@pytest.mark.parametrize("spelling", ["claude-opus-4-6", "anthropic/claude-opus-4.6"])
def test_compare_now_matches_every_raw_payload(reader, spelling):
    payloads = {name: raw(path) for name, path in NEWEST.items()}
    payloads["aihubmix"] = raw(payload_files(HISTORY)[-1][1])
    frame = compare(reader, spelling)
    got = list(frame.select("source", "model_id", *PRICES).iter_rows())
    want = expected(spelling, payloads)
    assert got == want
    assert {r[0] for r in got} == {"aihubmix", "litellm", "modelsdev", "openrouter"}
    assert set(frame["canonical_key"]) == {"claude-opus-4-6"}
    # the same listings through the SQL view, and the same prices where it is sold as such
    view = reader.frame(
        "SELECT * FROM model_compare WHERE canonical_key = 'claude-opus-4-6' "
        "ORDER BY source, model_id"
    )
    assert view.equals(frame)
    assert ("openrouter", "anthropic/claude-opus-4.6", 5.0, 25.0, 0.5, 6.25) in got
    assert ("aihubmix", "claude-opus-4-6", 5.0, 25.0, 0.5, 6.25) in got


def test_compare_at_a_time_uses_the_catalogs_then_in_force(reader):
    at = datetime(2026, 1, 1)
    payloads = {
        "openrouter": raw(files("openrouter")[0][1]),  # the db's older OpenRouter snapshot
        "aihubmix": raw([p for t, p in payload_files(HISTORY) if t <= at][-1]),
    }
    frame = compare(reader, "gpt-4o", at=at)
    got = list(frame.select("source", "model_id", *PRICES).iter_rows())
    assert got == expected("gpt-4o", payloads)
    assert [r[:2] for r in got] == [
        ("aihubmix", "gpt-4o"),
        ("aihubmix", "gpt-4o-2024-11-20"),
        ("openrouter", "openai/gpt-4o"),
        ("openrouter", "openai/gpt-4o-2024-05-13"),
        ("openrouter", "openai/gpt-4o-2024-08-06"),
        ("openrouter", "openai/gpt-4o-2024-11-20"),
        ("openrouter", "openai/gpt-4o:extended"),
    ]


def test_compare_history_gives_price_steps(reader):
    frame = compare_history(reader, "openai/gpt-4o")
    (old_at, old), (new_at, new) = files("openrouter")[0], files("openrouter")[-1]
    want_old = dict((m, p) for _, m, p in listings("openrouter", raw(old)))
    want_new = dict((m, p) for _, m, p in listings("openrouter", raw(new)))
    steps = frame.filter((frame["source"] == "openrouter") & (frame["model_id"] == "openai/gpt-4o"))
    assert list(steps.select("valid_from", "valid_to", *PRICES).iter_rows()) == [
        (old_at, new_at, *want_old["openai/gpt-4o"]),
        (new_at, None, *want_new["openai/gpt-4o"]),
    ]
    # OpenRouter's 2025 payloads list a cache-read price of "0" for every model
    assert want_old["openai/gpt-4o"] == (2.5, 10.0, 0.0, 0.0)
    assert want_new["openai/gpt-4o"] == (2.5, 10.0, 1.25, None)
    # versions that changed only other fields are one step; a removal and return is two
    aihubmix = frame.filter(frame["source"] == "aihubmix")
    assert list(aihubmix.select("model_id", "valid_from", "valid_to").iter_rows()) == [
        ("gpt-4o", datetime(2025, 10, 18, 13, 24, 33), datetime(2026, 4, 29, 19, 26, 1)),
        ("gpt-4o-2024-11-20", datetime(2025, 10, 18, 13, 24, 33), datetime(2026, 1, 10, 22, 4, 34)),
        ("gpt-4o-2024-11-20", datetime(2026, 1, 13, 18, 52, 14), datetime(2026, 1, 14, 19, 24, 47)),
        ("gpt-4o-2024-11-20", datetime(2026, 1, 19, 3, 2, 10), datetime(2026, 1, 19, 17, 25, 22)),
    ]
    # four versions (other fields changed), one price: one step
    opus = compare_history(reader, "claude-opus-4-1")
    opus = opus.filter(opus["source"] == "aihubmix")
    assert opus.height == 1
    versions = reader.execute(
        "SELECT count(*) FROM model_versions WHERE source = 'aihubmix' "
        "AND model_id = 'claude-opus-4-1'"
    )[0][0]
    assert versions == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s: compare(s, "gpt-4oo"),
            "no source lists a model with key 'gpt-4oo' ('gpt-4oo') now; close keys: gpt-4o, ",
        ),
        (
            lambda s: compare(s, "claude-opus-4-6", at=datetime(2025, 1, 1)),
            "no source lists a model with key 'claude-opus-4-6' ('claude-opus-4-6') at "
            "2025-01-01T00:00:00Z",
        ),
        (
            lambda s: compare_history(s, "no-such-model"),
            "no source ever listed a model with key 'no-such-model' ('no-such-model')",
        ),
    ],
)
def test_no_match_is_a_clear_error(reader, call, message):
    with pytest.raises(BadInput) as caught:
        call(reader)
    assert str(caught.value).startswith(message)


def test_a_read_only_database_without_the_macros_still_compares(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store.open(path) as store:
        replay(store, files("openrouter")[-1:], source="openrouter")
        store.execute("DROP VIEW model_compare")
        store.execute("DROP MACRO TABLE model_compare_as_of")
        store.execute("DROP MACRO canonical_model_key")
    with Store.open(path, read_only=True) as store:
        assert compare(store, "gpt-4o")["model_id"].to_list()[:2] == [
            "openai/gpt-4o",
            "openai/gpt-4o-2024-05-13",
        ]


def test_cli_compare(db, reader):
    done = run_cli("compare", "anthropic/claude-opus-4.6", "--format", "json", "--db", str(db))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {
        "source": "aihubmix",
        "model_id": "claude-opus-4-6",
        "input_price": 5.0,
        "output_price": 25.0,
        "cache_read_price": 0.5,
        "cache_write_price": 6.25,
        "context_length": 1000000,
        "max_output": 128000,
    } in rows
    table = run_cli("compare", "gpt-4o", "--history", "--db", str(db))
    assert table.returncode == 0, table.stderr
    steps = compare_history(reader, "gpt-4o").height
    assert table.stdout.startswith(f"gpt-4o: {steps} price steps\n")
    assert "openai/gpt-4o:extended" in table.stdout
    missing = run_cli("compare", "gpt-4oo", "--db", str(db))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no source lists a model with key 'gpt-4oo'")
    assert missing.stderr.count("\n") == 1


def test_the_docs_sql_runs_and_finds_listings(reader):
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "sources.md").read_text()
    statements = [
        s.strip() for block in re.findall(r"```sql\n(.*?)```", text, re.S) for s in block.split(";")
    ]
    statements = [s for s in statements if s]
    assert len(statements) == 2
    for sql in statements:
        rows = reader.execute(sql)
        assert rows and {r[0] for r in rows} == {"gpt-4o"}, sql
