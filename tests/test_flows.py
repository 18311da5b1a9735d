"""Prefect flows: tasks via .fn() (fast), then the flow under a test harness against a
real HTTP server on 127.0.0.1: 200 with ETag, 304, a change, then 500s."""

import json
from datetime import datetime, timedelta

import pytest

from flows import snapshot as flows
from pipeline.config import SourceConfig, load_config
from pipeline.health import source_health
from pipeline.ingest import FetchPlan, ingest
from pipeline.outcome import IngestResult, Outcome
from pipeline.store import FetchMeta, Store
from tests.conftest import run_cli
from tests.upstream import Upstream


@pytest.fixture
def upstream():
    with Upstream() as server:
        server.cache_control = "no-cache"  # no max-age: every run asks (and gets 304s)
        yield server


def test_tasks_wrap_the_library_stages(tmp_path, upstream, bundled):
    db = str(tmp_path / "t.duckdb")
    upstream.body = bundled[3][1]
    spec = SourceConfig(name="aihubmix", kind="aihubmix", url=upstream.url)
    plan = flows.plan_task.fn(db, spec)
    assert isinstance(plan, FetchPlan) and plan.etag is None and plan.url == upstream.url
    response = flows.fetch_task.fn(plan)
    assert response.status == 200
    result = flows.store_task.fn(db, plan, response)
    assert (result.outcome, result.models, len(result.added)) == ("new", 23, 23)
    again = flows.plan_task.fn(db, spec)
    assert again.etag == response.etag
    assert flows.fetch_task.fn(again).status == 304


def test_changes_markdown_lists_what_changed():

    result = IngestResult(
        source="aihubmix",
        fetched_at=datetime(2026, 1, 2, 3, 4, 5),
        outcome="new",
        models=3,
        added=["a`b"],
        changed=["c"],
    )
    text = flows.changes_markdown(
        result,
        [
            {
                "model_id": "c",
                "price": "input_price",
                "old_price": 2.0,
                "new_price": 1.0,
                "pct_change": -50.0,
            }
        ],
    )
    assert text.splitlines()[0] == "# aihubmix: new at 2026-01-02 03:04:05 UTC"
    assert "- added: `ab`" in text
    assert "| `c` | input_price | 2.0 | 1.0 | -50.00% |" in text


def test_health_flags_stale_and_failing_sources(store):
    body = json.dumps({"data": [{"model_id": "a"}]}).encode()
    t0 = datetime(2026, 1, 1)
    ingest(store, body, source="aihubmix", fetched_at=t0)
    cfg = load_config(None)
    fresh = source_health(store, cfg, now=t0 + timedelta(minutes=14))[0]
    assert (fresh.state, fresh.stale, fresh.failing) == ("ok", False, False)
    stale = source_health(store, cfg, now=t0 + timedelta(minutes=16))[0]
    assert stale.state == "stale"
    store.record_attempt(
        IngestResult(
            source="aihubmix",
            fetched_at=t0 + timedelta(minutes=20),
            outcome=Outcome.FAILED,
            error="HTTP 500",
        ),
        FetchMeta(),
    )
    failing = source_health(store, cfg, now=t0 + timedelta(minutes=21))[0]
    assert (failing.state, failing.last_success, failing.last_error) == ("failing", t0, "HTTP 500")


