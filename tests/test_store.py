"""SPEC 3: the type-2 history, the fetch log, the raw archive, and what survives failure."""

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.errors import BadInput, StoreError, StoreLocked
from pipeline.ingest import ingest
from pipeline.normalise import normalise_items
from pipeline.outcome import IngestResult, Outcome
from pipeline.sources.aihubmix import parse
from pipeline.store import FetchMeta, Store
from tests.conftest import doc

T0 = datetime(2026, 1, 1)
HISTORY_TABLES = ("model_versions", "orders", "snapshots", "quarantine")


def body(models: list[dict]) -> bytes:
    return json.dumps({"data": models, "message": "", "success": True}).encode()


def expected(payload: bytes, source: str = "aihubmix") -> pl.DataFrame:
    return normalise_items(parse(payload), source=source).frame.drop("row_hash")


def table(store: Store, name: str) -> list[tuple]:
    return store.execute(f"SELECT * FROM {name} ORDER BY ALL")


def fetch_log(store: Store) -> list[tuple]:
    return store.execute("SELECT outcome, http_status, error FROM fetch_log ORDER BY fetch_id")


def test_round_trip_on_the_bundled_history(store, bundled):
    for fetched_at, payload in bundled:
        result = ingest(
            store, payload, source="aihubmix", fetched_at=fetched_at, accept_mass_removal=True
        )
        assert result.outcome in ("new", "unchanged")
    for fetched_at, payload in bundled:
        assert_frame_equal(store.catalog_as_of("aihubmix", fetched_at), expected(payload))
        # the catalog holds until the next snapshot
        later = fetched_at + timedelta(seconds=1)
        assert_frame_equal(store.catalog_as_of("aihubmix", later), expected(payload))
    assert store.catalog_as_of("aihubmix", bundled[0][0] - timedelta(seconds=1)).height == 0
    summary = store.summary()
    # storage grows with changes: far fewer version rows than rows across all snapshots
    total_rows = sum(expected(p).height for _, p in bundled)
    assert summary["versions"] < total_rows / 4
    assert summary["raw_payloads"] == len({p for _, p in bundled})


def test_raw_archive_gives_back_every_body_exactly(tmp_path, bundled):
    from pipeline.store import content_hash

    path = tmp_path / "raw.duckdb"
    with Store.open(path) as store:
        for fetched_at, payload in bundled:
            ingest(
                store, payload, source="aihubmix", fetched_at=fetched_at, accept_mass_removal=True
            )
    with Store.open(path) as cold:  # a new connection: every delta chain is read from the table
        for _, payload in bundled:
            assert cold.raw_payload(content_hash(payload)) == payload
        codecs = dict(cold.execute("SELECT codec, count(*) FROM raw_payloads GROUP BY codec"))
        stored, raw = cold.execute("SELECT sum(octet_length(data)), sum(size) FROM raw_payloads")[0]
    assert codecs == {"zstd": 1, "zstd-delta": len({p for _, p in bundled}) - 1}
    assert stored * 10 < raw


def test_a_body_stored_before_is_not_stored_again_when_its_delta_was_prepared(bundled):
    """The delta computed while a body is parsed skips the "stored already?" query: the
    INSERT says. A body that returns (A, B, A) from a process that did not write A keeps
    one copy, and every body still reads back exactly."""
    from pipeline.store import content_hash
    from pipeline.store.archive import RawArchive

    a, b = bundled[0][1], bundled[1][1]
    with Store.open(":memory:") as store:
        archive = RawArchive(store._con)
        with store.transaction():
            assert archive.put("aihubmix", a, content_hash(a), T0, None)
            assert archive.put("aihubmix", b, content_hash(b), T0, content_hash(a))
        archive._depths.pop(content_hash(a))  # as if another process had written A
        with store.transaction():
            archive.prepare(a, content_hash(b))
            assert archive._prepared is not None
            assert not archive.put("aihubmix", a, content_hash(a), T0, content_hash(b))
        assert store.execute("SELECT count(*) FROM raw_payloads") == [(2,)]
        assert RawArchive(store._con).get(content_hash(a)) == a
        assert RawArchive(store._con).get(content_hash(b)) == b


