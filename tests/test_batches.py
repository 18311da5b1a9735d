"""Replay and backfill in batches (issue 15): a batch of payloads in one transaction, its
type-2 changes applied set-wise, gives exactly the history of ingesting the payloads one
at a time; a batch is all or nothing, and a failure inside one is recorded as it would be
alone."""

from pathlib import Path

import pytest

import pipeline.ingest
import pipeline.store
from pipeline.errors import StoreError
from pipeline.ingest import ingest, payload_files, read_payload, replay
from pipeline.outcome import Outcome
from pipeline.store import Store
from tests.conftest import DATA, HISTORY

# every history table; fetch ids number attempts, so compare without them
TABLES = {
    "fetch_log": "SELECT source, url, fetched_at, content_hash, outcome, error, models, added,"
    " removed, returned, changed, quarantined, catalog_hash FROM fetch_log ORDER BY ALL",
    "model_versions": "SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL",
    "versions_by_fetch": "SELECT f.fetched_at, v.model_id FROM model_versions v"
    " JOIN fetch_log f USING (fetch_id) ORDER BY ALL",
    "snapshots": "SELECT * EXCLUDE (fetch_id) FROM snapshots ORDER BY ALL",
    "orders": "SELECT * FROM orders ORDER BY ALL",
    "quarantine": "SELECT * FROM quarantine ORDER BY ALL",
    "raw_payloads": "SELECT content_hash, size, codec, base_hash, depth FROM raw_payloads"
    " ORDER BY ALL",
    "changes": "SELECT * FROM model_changes ORDER BY ALL",
}

# (folder, source): real recorded histories, with added, removed, returned and changed models
HISTORIES = [
    (HISTORY, "aihubmix"),
    (DATA / "openrouter", "openrouter"),
    (DATA / "litellm", "litellm"),
]


def tables(store: Store) -> dict[str, list]:
    return {name: store.execute(sql) for name, sql in TABLES.items()}


def one_at_a_time(files: list, source: str, **kwargs) -> dict[str, list]:
    with Store.open(":memory:") as alone:
        for at, path in files:
            ingest(
                alone,
                read_payload(path),
                source=source,
                fetched_at=at,
                url=f"file:{path.name}",
                **kwargs,
            )
        return tables(alone)


# 3: batches end inside every history; 50 (slow): one batch holds each history whole
@pytest.mark.parametrize("batch", [3, pytest.param(50, marks=pytest.mark.slow)])
@pytest.mark.parametrize(("folder", "source"), HISTORIES, ids=[s for _, s in HISTORIES])
def test_a_batched_replay_equals_ingesting_one_payload_at_a_time(
    monkeypatch, folder: Path, source: str, batch: int
):
    files = payload_files(folder)
    monkeypatch.setattr(pipeline.ingest, "REPLAY_BATCH", batch)
    with Store.open(":memory:") as store:
        results = replay(store, files, source=source, accept_mass_removal=True)
        assert [r.fetched_at for r in results] == [at for at, _ in files]
        assert Outcome.NEW in {r.outcome for r in results}
        assert tables(store) == one_at_a_time(files, source, accept_mass_removal=True)


def test_holds_inside_a_batch_are_the_same_as_alone(monkeypatch, bundled):
    """The bundled history holds 6 of its fetches as suspect: held, then confirmed and
    released by the hold policy, all inside batches."""
    files = payload_files(HISTORY)
    monkeypatch.setattr(pipeline.ingest, "REPLAY_BATCH", 5)
    with Store.open(":memory:") as store:
        results = replay(store, files, source="aihubmix")
        assert Outcome.SUSPECT in {r.outcome for r in results}
        assert tables(store) == one_at_a_time(files, "aihubmix")