def test_config_file_and_status_command(tmp_path, upstream, bundled):
    cfg = tmp_path / "modelwatch.toml"
    db = tmp_path / "s.duckdb"
    cfg.write_text(
        f'[defaults]\ndb = "{db}"\n\n[[sources]]\nname = "aihubmix"\n'
        f'url = "{upstream.url}"\nschedule = "*/10 * * * *"\n'
    )
    config = load_config(cfg)
    assert config.source("aihubmix").interval() == timedelta(minutes=10)
    upstream.body = bundled[0][1]
    assert run_cli("snapshot", "--url", upstream.url, "--db", str(db)).returncode == 0
    ok = run_cli("status", "--config", str(cfg))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "aihubmix │ ok" in ok.stdout
    upstream.failures.extend([(500, b"down")] * 2)
    run_cli("snapshot", "--url", upstream.url, "--db", str(db), "--force", "--retries", "1")
    failing = run_cli("status", "--config", str(cfg))
    assert failing.returncode == 1
    assert "aihubmix │ failing" in failing.stdout
    assert "aihubmix: failed: GET" in failing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[sources]]\nname = "aihubmix"\nschedule = "every day"\n')
    broken = run_cli("status", "--config", str(bad))
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: schedule 'every day' is not a valid cron expression")


# -- the flow itself, under Prefect's test harness --------------------------------------


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def artifacts(key):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )

    return asyncio.run(read())


@pytest.mark.slow  # Prefect's temporary server: 10-20 s to start on 2 cores
def test_flow_runs_report_and_fail_loudly(harness, tmp_path, upstream, bundled, monkeypatch):
    events = []
    monkeypatch.setattr(
        flows, "emit_event", lambda **kw: events.append((kw["event"], kw.get("payload")))
    )
    db = str(tmp_path / "flow.duckdb")

    report = tmp_path / "report.html"

    def run():
        return flows.snapshot_catalog(
            source="aihubmix",
            url=upstream.url,
            db=db,
            fetch_retries=1,
            retry_backoff=0,
            report_path=str(report),
            return_state=True,
        )

    upstream.body = bundled[0][1]
    first = run()
    assert first.is_completed()
    assert first.result()["outcome"] == "new" and first.result()["added"] == 23

    second = run()  # same ETag: 304
    assert second.result()["outcome"] == "not_modified"
    assert upstream.requests[-1]["If-None-Match"]

    upstream.body = bundled[1][1]  # a real price change
    third = run()
    counts = third.result()
    assert (counts["outcome"], counts["changed"]) == ("new", 6)

    upstream.failures.extend([(500, b"<html>oops</html>")] * 2)  # both tries fail
    fourth = run()
    assert fourth.is_failed()

    with Store.open(db, read_only=True) as store:
        outcomes = [r[0] for r in store.execute("SELECT outcome FROM fetch_log ORDER BY fetch_id")]
    assert outcomes == ["new", "not_modified", "new", "failed"]

    changed = [payload for name, payload in events if name == "modelwatch.catalog.changed"]
    assert [(p["added"], p["changed"]) for p in changed] == [(23, 0), (0, 6)]
    assert changed[1]["price_changes"] > 0
    assert [name for name, _ in events][-1] == "modelwatch.catalog.failed"

    assert "What changed in aihubmix" in report.read_text()
    links = artifacts("aihubmix-report")
    assert len(links) == 2 and report.resolve().as_uri() in links[0].data

    markdown = artifacts("aihubmix-changes")
    assert len(markdown) == 3  # one per completed run, kept as the key's history
    latest = max(markdown, key=lambda a: a.created)
    assert "# aihubmix: new at" in latest.data and "claude-haiku-4-5" in latest.data
    tables = artifacts("aihubmix-price-changes")
    newest_table = max(tables, key=lambda a: a.created)
    rows = json.loads(newest_table.data)
    assert {r["model_id"] for r in rows} >= {"claude-haiku-4-5"}


@pytest.mark.slow
def test_snapshot_all_isolates_a_failing_source(harness, tmp_path, upstream, bundled, monkeypatch):
    monkeypatch.setattr(flows, "emit_event", lambda **kw: None)
    upstream.body = bundled[0][1]
    cfg = tmp_path / "modelwatch.toml"
    cfg.write_text(
        f'[[sources]]\nname = "aihubmix"\nurl = "{upstream.url}"\n\n'
        f'[[sources]]\nname = "broken"\nkind = "aihubmix"\nurl = "http://127.0.0.1:9/none"\n'
    )
    db = tmp_path / "all.duckdb"
    state = flows.snapshot_all(
        db=str(db), config_path=str(cfg), fetch_retries=0, retry_backoff=0, return_state=True
    )
    assert state.is_failed()
    assert "sources failed: broken; others: aihubmix" in str(state.message) + repr(
        state.result(raise_on_failure=False)
    )
    with Store.open(db, read_only=True) as store:
        rows = dict(store.execute("SELECT source, outcome FROM fetch_log"))
    assert rows == {"aihubmix": "new", "broken": "failed"}


