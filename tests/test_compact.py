"""Store size (issue 15): small files for small histories, and `modelwatch compact`."""

import json
from datetime import datetime

import duckdb

from pipeline.ingest import ingest
from pipeline.store import Store
from tests.conftest import run_cli
from tests.upstream import held

T0 = datetime(2026, 1, 1)
TABLES = ("fetch_log", "raw_payloads", "model_versions", "orders", "snapshots", "quarantine")


def everything(path) -> dict[str, list]:
    """Every row of every table, the raw archive as the bodies it gives back (compact
    re-encodes their data)."""
    with Store.open(path, read_only=True) as store:
        rows = {t: store.execute(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}
        rows["fetch_log"] = store.execute(  # a fetch's duration is the run's, not its data
            "SELECT * EXCLUDE (duration_ms) FROM fetch_log ORDER BY ALL"
        )
        rows["raw_payloads"] = store.execute(
            "SELECT * EXCLUDE (data) FROM raw_payloads ORDER BY ALL"
        )
        rows["bodies"] = [store.raw_payload(r[0]) for r in rows["raw_payloads"]]
        return rows


def archived(path) -> int:
    with Store.open(path, read_only=True) as store:
        return store.execute("SELECT sum(octet_length(data)) FROM raw_payloads")[0][0]


def test_a_small_history_makes_a_small_file(tmp_path, bundled):
    def build(db):
        with Store.open(db) as store:
            for at, body in bundled:
                ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        return db.stat().st_size

    old = tmp_path / "old.duckdb"
    duckdb.connect(str(old)).close()  # DuckDB's default layout: 256 KiB blocks
    # the 33 bundled payloads: 3.7 MB in the default layout, 0.3 MB in ours
    assert build(tmp_path / "new.duckdb") * 5 < build(old)


def test_compact_rewrites_an_old_file_and_keeps_every_row(tmp_path, bundled):
    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))  # as an older modelwatch made it: 256 KiB blocks
    con.close()
    with Store.open(old) as store:
        for at, body in bundled[:20]:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    before, size, data = everything(old), old.stat().st_size, archived(old)
    done = run_cli("compact", "--db", str(old))
    assert done.returncode == 0, done.stderr
    assert f"{old}:" in done.stdout and "MB ->" in done.stdout
    assert everything(old) == before
    assert old.stat().st_size < size
    assert archived(old) < data  # the bodies, re-encoded at zstd's level 19
    with Store.open(old) as store:  # still a working store: fetch ids go on
        last = store.execute("SELECT max(fetch_id) FROM fetch_log")[0][0]
        at, body = bundled[20]
        result = ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        assert result.fetch_id > last
    assert not list(tmp_path.glob("*.compact*"))


def test_compact_refuses_a_store_another_process_holds(tmp_path, bundled):
    db = tmp_path / "held.duckdb"
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    with held(db):
        done = run_cli("compact", "--db", str(db), "--wait", "1", child=True)
    assert done.returncode == 1 and "in use by another process" in done.stderr
    assert everything(db)["fetch_log"]


def catalogs(store: Store, source: str) -> list[list]:
    times = [r[0] for r in store.execute("SELECT observed_at FROM snapshots ORDER BY 1")]
    return [store.execute("SELECT * FROM catalog_as_of(?, ?)", [source, at]) for at in times]


def test_orders_are_json_text_and_an_older_store_is_migrated_in_place(tmp_path):
    """Orders used to be VARCHAR[] (LiteLLM: 10 MB for 400 orders in 16 KiB blocks); they
    are JSON text now, zstd-compressed. A store written the old way is converted when it
    is first opened for writing, and every catalog reads back the same."""
    from pipeline.ingest import payload_files, replay
    from tests.conftest import DATA

    db = tmp_path / "litellm.duckdb"
    with Store.open(db) as store:
        replay(store, payload_files(DATA / "litellm"), source="litellm")
        want = catalogs(store, "litellm")
        assert len(want) == 5 and all(len(c) > 1000 for c in want)
        # back to the old layout, as an older modelwatch wrote it
        store.execute(
            """CREATE TABLE old_orders AS SELECT order_hash, source,
                   from_json(model_ids, '["VARCHAR"]') AS model_ids,
                   from_json(positions, '["INTEGER"]') AS positions FROM orders"""
        )
        store.execute("DROP TABLE orders")
        store.execute(
            "CREATE TABLE orders (order_hash VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, "
            "model_ids VARCHAR[] NOT NULL, positions INTEGER[])"
        )
        store.execute("INSERT INTO orders SELECT * FROM old_orders")
        store.execute("DROP TABLE old_orders")
        store.execute("UPDATE meta SET value = 'older' WHERE key = 'ddl_hash'")
        types = store.execute(
            "SELECT data_type FROM duckdb_columns() WHERE column_name = 'model_ids'"
        )
        assert types == [("VARCHAR[]",)]
    with Store.open(db) as store:
        types = store.execute(
            "SELECT data_type FROM duckdb_columns() WHERE column_name = 'model_ids'"
        )
        assert types == [("VARCHAR",)]
        assert catalogs(store, "litellm") == want
    run_cli("compact", "--db", str(db))
    with Store.open(db, read_only=True) as store:
        assert catalogs(store, "litellm") == want