def test_delta_chains_are_cut_every_keyframe_every_bodies(monkeypatch, tmp_path, bundled):
    """Every KEYFRAME_EVERY-th body is stored whole, so reading any body walks at most
    KEYFRAME_EVERY - 1 deltas; a cold store reads every body back exactly."""
    from pipeline.store import archive, content_hash

    monkeypatch.setattr(archive, "KEYFRAME_EVERY", 4)
    path = tmp_path / "chains.duckdb"
    with Store.open(path) as store:
        for fetched_at, payload in bundled[:14]:
            ingest(store, payload, source="aihubmix", fetched_at=fetched_at)
    with Store.open(path) as cold:
        rows = cold.execute("SELECT content_hash, codec, base_hash, depth FROM raw_payloads")
        for _, payload in bundled[:14]:
            assert cold.raw_payload(content_hash(payload)) == payload
    depth = {digest: d for digest, _, _, d in rows}
    assert len(rows) == len({p for _, p in bundled[:14]}) > 8
    for _, codec, base, d in rows:  # a chain is cut when it would reach 4
        assert d < 4
        assert (codec == "zstd") == (base is None) == (d == 0)
        assert base is None or d == depth[base] + 1
    assert [d for *_, d in rows].count(0) >= 2  # cut at least once


def test_identical_payload_and_304_add_one_log_row_and_no_model_rows(store):
    payload = doc("docs-api-v1-models-success.json")
    first = ingest(store, payload, source="aihubmix", fetched_at=T0)
    assert first.outcome == "new"
    before = {name: table(store, name) for name in HISTORY_TABLES + ("raw_payloads",)}
    again = ingest(store, payload, source="aihubmix", fetched_at=T0 + timedelta(minutes=5))
    assert again.outcome == "unchanged"
    store.record_attempt(
        IngestResult(
            source="aihubmix", fetched_at=T0 + timedelta(minutes=10), outcome=Outcome.NOT_MODIFIED
        ),
        FetchMeta(http_status=304, etag='"abc"'),
    )
    assert {name: table(store, name) for name in before} == before
    assert fetch_log(store) == [
        ("new", 200, None),
        ("unchanged", 200, None),
        ("not_modified", 304, None),
    ]


def test_same_content_in_other_bytes_is_unchanged_but_archived(store):
    models = [{"model_id": "a", "features": "tools,thinking"}, {"model_id": "b"}]
    ingest(store, body(models), source="aihubmix", fetched_at=T0)
    reordered = [{"model_id": "a", "features": "thinking, tools"}, {"model_id": "b"}]
    result = ingest(store, body(reordered), source="aihubmix", fetched_at=T0 + timedelta(hours=1))
    assert result.outcome == "unchanged"
    assert len(table(store, "raw_payloads")) == 2
    assert len(table(store, "model_versions")) == 2


def test_reingesting_the_same_fetch_is_a_no_op(store, bundled):
    for fetched_at, payload in bundled[:5]:
        ingest(store, payload, source="aihubmix", fetched_at=fetched_at)
    before = {name: table(store, name) for name in HISTORY_TABLES + ("fetch_log", "raw_payloads")}
    for fetched_at, payload in bundled[:5]:
        assert (
            ingest(store, payload, source="aihubmix", fetched_at=fetched_at).outcome == "duplicate"
        )
    assert {name: table(store, name) for name in before} == before