def test_a_failure_inside_a_batch_is_recorded_as_alone_and_the_rest_stand(monkeypatch):
    """The 3rd payload's write fails: the batch is rolled back and applied one by one, so
    payloads 1-2 stand, the 3rd is `failed` with its body kept, and the next ones apply."""
    files = payload_files(HISTORY)[:8]
    third = files[2][0]
    real = pipeline.store.apply_changes

    def disk_full_at_the_third(con, result, changes, *pending):
        if result.fetched_at == third:
            raise OSError("No space left on device")
        return real(con, result, changes, *pending)

    monkeypatch.setattr(pipeline.ingest, "REPLAY_BATCH", 5)
    with Store.open(":memory:") as store:
        with monkeypatch.context() as patch:
            patch.setattr(pipeline.store, "apply_changes", disk_full_at_the_third)
            with pytest.raises(StoreError, match="No space left"):
                replay(store, files, source="aihubmix", accept_mass_removal=True)
        logged = store.execute("SELECT fetched_at, outcome FROM fetch_log ORDER BY fetch_id")
        assert [str(o) for _, o in logged] == ["new", "new", "failed"]
        assert logged[2][0] == third
        kept = store.execute(
            "SELECT count(*) FROM fetch_log JOIN raw_payloads USING (content_hash) "
            "WHERE outcome = 'failed'"
        )
        assert kept == [(1,)]  # its body is kept

        # the re-run applies the failed one and the rest: the same as a clean run
        replay(store, files, source="aihubmix", accept_mass_removal=True)
        clean = one_at_a_time(files, "aihubmix", accept_mass_removal=True)
        got = tables(store)
        assert {k: v for k, v in got.items() if k != "fetch_log"} == {
            k: v for k, v in clean.items() if k != "fetch_log"
        }


def test_a_batch_that_cannot_commit_leaves_the_store_as_before(monkeypatch, tmp_path):
    """All or nothing: a COMMIT that fails keeps nothing of its batch, and the batches
    before it stand; the re-run resumes and ends equal to a clean run."""
    files = payload_files(HISTORY)
    monkeypatch.setattr(pipeline.ingest, "REPLAY_BATCH", 10)
    db = tmp_path / "batches.duckdb"
    batches = 0
    real_batch = Store.batch

    def failing_second_commit(self):
        nonlocal batches
        batches += 1
        if batches != 2:
            return real_batch(self)
        return _failing(self, real_batch)

    monkeypatch.setattr(Store, "batch", failing_second_commit)
    with Store.open(db) as store:
        with pytest.raises(StoreError, match="could not write"):
            replay(store, files, source="aihubmix", accept_mass_removal=True)
        assert store.execute("SELECT count(*) FROM fetch_log")[0][0] == 10
    monkeypatch.setattr(Store, "batch", real_batch)
    with Store.open(db) as store:
        replay(store, files, source="aihubmix", accept_mass_removal=True)
        assert tables(store) == one_at_a_time(files, "aihubmix", accept_mass_removal=True)


def _failing(store: Store, real_batch):
    """`Store.batch` whose COMMIT the database refuses (as a full disk would)."""
    from contextlib import contextmanager

    import duckdb

    @contextmanager
    def batch():
        with real_batch(store):
            yield
            store._rows("SELECT 1")  # the batch's work is done; now the commit fails
            raise_on_commit = store._con

            class Refusing:
                def __init__(self, con):
                    self._con = con

                def execute(self, sql, *args):
                    if sql == "COMMIT":
                        raise duckdb.IOException('Could not write file "x.wal": File too large')
                    return self._con.execute(sql, *args)

                def __getattr__(self, name):
                    return getattr(self._con, name)

            store._con = Refusing(raise_on_commit)  # type: ignore[assignment]
        store._con = raise_on_commit

    return batch()


def test_the_collector_leaves_old_objects_alone_only_while_ingesting(bundled):
    """`gc.freeze` spares a replay the collector's walks over every imported library's
    objects; it must end with the work, whatever happens, and nest."""
    import gc

    from pipeline.ingest import in_batches

    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    def one(entry):
        at, body = entry
        seen.append(gc.get_freeze_count())
        if len(seen) == 3:
            raise StoreError("the disk said no")  # stops the run, as a refused COMMIT does
        return ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)

    with Store.open(":memory:") as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
        assert gc.get_freeze_count() == 0  # a single ingest hands them back too
        with pytest.raises(StoreError):
            in_batches(store, bundled[1:], one, lambda entry, result: None)
    assert len(seen) == 3 and all(count > 0 for count in seen)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM current_models",
        "SELECT count(*) FROM snapshot_models",
        "SELECT count(*) FROM models_as_of(TIMESTAMP '9999-12-31')",
        "SELECT count(*) FROM model_compare",
        "SELECT count(*) FROM snapshots",
        "SELECT count(*) FROM model_changes",
    ],
)
def test_a_query_inside_a_batch_sees_what_the_batch_wrote(bundled, sql):
    """What a batch holds back is written before any query that may read it: every view
    answers inside the batch as it does after it."""
    with Store.open(":memory:") as store:
        with store.batch():
            for at, body in bundled[:6]:
                ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
            inside = store.execute(sql)
        assert inside == store.execute(sql)
