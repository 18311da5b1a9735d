"""No fetch is lost to a busy store (SPEC 3): with the file held by another process,
`modelwatch snapshot` spools what it fetched, says so in one line and exits 0; the next
run that can write applies the spool first, each fetch at its own time, exactly once."""

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline.ingest import drain_spool, ingest, snapshot_at
from pipeline.outcome import Outcome
from pipeline.store import Store
from pipeline.store.spool import Spool, SpoolEntry
from tests.conftest import run_cli
from tests.upstream import Upstream, hold


@pytest.fixture
def upstream():
    with Upstream() as server:
        server.cache_control = "no-cache"
        yield server


def versions(db: Path) -> list[tuple]:
    with Store.open(db, read_only=True) as store:
        return store.execute(
            "SELECT model_id, valid_from, valid_to, input_price FROM model_versions ORDER BY ALL"
        )


def test_a_snapshot_while_a_notebook_holds_the_store_is_spooled_then_applied(
    tmp_path, upstream, bundled
):
    db = tmp_path / "catalog.duckdb"
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    upstream.body = bundled[1][1]
    holder = hold(db, 60)
    try:
        done = run_cli(
            "snapshot", "--url", upstream.url, "--db", str(db), "--wait", "1", child=True
        )
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "spooled, the store is busy" in done.stdout and done.stdout.count("\n") == 1
    entries = Spool(db).entries()
    assert len(entries) == 1 and entries[0].body == bundled[1][1]
    fetched_at = entries[0].fetched_at

    # the next command that can write applies it first, at its own fetch time
    assert run_cli("info", "--db", str(db)).returncode == 0  # a reader leaves it alone
    assert Spool(db).entries()
    upstream.body = bundled[2][1]
    later = run_cli("snapshot", "--url", upstream.url, "--db", str(db), "--force")
    assert later.returncode == 0, later.stderr
    assert Spool(db).entries() == []
    with Store.open(db, read_only=True) as store:
        log = store.execute("SELECT fetched_at, outcome FROM fetch_log ORDER BY fetched_at")
    assert [o for _, o in log] == ["new", "new", "new"] and log[1][0] == fetched_at


def test_an_entry_already_applied_is_dropped_not_applied_twice(tmp_path, bundled):
    db = tmp_path / "catalog.duckdb"
    (t0, first), (t1, second) = bundled[0], bundled[1]
    entry = SpoolEntry(
        source="aihubmix",
        kind="aihubmix",
        url="http://upstream/x",
        fetched_at=t1,
        status=200,
        body=second,
    )
    with Store.open(db) as store:
        ingest(store, first, source="aihubmix", fetched_at=t0)
        Spool(db).put(entry)
        assert [r.outcome for r in drain_spool(store, db)] == [Outcome.NEW]
        before = store.execute("SELECT count(*) FROM fetch_log")
        Spool(db).put(entry)  # as if killed after the write, before the delete
        assert drain_spool(store, db) == []
        assert store.execute("SELECT count(*) FROM fetch_log") == before
    assert Spool(db).entries() == []


def test_a_kill_while_spooling_leaves_the_whole_entry_or_none(tmp_path, bundled):
    db = tmp_path / "catalog.duckdb"
    code = """
import sys
from datetime import datetime
from pathlib import Path
from pipeline.store.spool import Spool, SpoolEntry
body = Path(sys.argv[1]).read_bytes()
spool = Spool(sys.argv[2])
i = 0
while True:
    i += 1
    spool.put(SpoolEntry(source="aihubmix", kind="aihubmix", url="u",
                         fetched_at=datetime(2026, 1, 1, 0, 0, i % 60, i), status=200, body=body))
"""
    body_file = tmp_path / "body.json"
    body_file.write_bytes(bundled[5][1] * 20)  # large enough to be caught mid-write
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", code, str(body_file), str(db)])
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    entries = Spool(db).entries()
    assert entries, "the writer spooled nothing in 3 s"
    assert all(e.body == body_file.read_bytes() for e in entries)  # no torn entry is read


def test_snapshot_at_spools_when_the_store_cannot_be_opened_in_time(tmp_path, upstream, bundled):
    db = tmp_path / "catalog.duckdb"
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    upstream.body = bundled[1][1]
    holder = hold(db, 30)
    try:
        result = snapshot_at(db, source="aihubmix", url=upstream.url, lock_timeout=0.5)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert type(result).__name__ == "Spooled" and result.path.exists()
    with Store.open(db) as store:
        applied = drain_spool(store, db)
    assert [r.outcome for r in applied] == [Outcome.NEW]
    assert versions(db)[0][1] <= result.fetched_at < datetime.now() + timedelta(days=1)


def test_a_write_that_fails_keeps_the_fetched_answer_in_the_spool(
    tmp_path, upstream, bundled, monkeypatch
):
    from pipeline.errors import StoreError

    db = tmp_path / "catalog.duckdb"
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    upstream.body = bundled[1][1]

    def disk_full(self, write):
        raise StoreError("could not write the checkpoint: No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Store, "write", disk_full)
        with pytest.raises(StoreError, match="the answer is kept in .*spool"):
            snapshot_at(db, source="aihubmix", url=upstream.url)
    [entry] = Spool(db).entries()
    assert entry.body == bundled[1][1]
    with Store.open(db) as store:
        assert [r.outcome for r in drain_spool(store, db)] == [Outcome.NEW]
        assert store.catalog_as_of("aihubmix", entry.fetched_at).height > 0