def test_an_older_store_that_kept_every_digest_is_migrated_and_compact_drops_them(
    tmp_path, bundled
):
    """Closed versions used to keep their row digest (NOT NULL): 336 KiB of OpenRouter's
    compacted store. An older store accepts NULL digests once opened for writing, and
    `compact` drops the ones it still has; the history itself is unchanged."""
    db = tmp_path / "old.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:20]:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        store.execute(
            "UPDATE model_versions_stored SET row_hash = 'kept' WHERE valid_to IS NOT NULL"
        )
        store.execute("ALTER TABLE model_versions_stored ALTER COLUMN row_hash SET NOT NULL")
        store.execute("UPDATE meta SET value = 'older' WHERE key = 'ddl_hash'")
    with Store.open(db) as store:  # the next versions to close must be able to drop theirs
        for at, body in bundled[20:]:
            result = ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
            assert result.outcome in ("new", "unchanged"), result.error
        kept = store.execute("SELECT count(*) FROM model_versions WHERE row_hash = 'kept'")[0][0]
        assert kept > 0
    before = everything(db)
    assert run_cli("compact", "--db", str(db)).returncode == 0
    after = everything(db)
    with Store.open(db, read_only=True) as store:
        assert store.execute(
            "SELECT count(row_hash) FROM model_versions WHERE valid_to IS NOT NULL"
        ) == [(0,)]
        open_rows = store.execute(
            "SELECT count(*), count(row_hash) FROM model_versions WHERE valid_to IS NULL"
        )[0]
        assert open_rows[0] == open_rows[1] > 0

    def without_digests(rows):
        return sorted((r[:-2] + r[-1:] for r in rows), key=repr)  # row_hash: last but one

    assert without_digests(after["model_versions"]) == without_digests(before["model_versions"])
    assert {t: v for t, v in after.items() if t != "model_versions"} == {
        t: v for t, v in before.items() if t != "model_versions"
    }


def test_an_older_store_with_a_snapshots_table_is_migrated_to_the_view(tmp_path, bundled):
    """Snapshots were a table repeating each applied fetch's log row (plus its order);
    they are a view of the log now. An older store moves the orders into the log when
    first opened for writing, and every catalog and change reads back the same."""
    db = tmp_path / "old.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:20]:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        want = store.execute("SELECT * FROM snapshots ORDER BY ALL")
        catalogs = [store.catalog_as_of("aihubmix", at).rows() for at, _ in bundled[:20]]
        changes = store.execute("SELECT * FROM model_changes ORDER BY ALL")
        store.execute("CREATE TABLE old_snapshots AS SELECT * FROM snapshots")
        store.execute("DROP VIEW snapshots")
        store.execute("CREATE TABLE snapshots AS SELECT * FROM old_snapshots")
        store.execute("DROP TABLE old_snapshots")
        store.execute("UPDATE fetch_log SET order_hash = NULL")
        store.execute("UPDATE meta SET value = 'older' WHERE key = 'ddl_hash'")
    with Store.open(db) as store:
        kinds = store.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'snapshots'"
        )
        assert kinds == [("VIEW",)]
        assert store.execute("SELECT * FROM snapshots ORDER BY ALL") == want
        assert [store.catalog_as_of("aihubmix", at).rows() for at, _ in bundled[:20]] == catalogs
        assert store.execute("SELECT * FROM model_changes ORDER BY ALL") == changes
        at, body = bundled[20]  # and it goes on
        assert ingest(store, body, source="aihubmix", fetched_at=at).outcome == "new"
        assert store.execute("SELECT count(*) FROM snapshots") == [(len(want) + 1,)]