@pytest.mark.slow  # Prefect's temporary server (every test that needs it is in the slow suite)
def test_a_token_never_reaches_artifacts_logs_or_the_store(
    harness, tmp_path, upstream, bundled, monkeypatch, caplog
):
    token = "mw-flow-secret-0123456789abcdef"
    monkeypatch.setenv("MW_TEST_TOKEN", token)
    monkeypatch.setattr(flows, "emit_event", lambda **kw: None)
    upstream.body = bundled[2][1]
    cfg = tmp_path / "modelwatch.toml"
    report = tmp_path / "from-config.html"
    cfg.write_text(
        f'[defaults]\nreport = "{report}"\n\n'
        f'[[sources]]\nname = "team-a"\nkind = "aihubmix"\nurl = "{upstream.url}"\n'
        'token_env = "MW_TEST_TOKEN"\n'
    )
    db = tmp_path / "token.duckdb"
    state = flows.snapshot_catalog(
        source="team-a",
        db=str(db),
        config_path=str(cfg),
        fetch_retries=0,
        retry_backoff=0,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert upstream.requests[-1]["Authorization"] == f"Bearer {token}"
    texts = [
        a.data or "" for key in ("team-a-changes", "team-a-price-changes") for a in artifacts(key)
    ]
    assert texts and not any(token in t for t in texts)
    assert token not in caplog.text
    assert token.encode() not in db.read_bytes()
    assert token not in report.read_text()  # the report set in the config was written


def test_staleness_check_emits_an_event_per_stale_source(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(flows, "emit_event", lambda **kw: events.append(kw))
    db = tmp_path / "stale.duckdb"
    with Store.open(db) as store:  # last success long ago
        ingest(
            store,
            json.dumps({"data": [{"model_id": "a"}]}).encode(),
            source="aihubmix",
            fetched_at=datetime(2026, 1, 1),
        )
    stale = flows.check_staleness.fn(db=str(db))
    assert stale == ["aihubmix"]
    assert [(e["event"], e["resource"]["prefect.resource.id"]) for e in events] == [
        ("modelwatch.source.stale", "modelwatch.source.aihubmix")
    ]
    assert events[0]["payload"]["last_success"] == "2026-01-01T00:00:00"


@pytest.mark.slow
def test_holds_emit_an_event_when_they_start_and_when_they_resolve(
    harness, tmp_path, upstream, bundled, monkeypatch
):
    events = []
    monkeypatch.setattr(
        flows, "emit_event", lambda **kw: events.append((kw["event"], kw.get("payload")))
    )
    db = str(tmp_path / "held.duckdb")

    def run(**kw):
        return flows.snapshot_catalog(
            source="aihubmix",
            url=upstream.url,
            db=db,
            fetch_retries=0,
            retry_backoff=0,
            force=True,
            return_state=True,
            **kw,
        )

    upstream.body = bundled[0][1]
    assert run().is_completed()
    upstream.body = b'{"data": [], "message": "", "success": true}'  # an outage: empty
    assert run().is_failed()  # held as suspect: the run fails loudly
    assert run().is_failed()
    started = [p for name, p in events if name == "modelwatch.hold.started"]
    assert len(started) == 1  # once, when the hold began
    assert run(accept_mass_removal=True).is_completed()
    resolved = [p for name, p in events if name == "modelwatch.hold.resolved"]
    assert len(resolved) == 1 and len(resolved[0]["applied_fetches"]) == 2