def test_type2_versions_close_and_reopen(store):
    a = {"model_id": "a", "pricing": {"input": 1.0}}
    b = {"model_id": "b", "pricing": {"input": 2.0}}
    c = {"model_id": "c"}
    steps = [[a, b, c], [a, dict(b, pricing={"input": 1.5}), c], [a, c], [b, a, c]]
    results = [
        ingest(store, body(m), source="aihubmix", fetched_at=T0 + timedelta(days=i))
        for i, m in enumerate(steps)
    ]
    assert [(r.added, r.changed, r.removed, r.returned) for r in results] == [
        (["a", "b", "c"], [], [], []),
        ([], ["b"], [], []),
        ([], [], ["b"], []),
        ([], [], [], ["b"]),
    ]
    rows = store.execute(
        "SELECT model_id, input_price, valid_from, valid_to FROM model_versions "
        "WHERE model_id = 'b' ORDER BY valid_from"
    )
    day = [T0 + timedelta(days=i) for i in range(4)]
    assert rows == [
        ("b", 2.0, day[0], day[1]),
        ("b", 1.5, day[1], day[2]),
        ("b", 2.0, day[3], None),
    ]
    # a reorder alone is not a new version, but the default order is kept
    assert store.catalog_as_of("aihubmix", day[3])["model_id"].to_list() == ["b", "a", "c"]
    assert len(table(store, "model_versions")) == 5


def test_rejected_payloads_keep_their_bytes_and_leave_history_alone(store):
    from pipeline.store import content_hash

    good = doc("docs-api-v1-models-success.json")
    ingest(store, good, source="aihubmix", fetched_at=T0)
    before = {name: table(store, name) for name in HISTORY_TABLES}
    bad_bodies = [doc("docs-api-v1-models-error-500.json"), b"<html>oops</html>", b'{"data": 3}']
    for i, bad in enumerate(bad_bodies, start=1):
        result = ingest(store, bad, source="aihubmix", fetched_at=T0 + timedelta(minutes=i))
        assert result.outcome == "rejected"
        assert store.raw_payload(content_hash(bad)) == bad
    assert {name: table(store, name) for name in HISTORY_TABLES} == before
    assert [r[2] for r in fetch_log(store)[1:]] == [
        "upstream answered success:false: '服务器内部错误，请稍后重试'",
        "body is not JSON (JSONDecodeError): '<html>oops</html>'",
        "body has no 'data' list (keys: data)",
    ]
    assert_frame_equal(store.catalog_as_of("aihubmix", T0 + timedelta(days=1)), expected(good))


@pytest.mark.parametrize("keep", [0, 1])
def test_mass_removal_is_held_as_suspect_unless_accepted(store, keep):
    from pipeline.store import content_hash

    models = [{"model_id": f"m{i}"} for i in range(4)]
    ingest(store, body(models), source="aihubmix", fetched_at=T0)
    before = {name: table(store, name) for name in HISTORY_TABLES}
    shrunk = body(models[:keep])
    held = ingest(store, shrunk, source="aihubmix", fetched_at=T0 + timedelta(hours=1))
    assert held.outcome == "suspect"
    assert held.error.startswith("empty catalog" if keep == 0 else f"would remove {4 - keep} of 4")
    assert store.raw_payload(content_hash(shrunk)) == shrunk
    assert {name: table(store, name) for name in HISTORY_TABLES} == before
    applied = ingest(
        store,
        shrunk,
        source="aihubmix",
        fetched_at=T0 + timedelta(hours=2),
        accept_mass_removal=True,
    )
    assert applied.outcome == "new"
    assert store.catalog_as_of("aihubmix", T0 + timedelta(hours=2)).height == keep


def test_removing_exactly_half_is_applied(store):
    models = [{"model_id": f"m{i}"} for i in range(4)]
    ingest(store, body(models), source="aihubmix", fetched_at=T0)
    assert (
        ingest(
            store, body(models[:2]), source="aihubmix", fetched_at=T0 + timedelta(hours=1)
        ).outcome
        == "new"
    )


def test_a_failure_mid_write_leaves_history_as_it_was(store, bundled, monkeypatch):
    from pipeline.store import content_hash

    (t1, first), (t2, second) = bundled[0], bundled[1]
    ingest(store, first, source="aihubmix", fetched_at=t1)
    before = {name: table(store, name) for name in HISTORY_TABLES}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    # the fetch is logged and changed versions are closed when the new rows fail
    import pipeline.store.history

    monkeypatch.setattr(pipeline.store.history, "_insert_versions", crash)
    with pytest.raises(StoreError, match="could not apply the snapshot: OSError: disk full"):
        ingest(store, second, source="aihubmix", fetched_at=t2)
    assert {name: table(store, name) for name in HISTORY_TABLES} == before
    assert fetch_log(store)[-1] == (
        "failed",
        200,
        "could not apply the snapshot: OSError: disk full",
    )
    assert store.raw_payload(content_hash(second)) == second
    monkeypatch.undo()
    # the same body applies cleanly afterwards
    assert (
        ingest(store, second, source="aihubmix", fetched_at=t2 + timedelta(seconds=1)).outcome
        == "new"
    )
    assert_frame_equal(store.catalog_as_of("aihubmix", t2 + timedelta(seconds=1)), expected(second))