def test_a_store_in_the_previous_release_layout_is_migrated_whole(tmp_path, bundled):
    """The layout modelwatch wrote until this change: `model_versions` a table with list
    columns and a digest on every version, `snapshots` a table. Opened for writing, it
    becomes today's layout in place; every catalog, change and version reads the same,
    it goes on ingesting, and `compact` keeps it all."""
    db = tmp_path / "previous.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:20]:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        versions = store.execute(
            "SELECT * EXCLUDE (row_hash) FROM model_versions ORDER BY source, model_id, valid_from"
        )
        changes = store.execute("SELECT * FROM model_changes ORDER BY ALL")
        catalogs = [store.catalog_as_of("aihubmix", at).rows() for at, _ in bundled[:20]]
        for sql in (
            "CREATE TABLE old_versions AS SELECT * REPLACE (coalesce(row_hash, 'x') AS row_hash)"
            " FROM model_versions",
            "CREATE TABLE old_snapshots AS SELECT * FROM snapshots",
            "DROP VIEW model_versions",
            "DROP VIEW snapshots",
            "DROP TABLE model_versions_stored",
            "CREATE TABLE model_versions AS SELECT * FROM old_versions",
            "ALTER TABLE model_versions ALTER COLUMN row_hash SET NOT NULL",
            "CREATE TABLE snapshots AS SELECT * FROM old_snapshots",
            "DROP TABLE old_versions",
            "DROP TABLE old_snapshots",
            "UPDATE fetch_log SET order_hash = NULL",
            "UPDATE meta SET value = 'previous' WHERE key = 'ddl_hash'",
        ):
            store.execute(sql)
        assert store.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = 'model_versions' "
            "AND column_name = 'features'"
        ) == [("VARCHAR[]",)]
    # read by this code before any write: its catalogs answer as they did (its own views,
    # e.g. the previous model_changes, are its own), and nothing is migrated
    untouched = db.read_bytes()
    with Store.open(db, read_only=True) as store:
        assert [store.catalog_as_of("aihubmix", at).rows() for at, _ in bundled[:20]] == catalogs
        last = store.catalog_as_of("aihubmix", bundled[19][0])["model_id"].to_list()
    listed = run_cli("models", "--db", str(db), "--format", "json", child=True)
    assert listed.returncode == 0, listed.stderr
    assert [m["model_id"] for m in json.loads(listed.stdout)["data"]] == last
    assert db.read_bytes() == untouched
    with Store.open(db) as store:
        kinds = dict(
            store.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_name IN ('model_versions', 'model_versions_stored', 'snapshots')"
            )
        )
        assert kinds == {
            "model_versions": "VIEW",
            "model_versions_stored": "BASE TABLE",
            "snapshots": "VIEW",
        }
        assert (
            store.execute(
                "SELECT * EXCLUDE (row_hash) FROM model_versions "
                "ORDER BY source, model_id, valid_from"
            )
            == versions
        )
        assert store.execute("SELECT * FROM model_changes ORDER BY ALL") == changes
        assert [store.catalog_as_of("aihubmix", at).rows() for at, _ in bundled[:20]] == catalogs
        for at, body in bundled[20:]:
            result = ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
            assert result.outcome in ("new", "unchanged"), result.error
    fresh = tmp_path / "fresh.duckdb"
    with Store.open(fresh) as store:
        for at, body in bundled:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    assert run_cli("compact", "--db", str(db)).returncode == 0

    def history(path):
        with Store.open(path, read_only=True) as store:
            return store.execute(
                "SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL"
            ), store.execute("SELECT * FROM model_changes ORDER BY ALL")

    assert history(db) == history(fresh)


def test_recompressing_the_archive_keeps_every_body_and_refuses_a_broken_chain():
    import json

    import pytest
    import zstandard as zstd

    from pipeline.errors import StoreError
    from pipeline.store.archive import _delta, _undelta, _unpack, content_hash, recompressed

    def body(n: int) -> bytes:
        return json.dumps({"data": [{"id": f"m{i}", "price": i * n} for i in range(300)]}).encode()

    def row(digest: str, codec: str, base: str | None, data: bytes) -> tuple:
        """A `raw_payloads` row (`RAW_COLUMNS`)."""
        return (digest, "x", T0, 1, codec, base, 0, data)

    a, b, c, d = body(1), body(2), body(3), body(4)
    # a keyframe, two deltas against it (a branch) and one against a delta
    rows = [
        row(content_hash(a), "zstd", None, zstd.ZstdCompressor(level=1).compress(a)),
        row(content_hash(b), "zstd-delta", content_hash(a), _delta(a, b, 1)),
        row(content_hash(c), "zstd-delta", content_hash(a), _delta(a, c, 1)),
        row(content_hash(d), "zstd-delta", content_hash(b), _delta(b, d, 1)),
    ]
    again = recompressed(list(reversed(rows)))
    assert [r[0] for r in again] == [r[0] for r in reversed(rows)]
    pairs = zip(again, reversed(rows), strict=True)
    assert all(r[1] == "x" and r[:7] == old[:7] for r, old in pairs)
    new = {r[0]: r[7] for r in again}
    assert sum(map(len, new.values())) < sum(len(r[7]) for r in rows)
    assert _unpack(new[content_hash(a)]) == a
    assert _undelta(a, new[content_hash(b)]) == b and _undelta(a, new[content_hash(c)]) == c
    assert _undelta(b, new[content_hash(d)]) == d

    wrong = [*rows[:3], row(content_hash(d), "zstd-delta", content_hash(b), _delta(b, c, 1))]
    with pytest.raises(StoreError, match=content_hash(d)):
        recompressed(wrong)
    garbled = [*rows[:3], row(content_hash(d), "zstd-delta", content_hash(b), b"not zstd")]
    with pytest.raises(StoreError, match=f"{content_hash(d)}.*cannot be read"):
        recompressed(garbled)
    orphan = [*rows[:3], row(content_hash(d), "zstd-delta", "f" * 64, _delta(b, d, 1))]
    with pytest.raises(StoreError, match="not reachable"):
        recompressed(orphan)


