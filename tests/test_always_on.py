"""Always on (issue 14): while another process holds the store, every body the server has
produced is still served with its ETag; only a query never answered waits, then 503 with
Retry-After; a waiting writer is not starved by readers."""

import subprocess
import sys
import threading
import time

import pytest

from pipeline.ingest import ingest
from pipeline.serve import create_app
from pipeline.store import Store, writer_waiting
from tests.test_serve import _asgi
from tests.upstream import held, hold


@pytest.fixture
def served(tmp_path, bundled):
    db = tmp_path / "served.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:4]:
            ingest(store, body, source="aihubmix", fetched_at=at)
    return db


def test_bodies_already_served_stay_servable_while_another_process_holds_the_store(served):
    client = _asgi(create_app(served, busy_wait=0.5))
    urls = ["/api/v1/models", "/api/v1/models?type=llm&sort_by=model_ratio", "/v1/models"]
    first = {u: client.get(u) for u in urls}
    assert all(r.status_code == 200 for r in first.values())
    with held(served):
        (served.parent / "served.duckdb.wal").touch()  # the holder's writes change the file
        for url, before in first.items():
            again = client.get(url)
            assert again.status_code == 200, url
            assert again.content == before.content
            assert again.headers["etag"] == before.headers["etag"]
            cached = client.get(url, headers={"If-None-Match": before.headers["etag"]})
            assert cached.status_code == 304
        never = client.get("/api/v1/models?model=claude")
        assert never.status_code == 503 and never.headers["retry-after"]
    assert client.get("/api/v1/models?model=claude").status_code == 200  # free again


def test_a_waiting_writer_keeps_new_readers_away(served):
    marker = served.parent / "served.duckdb.writer-waiting"
    marker.touch()
    assert writer_waiting(served)
    client = _asgi(create_app(served, busy_wait=0.2))
    assert client.get("/api/v1/models").status_code == 503  # nothing to serve stale yet
    marker.unlink()
    assert client.get("/api/v1/models").status_code == 200


def test_a_writer_marks_that_it_waits_and_clears_the_mark(served):
    from pipeline.errors import StoreLocked

    with held(served):
        outcome = []

        def write():
            try:
                Store.open(served, lock_timeout=3)
            except StoreLocked as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        seen = False
        while writer.is_alive() and not seen:
            seen = writer_waiting(served)
            time.sleep(0.05)
        writer.join()
        assert seen and outcome  # it said it waited, then gave up with StoreLocked
    assert not writer_waiting(served)


