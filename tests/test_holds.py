"""A held snapshot is never a dead end (SPEC 3): re-running with --accept-mass-removal
applies it at its own times, a change the upstream keeps confirming applies by itself,
and `status` shows a hold."""

import json
from datetime import datetime, timedelta

import httpx

from pipeline.config import HoldPolicy
from pipeline.ingest import ingest, release_holds, snapshot
from pipeline.outcome import Outcome
from pipeline.store import Store
from tests.conftest import HISTORY, run_cli

TABLES = {
    "model_versions": "SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL",
    "snapshots": "SELECT * EXCLUDE (fetch_id) FROM snapshots ORDER BY ALL",
    "orders": "SELECT * FROM orders ORDER BY ALL",
    "fetch_log": "SELECT source, fetched_at, content_hash, outcome, models, added, removed,"
    " returned, changed FROM fetch_log ORDER BY ALL",
}


def tables(path) -> dict[str, list]:
    with Store.open(path, read_only=True) as store:
        return {name: store.execute(sql) for name, sql in TABLES.items()}


def test_a_held_replay_rerun_with_accept_equals_accepting_from_the_start(tmp_path):
    held, accepted = tmp_path / "held.duckdb", tmp_path / "accepted.duckdb"
    first = run_cli("replay", str(HISTORY), "--db", str(held))
    assert first.returncode == 3 and "6 of 33 payloads not applied" in first.stderr
    status = run_cli("status", "--db", str(held))
    assert "held" in status.stdout and "held since 2026-04-29T19:26:01Z" in status.stderr
    again = run_cli("replay", str(HISTORY), "--db", str(held), "--accept-mass-removal")
    assert again.returncode == 0, again.stderr
    assert "applied what was held, 6 fetches from 2026-04-29T19:26:01Z" in again.stderr
    run_cli("replay", str(HISTORY), "--db", str(accepted), "--accept-mass-removal")
    assert tables(held) == tables(accepted)
    assert "held" not in run_cli("status", "--db", str(held)).stdout


def catalog(ids: list[str], price: float = 1.0) -> bytes:
    models = [{"model_id": m, "pricing": {"input": price, "output": 2.0}} for m in ids]
    return json.dumps({"data": models, "message": "", "success": True}).encode()


FULL = [f"model-{i}" for i in range(10)]
T0 = datetime(2026, 3, 1)


def test_a_change_the_upstream_keeps_confirming_applies_by_itself_from_its_first_fetch(store):
    ingest(store, catalog(FULL), source="aihubmix", fetched_at=T0)
    policy = HoldPolicy(fetches=3, span=timedelta(hours=1))
    smaller = catalog(FULL[:3])
    times = [T0 + timedelta(minutes=m) for m in (10, 40, 70)]
    results = [
        ingest(store, smaller, source="aihubmix", fetched_at=at, hold_policy=policy) for at in times
    ]
    assert [r.outcome for r in results[:2]] == [Outcome.SUSPECT, Outcome.SUSPECT]
    assert "2/3 fetches" in results[1].error
    assert results[2].outcome == Outcome.UNCHANGED and results[2].released == times
    # dated from its first fetch: the catalog changed at times[0], not at the confirmation
    ids = store.catalog_as_of("aihubmix", times[0])["model_id"].to_list()
    assert ids == FULL[:3]
    assert store.catalog_as_of("aihubmix", times[0] - timedelta(seconds=1)).height == 10
    assert store.pending_holds("aihubmix") == []


def test_an_outage_that_ends_is_forgotten_and_too_few_or_too_quick_never_apply(store):
    ingest(store, catalog(FULL), source="aihubmix", fetched_at=T0)
    policy = HoldPolicy(fetches=3, span=timedelta(hours=1))
    empty = catalog([])
    for minutes in (5, 10, 15):  # three in a quarter of an hour: not yet an hour
        at = T0 + timedelta(minutes=minutes)
        result = ingest(store, empty, source="aihubmix", fetched_at=at, hold_policy=policy)
        assert result.outcome == Outcome.SUSPECT
    back = ingest(store, catalog(FULL, 1.5), source="aihubmix", fetched_at=T0 + timedelta(hours=2))
    assert back.outcome == Outcome.NEW
    assert store.pending_holds("aihubmix") == []  # the outage is forgotten
    assert store.catalog_as_of("aihubmix", T0 + timedelta(hours=1)).height == 10


def test_release_holds_applies_every_held_fetch_in_one_transaction(store):
    ingest(store, catalog(FULL), source="aihubmix", fetched_at=T0)
    for minutes, ids in ((5, FULL[:2]), (10, FULL[:4])):
        ingest(store, catalog(ids), source="aihubmix", fetched_at=T0 + timedelta(minutes=minutes))
    released = release_holds(store, "aihubmix")
    assert [r.outcome for r in released] == [Outcome.NEW, Outcome.NEW]
    assert store.catalog_as_of("aihubmix", T0 + timedelta(minutes=7)).height == 2
    assert store.catalog_as_of("aihubmix", T0 + timedelta(minutes=10)).height == 4


def test_a_custom_source_remembers_its_kind(store):
    body = json.dumps({"data": [{"id": "openai/gpt-x", "pricing": {"prompt": "0.000001"}}]})

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode())

    ingest(store, body.encode(), source="my-router", kind="openrouter", fetched_at=T0)
    with httpx.Client(transport=httpx.MockTransport(upstream)) as client:
        result = snapshot(  # no kind: the stored one
            store,
            source="my-router",
            url="http://127.0.0.1:9/api/v1/models",
            client=client,
            force=True,
        )
    assert result.outcome == Outcome.UNCHANGED
    assert store.source_kind("my-router") == "openrouter"