def test_a_long_run_returns_the_space_it_freed(tmp_path, bundled, monkeypatch):
    """`replay` (and `backfill`, through the same writer) ends by returning free blocks
    when they are enough to matter: the same rows, a smaller file, one line saying so."""
    import shutil

    import pipeline.store as store_module
    from tests.conftest import HISTORY

    later = tmp_path / "later"
    later.mkdir()
    for path in sorted(HISTORY.iterdir())[20:]:
        shutil.copy(path, later / path.name)

    def run(db, **thresholds) -> str:
        with Store.open(db) as store:  # a checkpoint per fetch leaves blocks free
            for at, body in bundled[:20]:
                ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
                store.execute("CHECKPOINT")
        for name, value in thresholds.items():
            monkeypatch.setattr(store_module, name, value)
        done = run_cli("replay", str(later), "--db", str(db), "--accept-mass-removal")
        assert done.returncode == 0, done.stderr
        return done.stderr

    kept, returned = tmp_path / "kept.duckdb", tmp_path / "returned.duckdb"
    assert "free space returned" not in run(kept, RETURN_FREE_MIN=1 << 40)
    free, total = store_module.free_space(kept)
    assert free > 0
    said = run(returned, RETURN_FREE_MIN=1, RETURN_FREE_SHARE=free / total / 2)
    assert f"{returned}: free space returned, " in said
    assert returned.stat().st_size < kept.stat().st_size
    assert store_module.free_space(returned)[0] == 0
    assert everything(returned) == everything(kept)

    monkeypatch.setattr(store_module, "RETURN_FREE_SHARE", 1.0)  # a tidy store: left alone
    assert store_module.return_free_space(returned) is None


def test_free_space_is_left_for_later_when_another_process_holds_the_store(
    tmp_path, bundled, capsys, monkeypatch
):
    import pipeline.store as store_module
    from pipeline.cli import _return_free_space

    db = tmp_path / "held.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:3]:
            ingest(store, body, source="aihubmix", fetched_at=at)
    before = everything(db)
    monkeypatch.setattr(store_module, "RETURN_FREE_MIN", 0)
    monkeypatch.setattr(store_module, "RETURN_FREE_SHARE", 0.0)
    with held(db):
        _return_free_space(db)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("free space not returned (") and "modelwatch compact" in line
    assert everything(db) == before


def test_no_other_process_can_write_the_original_while_its_copy_replaces_it(
    tmp_path, bundled, monkeypatch
):
    """Between the copy and the swap, a write to the original would be lost with it: the
    original stays attached (so locked) until the copy has replaced it."""
    import os
    import subprocess
    import sys

    import pipeline.store as store_module

    db = tmp_path / "swap.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:3]:
            ingest(store, body, source="aihubmix", fetched_at=at)
    tried = []
    real_fsync = os.fsync

    def fsync_then_try_writing(fd: int) -> None:
        real_fsync(fd)
        tried.append(
            subprocess.run(
                [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}).close()"],
                capture_output=True,
                text=True,
            )
        )

    monkeypatch.setattr(store_module.os, "fsync", fsync_then_try_writing)
    store_module.compact(db, recompress=False)
    (attempt,) = tried
    assert attempt.returncode != 0 and "lock" in attempt.stderr.lower()


def test_no_free_space_to_return_for_a_store_in_memory_or_missing(tmp_path):
    from pipeline.store import return_free_space

    assert return_free_space(":memory:") is None
    assert return_free_space(tmp_path / "missing.duckdb") is None


def test_compact_mistakes_are_one_line_through_the_installed_script(tmp_path):
    missing = tmp_path / "missing.duckdb"
    done = run_cli("compact", "--db", str(missing), child=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: database {str(missing)!r} does not exist"]
    assert not missing.exists()
    usage = run_cli("compact", "--wait", "-1", "--db", str(missing), child=True)
    assert usage.returncode == 2 and "--wait" in usage.stderr and "Traceback" not in usage.stderr