# a minute of `modelwatch up`: the slow suite (the default one stops an `up` mid-snapshot)
@pytest.mark.slow
@pytest.mark.parametrize("cycles", [6])
def test_up_runs_the_schedule_and_the_api_in_one_process_and_loses_nothing(
    tmp_path, bundled, cycles
):
    """`modelwatch up` at a 1 s interval, with the store held by another process for 8 s
    of every ~10 (once; a minute in the slow run): every answer the upstream gave is in
    the history at its own fetch time; the API answers throughout; SIGTERM stops it."""
    import signal

    import httpx

    from tests.upstream import Upstream

    db = tmp_path / "up.duckdb"
    with Upstream() as upstream:
        upstream.cache_control = "no-cache"  # no max-age: a request every second
        upstream.body = bundled[0][1]
        proc, base = _up(tmp_path, upstream, db, every=1)
        try:
            _wait_for(lambda: db.exists() and len(upstream.requests) >= 2)
            assert httpx.get(base + "/api/v1/models", timeout=10).status_code == 200
            for cycle in range(cycles):
                holder = hold(db, 8)
                upstream.body = bundled[1 + 2 * cycle][1]  # published while the store is held
                seen = len(upstream.requests)
                _wait_for(lambda s=seen: len(upstream.requests) >= s + 1)
                assert httpx.get(base + "/api/v1/models", timeout=10).status_code == 200
                holder.wait(timeout=30)
                upstream.body = bundled[2 + 2 * cycle][1]
                seen = len(upstream.requests)
                _wait_for(lambda s=seen: len(upstream.requests) >= s + 2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        answered = len(upstream.requests)
    said = proc.stderr.read()
    assert proc.returncode == 0, said  # a requested stop is a clean exit
    assert "spooled, the store is busy" in said  # the held store really was worked around
    with Store.open(db) as store:  # a writer: applies whatever was still spooled
        from pipeline.ingest import drain_spool

        drain_spool(store, db)
        log = store.execute("SELECT fetched_at, outcome FROM fetch_log ORDER BY fetched_at")
        changes = store.execute("SELECT DISTINCT valid_from FROM model_versions ORDER BY 1")
    assert len(log) == answered  # every answer is in the fetch log
    outcomes = [o for _, o in log]
    assert outcomes.count("new") + outcomes.count("suspect") == 1 + 2 * cycles  # each once
    assert all(t in {f for f, _ in log} for (t,) in changes)  # versions open at fetch times


def _up(folder, upstream, db, *, every: int):
    """`modelwatch up --port 0` over one source, the scripted `upstream`."""
    from tests.upstream import launch

    config = folder / "modelwatch.toml"
    config.write_text(f'[[sources]]\nname = "aihubmix"\nurl = "{upstream.url}"\n')
    return launch(
        "up",
        "--port",
        "0",
        "--every",
        str(every),
        "--config",
        str(config),
        "--db",
        str(db),
        cwd=folder,
    )


def _wait_for(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_up_stopped_mid_snapshot_finishes_it_and_exits_cleanly(tmp_path, bundled):
    """SIGTERM while a slow upstream is still answering: the snapshot in flight is
    finished (its answer stored) before the process exits 0."""
    import signal

    from tests.upstream import Upstream

    db = tmp_path / "stop.duckdb"
    with Upstream() as upstream:
        upstream.cache_control = "no-cache"
        upstream.body = bundled[0][1]
        upstream.delay = 3.0
        proc, _ = _up(tmp_path, upstream, db, every=60)
        _wait_for(lambda: len(upstream.requests) >= 1)  # the fetch is in flight
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    said = proc.stderr.read()
    assert proc.returncode == 0, said
    assert "aihubmix" in said and ": new, 23 models" in said
    with Store.open(db, read_only=True) as store:
        assert store.execute("SELECT outcome FROM fetch_log") == [("new",)]


def test_kill_9_while_draining_the_spool_loses_and_doubles_nothing(tmp_path, bundled):
    from pipeline.store.spool import Spool, SpoolEntry

    db = tmp_path / "drain.duckdb"
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    spool = Spool(db)
    for at, body in bundled[1:]:
        spool.put(
            SpoolEntry(
                source="aihubmix", kind="aihubmix", url="u", fetched_at=at, status=200, body=body
            )
        )
    drain = (
        "import sys\nfrom pipeline.store import Store\nfrom pipeline.ingest import drain_spool\n"
        "with Store.open(sys.argv[1]) as s:\n    drain_spool(s, sys.argv[1], "
        "hold_policy=None)\n"
    )
    for delay in (0.6, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", drain, str(db)])
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=10)
    with Store.open(db) as store:
        from pipeline.ingest import drain_spool

        drain_spool(store, db)
        log = store.execute("SELECT fetched_at, count(*) FROM fetch_log GROUP BY ALL ORDER BY 1")
    assert Spool(db).entries() == []
    assert [t for t, _ in log] == [t for t, _ in bundled]  # every fetch, in order
    assert all(n == 1 for _, n in log)  # each exactly once


def test_a_token_revoked_while_the_store_is_busy_is_never_honoured(served):
    from pipeline.serve.tokens import add_token, revoke_token

    with Store.open(served) as store:
        token = add_token(store, "carol", group="default")
    client = _asgi(create_app(served, busy_wait=0.2))
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/models", headers=bearer).status_code == 200
    assert client.get("/v1/models").status_code == 200  # served once: servable stale later
    with Store.open(served) as store:
        revoke_token(store, "carol")
    marker = served.parent / "served.duckdb.writer-waiting"
    marker.touch()  # a writer waits: bodies may be served stale, a token's scope may not
    try:
        assert client.get("/v1/models").status_code == 200  # the anonymous body, stale
        assert client.get("/v1/models", headers=bearer).status_code != 200
    finally:
        marker.unlink()
    assert client.get("/v1/models", headers=bearer).status_code == 401