def test_history_is_written_oldest_first(store):
    ingest(store, body([{"model_id": "a"}]), source="aihubmix", fetched_at=T0)
    with pytest.raises(BadInput, match="is older than the newest one stored"):
        ingest(
            store, body([{"model_id": "b"}]), source="aihubmix", fetched_at=T0 - timedelta(days=1)
        )


def test_quarantine_keeps_invalid_rows_with_reasons(store):
    models = [{"model_id": "ok"}, {"model_id": "neg", "pricing": {"input": -1}}, {"desc": "no id"}]
    result = ingest(store, body(models), source="aihubmix", fetched_at=T0)
    assert (result.outcome, result.models, result.quarantined) == ("new", 1, 2)
    rows = store.execute("SELECT position, model_id, reason, raw FROM quarantine ORDER BY position")
    assert rows == [
        (
            1,
            "neg",
            "input_price must not be negative (got '-1.0')",
            '{"model_id": "neg", "pricing": {"input": -1}}',
        ),
        (2, None, "model_id is missing", '{"desc": "no id"}'),
    ]
    # positions are the upstream indexes, gaps included
    assert store.catalog_as_of("aihubmix", T0)["position"].to_list() == [0]


def test_state_survives_reopening_a_file(tmp_path, bundled):
    path = tmp_path / "c.duckdb"
    for fetched_at, payload in bundled[:3]:
        with Store.open(path) as store:
            ingest(store, payload, source="aihubmix", fetched_at=fetched_at)
    with Store.open(path) as store:
        again = ingest(
            store, bundled[2][1], source="aihubmix", fetched_at=bundled[2][0] + timedelta(minutes=5)
        )
        assert again.outcome == "unchanged"
        assert_frame_equal(store.catalog_as_of("aihubmix", bundled[2][0]), expected(bundled[2][1]))


