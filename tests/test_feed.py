"""`/changes.atom` (SPEC 5): a valid Atom 1.0 feed of the change history, newest first,
stable entry ids, SPEC 4 filters plus `since`, escaped text, ETag/304."""

import json
from datetime import datetime, timedelta

import feedparser
import pytest

from pipeline.ingest import ingest
from pipeline.serve import create_app
from pipeline.store import Store
from tests.test_serve import _asgi


@pytest.fixture(scope="module")
def history_db(tmp_path_factory, bundled):
    path = tmp_path_factory.mktemp("feed") / "catalog.duckdb"
    with Store.open(path) as store:
        for at, body in bundled:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    return path


def feed(db, query=""):
    answer = _asgi(create_app(db)).get(f"/changes.atom{query}")
    assert answer.status_code == 200, answer.text
    parsed = feedparser.parse(answer.content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.version == "atom10"
    return answer, parsed


def test_the_feed_is_valid_atom_newest_first_with_one_entry_per_change(history_db):
    answer, parsed = feed(history_db)
    assert answer.headers["content-type"].startswith("application/atom+xml")
    with Store.open(history_db, read_only=True) as store:
        changes = store.changes(source="aihubmix")
    assert len(parsed.entries) == min(200, changes.height)
    times = [e.updated for e in parsed.entries]
    assert times == sorted(times, reverse=True)
    newest = changes.sort("changed_at", descending=True).row(0, named=True)
    assert parsed.entries[0].updated == newest["changed_at"].strftime("%Y-%m-%dT%H:%M:%SZ")


def test_entry_ids_are_stable_and_unique(history_db):
    _, first = feed(history_db)
    _, again = feed(history_db)
    ids = [e.id for e in first.entries]
    assert ids == [e.id for e in again.entries] and len(set(ids)) == len(ids)


def test_filters_and_since_have_the_apis_semantics(history_db, bundled):
    cut = bundled[-5][0]  # 85 changes since then
    window = f"?since={cut.isoformat()}Z"
    _, recent = feed(history_db, window)
    assert 0 < len(recent.entries) < 200  # the whole window, not cut by the entry cap
    assert all(e.updated > cut.strftime("%Y-%m-%dT%H:%M:%SZ") for e in recent.entries)
    _, tools = feed(history_db, window + "&features=tools")
    ids = {e.id for e in recent.entries}
    assert tools.entries and {e.id for e in tools.entries} < ids
    _, gpt = feed(history_db, "?model=gpt5")  # fuzzy: gpt5 finds gpt-5.x
    assert gpt.entries and all(e.title.lower().startswith("gpt-5") for e in gpt.entries)
    bad = _asgi(create_app(history_db)).get("/changes.atom?type=nonsense")
    assert bad.status_code == 400 and "nonsense" in bad.json()["message"]


def test_catalog_text_is_escaped_and_304_works(tmp_path):
    db = tmp_path / "hostile.duckdb"
    evil = '<script>alert("x")</script> & friends'

    def body(price):
        model = {"model_id": evil, "types": "llm", "pricing": {"input": price, "output": 1}}
        return json.dumps({"data": [model], "success": True}).encode()

    with Store.open(db) as store:
        ingest(store, body(1), source="aihubmix", fetched_at=datetime(2026, 1, 1))
        ingest(store, body(2), source="aihubmix", fetched_at=datetime(2026, 1, 1) + timedelta(1))
    answer, parsed = feed(db)
    assert b"<script>" not in answer.content
    assert {e.title for e in parsed.entries} >= {f"{evil}: added"}
    again = _asgi(create_app(db)).get(
        "/changes.atom", headers={"If-None-Match": answer.headers["etag"]}
    )
    assert again.status_code == 304
    assert _asgi(create_app(db)).get("/changes.atom?limit=3").status_code == 400