def test_a_second_writer_gets_a_clear_error(tmp_path):
    path = tmp_path / "locked.duckdb"
    with Store.open(path):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(path)!r})
            print("ready", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(
            StoreLocked, match=r"is in use by another process \(PID \d+\); waited 0.3s"
        ):
            Store.open(path, lock_timeout=0.3)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with Store.open(path, lock_timeout=0.3) as store:  # free again once the holder exits
        assert store.summary()["fetches"] == 0


def open_digests(store: Store) -> list[tuple]:
    return store.execute(
        "SELECT model_id, row_hash FROM model_versions WHERE valid_to IS NULL ORDER BY ALL"
    )


def test_closed_versions_drop_their_digest_and_rewind_gives_it_back(store, bundled):
    """A digest is needed only while a version is open (the next diff); one a rewind opens
    again is recomputed from its stored values, exactly as the diff computed it."""
    half = len(bundled) // 2
    for fetched_at, payload in bundled[:half]:
        ingest(store, payload, source="aihubmix", fetched_at=fetched_at, accept_mass_removal=True)
    at_half = open_digests(store)
    for fetched_at, payload in bundled[half:]:
        ingest(store, payload, source="aihubmix", fetched_at=fetched_at, accept_mass_removal=True)
    closed = store.execute(
        "SELECT count(*), count(row_hash) FROM model_versions WHERE valid_to IS NOT NULL"
    )[0]
    assert closed[0] > 0 and closed[1] == 0
    assert all(h is not None for _, h in open_digests(store))
    clean = store.execute("SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL")
    with store.transaction():
        store.rewind("aihubmix", bundled[half][0])
    assert open_digests(store) == at_half
    # applying the rest again opens no version the clean run did not
    for fetched_at, payload in bundled[half:]:
        result = ingest(
            store, payload, source="aihubmix", fetched_at=fetched_at, accept_mass_removal=True
        )
        assert result.outcome != Outcome.FAILED
    again = store.execute("SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL")
    assert again == clean


@settings(max_examples=200, deadline=None)
@given(
    source=st.text(max_size=8),
    ids=st.lists(st.text(max_size=12), max_size=8),
    gaps=st.lists(st.integers(min_value=0, max_value=3), max_size=8),
)
def test_an_order_digest_is_the_one_stores_already_hold(source, ids, gaps):
    """`Order.of` builds the digest's text from the JSON it stores; it must be the digest
    of json.dumps([source, ids, positions]) that every existing store's orders carry."""
    import hashlib

    from pipeline.store import Order

    positions, at = [], 0
    for i in range(len(ids)):
        at += gaps[i] if i < len(gaps) else 0
        positions.append(at)
        at += 1
    canon = json.dumps([source, ids, positions], ensure_ascii=False, separators=(",", ":"))
    order = Order.of(source, ids, positions)
    assert order.digest == hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()
    assert json.loads(order.ids) == ids
    assert order.positions is None or json.loads(order.positions) == positions
    assert (order.positions is None) == (positions == list(range(len(ids))))


def test_every_fetch_logs_its_body_digest_whichever_path_computed_it(bundled):
    """A new body at a new time is hashed on the worker thread while it is parsed; the
    body in force is not hashed at all; a repeat or an earlier time is hashed at once.
    Each logs and archives the body's own sha256, and reads back from it."""

    from pipeline.ingest import ingest
    from pipeline.store import content_hash

    (t1, a), (_, b) = bundled[0], bundled[1]
    broken = b'{"data": [1, 2'
    with Store.open(":memory:") as store:
        fetches = [
            (t1, a),  # the first: nothing in force
            (t1 + timedelta(hours=1), b),  # new body, new time: hashed while parsed
            (t1 + timedelta(hours=2), b),  # the body in force: not hashed
            (t1 + timedelta(hours=2), b),  # a repeat of that instant
            (t1 + timedelta(hours=3), broken),  # rejected, hashed while parsed
            (t1 + timedelta(hours=4), a),  # an older body again
        ]
        results = [ingest(store, body, source="aihubmix", fetched_at=at) for at, body in fetches]
        assert [r.outcome for r in results] == [
            "new",
            "new",
            "unchanged",
            "duplicate",
            "rejected",
            "new",
        ]
        assert [r.content_hash for r in results] == [content_hash(b) for _, b in fetches]
        logged = store.execute("SELECT content_hash FROM fetch_log ORDER BY fetch_id")
        assert [h for (h,) in logged] == [content_hash(b) for _, b in fetches[:3] + fetches[4:]]
        for _, body in fetches:
            assert store.raw_payload(content_hash(body)) == body


_CHARS = st.one_of(
    st.characters(),
    st.sampled_from(["\ud800", "\udfff", "\x00", "\x1f", "\x7f", "\u2028", '"', "\\", "é", "😀"]),
)
_PLAIN = st.one_of(
    st.text(_CHARS, max_size=10),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@example(values="\x7f", ensure_ascii=True)  # json.dumps escapes DEL then; orjson never
@example(values=["\ud800", "é"], ensure_ascii=False)  # orjson refuses a lone surrogate
@example(values=[2**64, "é"], ensure_ascii=True)  # orjson refuses an integer past 64 bits
@given(
    values=st.recursive(_PLAIN, lambda inner: st.lists(inner, max_size=5), max_leaves=20),
    ensure_ascii=st.booleans(),
)
def test_compact_json_writes_what_json_dumps_writes(values, ensure_ascii):
    """orjson writes ids, orders and digests' text; it must be json.dumps's, character
    for character (stored orders and catalog digests depend on it), lone surrogates,
    64-bit overflows and non-ASCII included."""
    from pipeline.store.history import compact_json

    want = json.dumps(values, ensure_ascii=ensure_ascii, separators=(",", ":"))
    assert compact_json(values, ensure_ascii=ensure_ascii) == want
