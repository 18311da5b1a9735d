"""The DuckDB store: the only place that holds a connection or writes SQL (SPEC 3).

    __init__.py   `Store`: open, transactions, the write of one fetch, the SQL funnel
    schema.py     tables, views and macros (`catalog_as_of`, `model_changes`, ...)
    archive.py    the raw archive: every distinct body once, delta-compressed
    history.py    the history writer: fetch log, quarantine, type-2 versions, orders
    reads.py      every read as a named method
    alerts.py     the alerts' baselines and deliveries (at most once per change)
    locking.py    one writer at a time per database file

A fetch is written in one transaction: a failure leaves the history as it was, and
the attempt (with its raw body) is then recorded as `failed` in a second transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline.errors import BadInput, ModelwatchError, StoreError, StoreLocked
from pipeline.outcome import ACCEPTED, IngestResult, Outcome
from pipeline.store.alerts import AlertBook
from pipeline.store.archive import RAW_COLUMNS, RawArchive, content_hash, recompressed
from pipeline.store.history import (
    BATCH_READERS,
    FetchMeta,
    Order,
    PendingBatch,
    SnapshotWrite,
    VersionChanges,
    apply_changes,
    insert_columns,
    log_fetch,
    store_quarantine,
)
from pipeline.store.reads import Reads
from pipeline.store.schema import ensure_schema
from schemas.record import VALUE_COLUMNS, row_hash

# New files are written in a storage format that the registry's `duckdb` shell (1.5.x)
# opens, so analysts can query the store with the SQL tool they have (SPEC 7).
STORAGE_VERSION = "v1.5.0"
# New files use small blocks (DuckDB's default of 256 KiB puts a ~3.5 MB floor under even
# a 33-snapshot history); the long text columns are zstd-compressed (schema.ZSTD_COLUMNS).
BLOCK_SIZE = int(os.environ.get("MODELWATCH_BLOCK_SIZE", "16384"))
STORAGE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "storage_compatibility_version": STORAGE_VERSION,
    "default_block_size": str(BLOCK_SIZE),
}
# A writer waiting for the file says so beside it: short-lived readers (the served API)
# do not open the file while this is fresh, so a flood of queries cannot starve writes.
WRITER_WAITING = ".writer-waiting"
WRITER_WAITING_FRESH = 30.0  # seconds after which a marker is taken as left by a crash


def writer_waiting(path: str | Path) -> bool:
    """Whether a writer is waiting for the file at `path` (see `WRITER_WAITING`)."""
    try:
        age = time.time() - Path(f"{path}{WRITER_WAITING}").stat().st_mtime
    except FileNotFoundError:
        return False
    return age < WRITER_WAITING_FRESH


__all__ = [
    "FetchMeta",
    "LastFetch",
    "SnapshotWrite",
    "SourceState",
    "Store",
    "compact",
    "return_free_space",
    "VersionChanges",
    "content_hash",
    "Order",
    "writer_waiting",
]


@dataclass(frozen=True)
class LastFetch:
    fetched_at: datetime
    etag: str | None
    max_age: int | None
    outcome: str


@dataclass
class SourceState:
    """What writing a source's next fetch needs to know, read once per connection.

    DuckDB lets one process write a file at a time, so while this Store is open nobody
    else can change it; the state is dropped after any failed write and read again.
    """

    last_accepted: str | None  # content hash of the newest new/unchanged body
    newest: datetime | None  # newest fetch time of any outcome
    current: dict[str, str]  # open versions: model_id -> row_hash
    order_hash: str | None  # order of the newest applied snapshot
    # every id the source has listed (read when first asked): is an id new, or returning?
    listed: set[str] | None = None


class Store(Reads, AlertBook):
    """One DuckDB file (or `:memory:`): `with Store.open(path) as store: ...`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, *, read_only: bool = False):
        self._con = con
        self.path = path
        self.read_only = read_only
        self._archive = RawArchive(con)
        self._states: dict[str, SourceState] = {}
        self._depth = 0  # transaction nesting: only the outermost one commits
        self._pending: PendingBatch | None = None  # what a batch holds back (`batch`)
        self._kinds: dict[str, str] = {}  # source_kind() answers (a kind never changes)
        try:
            ensure_schema(con, path, read_only=read_only)
        except duckdb.Error as exc:
            con.close()
            raise self._failure(exc) from None

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | Path | None = None, *, lock_timeout: float = 10.0, read_only: bool = False
    ) -> Store:
        """Open (creating if needed); wait up to `lock_timeout` s for another writer.

        `read_only` is for queries: several readers may share the file, never with a writer.
        """
        target = str(path if path is not None else ":memory:")
        if target != ":memory:":
            parent = Path(target).parent
            if not parent.exists():
                raise BadInput(f"database folder {str(parent)!r} does not exist")
            if read_only and not Path(target).exists():
                raise BadInput(f"database {target!r} does not exist; run a snapshot or replay")
        deadline = time.monotonic() + lock_timeout
        waiting = Path(f"{target}{WRITER_WAITING}")
        try:
            while True:
                try:
                    con = duckdb.connect(
                        target,
                        read_only=read_only and target != ":memory:",
                        config=STORAGE_CONFIG,
                    )
                    break
                except duckdb.IOException as exc:
                    text = str(exc)
                    if "lock" not in text.lower():
                        raise StoreError(
                            f"cannot open database {target!r}: {text.splitlines()[0]}"
                        ) from None
                    if time.monotonic() >= deadline:
                        holder = (
                            text.split("(PID", 1)[-1].split(")")[0].strip()
                            if "PID" in text
                            else "?"
                        )
                        raise StoreLocked(
                            f"database {target!r} is in use by another process (PID {holder}); "
                            f"waited {lock_timeout:g}s"
                        ) from None
                    if not read_only:  # readers see it and stay away until we are in
                        waiting.touch()
                    time.sleep(0.1)
                except duckdb.Error as exc:
                    first = str(exc).splitlines()[0]
                    if "corrupt" in first.lower():
                        raise StoreError(f"database {target!r} cannot be read: {first}") from None
                    raise StoreError(f"cannot open database {target!r}: {first}") from None
        finally:
            if not read_only:
                waiting.unlink(missing_ok=True)
        return cls(con, target, read_only=read_only)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    # -- the SQL funnel ----------------------------------------------------------------
    def execute(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> list[Any]:
        """Run any SQL and fetch every row (an analyst's or a test's own query)."""
        return self._rows(sql, params)

    def frame(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        """A query's result as a polars frame."""
        self._flush(sql)
        try:
            return pl.DataFrame(self._con.sql(sql, params=params))  # Arrow stream: no pyarrow
        except duckdb.Error as exc:
            raise self._failure(exc) from exc

    def _rows(
        self, sql: str, params: dict[str, Any] | list[Any] | None = None, *, flush: bool = True
    ) -> list[Any]:
        if flush:
            self._flush(sql)
        try:
            return self._con.execute(sql, params if params is not None else []).fetchall()
        except duckdb.Error as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: duckdb.Error) -> Exception:
        """A damaged file is the store's error, in one line; anything else (a bad query, a
        constraint inside a write) stays DuckDB's, for the caller that made it."""
        first = " ".join(str(exc).split())
        if "corrupt" in first.lower() or isinstance(exc, duckdb.IOException):
            return StoreError(f"database {self.path!r} cannot be read: {first[:300]}")
        return exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; nested blocks join the outermost one. After a failure (COMMIT's
        own included) nothing this Store remembers about the tables is trusted again."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
            try:
                self._con.execute("COMMIT")
            except duckdb.Error as exc:  # the disk said no: nothing of the block was written
                reason = " ".join(str(exc).split())
                raise StoreError(f"could not write to {str(self.path)!r}: {reason}") from exc
        except BaseException:
            with suppress(duckdb.Error):  # a failed COMMIT has ended the transaction already
                self._con.execute("ROLLBACK")
            self._archive.forget()
            self._states.clear()
            self._kinds.clear()
            raise
        finally:
            self._depth = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for many snapshots, their type-2 changes applied set-wise at
        its end (and before any query that reads the versions): all or nothing."""
        if self._depth:
            yield  # inside a larger unit: plain writes
            return
        with self.transaction():
            self._pending = PendingBatch()
            self._archive.hold()
            try:
                yield
                self._flush()
            finally:
                self._pending = None
                self._archive.release()

    def _flush(self, sql: str | None = None) -> None:
        """Write what a batch holds back, if `sql` (None: any) may read it."""
        if sql is not None and not any(t in sql for t in BATCH_READERS):
            return
        try:
            if self._archive.holding:
                self._archive.write_held()
            if self._pending:
                self._pending.flush(self._con)
        except duckdb.Error as exc:
            raise self._failure(exc) from exc

    def source_kind(self, source: str) -> str | None:
        """The adapter `source` was ingested with (remembered: asked at every ingest)."""
        if source not in self._kinds:
            kind = super().source_kind(source)
            if kind is None:
                return None
            self._kinds[source] = kind
        return self._kinds[source]

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # -- what the writer needs to know ----------------------------------------------------
    def last_fetch(self, source: str, url: str | None = None) -> LastFetch | None:
        """The newest successful contact with `source` (for ETag and max-age)."""
        row = self.last_contact(source, url)
        return LastFetch(*row) if row else None

    def source_state(self, source: str) -> SourceState:
        if source not in self._states:
            last = self._rows(
                "SELECT content_hash FROM fetch_log WHERE source = ? AND outcome IN "
                "('new', 'unchanged') ORDER BY fetched_at DESC, fetch_id DESC LIMIT 1",
                [source],
            )
            self._states[source] = SourceState(
                last_accepted=last[0][0] if last else None,
                newest=self._scalar(
                    "SELECT max(fetched_at) FROM fetch_log WHERE source = ?", [source]
                ),
                current=dict(
                    self._rows(
                        "SELECT model_id, row_hash FROM model_versions "
                        "WHERE source = ? AND valid_to IS NULL",
                        [source],
                    )
                ),
                order_hash=self._scalar(
                    "SELECT order_hash FROM snapshots WHERE source = ? "
                    "ORDER BY observed_at DESC LIMIT 1",
                    [source],
                ),
            )
        return self._states[source]

    def prepare_raw(self, body: bytes, base: str | None) -> None:
        """`body` will most likely be archived as a delta against `base`: start it now,
        so it overlaps the parse (see `RawArchive.prepare`)."""
        self._archive.prepare(body, base)

    def seen_before(self, source: str, ids: list[str]) -> set[str]:
        """Which of `ids` `source` has ever listed: read once, then kept with the source's
        state (a query each time took 1.5 ms of a LiteLLM snapshot)."""
        state = self.source_state(source)
        if state.listed is None:
            stored = self._rows(
                "SELECT DISTINCT model_id FROM model_versions_stored WHERE source = ?",
                [source],
                flush=False,
            )
            pending = self._pending.versions.rows if self._pending is not None else []
            state.listed = {r[0] for r in stored}
            state.listed |= {r["model_id"] for r in pending if r["source"] == source}
        return {m for m in ids if m in state.listed}

    def is_current_body(self, source: str, body: bytes) -> bool | None:
        """Whether `body` is byte for byte the catalog in force (the common poll):
        comparing with the body just written beats hashing it. None when that body is
        not in memory (or there is none)."""
        last = self.source_state(source).last_accepted
        known = self._archive.recent(last) if last is not None else None
        return None if known is None else known == body

    def add_token(
        self,
        name: str,
        sha256: str,
        *,
        models: list[str] | None,
        group: str | None,
        created_at: datetime,
    ) -> None:
        """Store a served-API token by its hash (the token itself is never stored)."""
        self._rows(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?)", [name, sha256, models, group, created_at]
        )

    def remove_token(self, name: str) -> None:
        self._rows("DELETE FROM tokens WHERE name = ?", [name])

    def rewind(self, source: str, since: datetime) -> list[dict[str, Any]]:
        """Undo every fetch of `source` at or after `since`, inside the caller's
        transaction, and return their fetch-log rows (oldest first) so they can be applied
        again; their raw bodies stay in the archive."""
        if not self.in_transaction:
            raise StoreError("rewind runs inside a transaction")
        undone = self.frame(
            "SELECT * FROM fetch_log WHERE source = $s AND fetched_at >= $t "
            "ORDER BY fetched_at, fetch_id",
            {"s": source, "t": since},
        ).to_dicts()
        for sql in (
            "DELETE FROM fetch_log WHERE source = $s AND fetched_at >= $t",
            "DELETE FROM model_versions_stored WHERE source = $s AND valid_from >= $t",
            "UPDATE model_versions_stored SET valid_to = NULL WHERE source = $s AND valid_to >= $t",
        ):
            self._rows(sql, {"s": source, "t": since})
        self._rehash_open(source)
        self._states.pop(source, None)
        return undone

    def _rehash_open(self, source: str) -> None:
        """Give the versions `rewind` opened again their digest back (a closed version
        keeps none): recomputed from the stored values, which round-trip exactly."""
        reopened = self.frame(
            f"SELECT model_id, {', '.join(VALUE_COLUMNS)} FROM model_versions "
            "WHERE source = $s AND valid_to IS NULL AND row_hash IS NULL",
            {"s": source},
        )
        if reopened.is_empty():
            return
        digests = [row_hash(r) for r in reopened.drop("model_id").iter_rows(named=True)]
        self._rows(
            "UPDATE model_versions_stored v SET row_hash = h.row_hash FROM (SELECT "
            "unnest($ids::VARCHAR[]) AS model_id, unnest($digests::VARCHAR[]) AS row_hash) h "
            "WHERE v.source = $s AND v.model_id = h.model_id AND v.valid_to IS NULL",
            {"s": source, "ids": reopened["model_id"].to_list(), "digests": digests},
        )

    def mark_private(self, source: str, since: datetime) -> None:
        """`source` was fetched with a bearer token: its catalog is private from now on."""
        self._rows(
            "INSERT INTO private_sources VALUES (?, ?) ON CONFLICT DO NOTHING", [source, since]
        )

    # -- the raw archive ----------------------------------------------------------------
    def raw_payload(self, digest: str) -> bytes:
        """The exact bytes of a stored body."""
        return self._archive.get(digest)

    # -- writing ---------------------------------------------------------------------
    def write(self, w: SnapshotWrite) -> IngestResult:
        """Apply one fetch in one transaction. A failure that is not the caller's leaves
        the history as it was, records the attempt as `failed` (body kept) and raises."""
        result = w.result
        source = result.source
        try:
            with self.transaction():
                if w.body is not None and result.content_hash is not None:
                    first_time = False
                    if not (
                        result.outcome is Outcome.UNCHANGED and w.raw_base == result.content_hash
                    ):
                        first_time = self._archive.put(
                            source, w.body, result.content_hash, result.fetched_at, w.raw_base
                        )
                    store_quarantine(
                        self._con,
                        source,
                        result.content_hash,
                        w.quarantine,
                        first_time,
                        self._pending,
                    )
                order = w.changes.order.digest if w.changes is not None else None
                result.fetch_id = log_fetch(self._con, result, w.meta, order, self._pending)
                if w.kind is not None and self.source_kind(source) is None:
                    self._rows("INSERT INTO source_kinds VALUES (?, ?)", [source, w.kind])
                    self._kinds[source] = w.kind
                if w.changes is not None:
                    apply_changes(self._con, result, w.changes, self._pending)
        except Exception as exc:
            if isinstance(exc, ModelwatchError) or self.in_transaction:
                raise  # inside a larger transaction: the caller's whole unit fails
            error = f"could not apply the snapshot: {exc.__class__.__name__}: {exc}"
            error = " ".join(error.split())
            failed = IngestResult(
                source=source, fetched_at=result.fetched_at, outcome=Outcome.FAILED, error=error
            )
            try:
                self.record_attempt(failed, w.meta, body=w.body)
            except Exception as again:  # the disk is still full: say so, in one line
                raise StoreError(
                    f"{error}; recording the failed attempt failed too: "
                    f"{again.__class__.__name__}: {' '.join(str(again).split())}"
                ) from exc
            raise StoreError(error) from exc
        state = self._states.get(source)
        if state is not None:
            state.newest = result.fetched_at
            if result.outcome in ACCEPTED:
                state.last_accepted = result.content_hash
            if w.changes is not None:
                state.current = w.changes.current
                state.order_hash = w.changes.order.digest
                if state.listed is not None:
                    state.listed.update(record["model_id"] for record, _ in w.changes.fresh)
        return result

    def record_attempt(
        self, result: IngestResult, meta: FetchMeta, *, body: bytes | None = None
    ) -> IngestResult:
        """Log an attempt that applies nothing (304, upstream failure), keeping any body."""
        if body is not None:
            result.content_hash = content_hash(body)
        with self.transaction():
            if body is not None and result.content_hash is not None:
                self._archive.put(result.source, body, result.content_hash, result.fetched_at, None)
            result.fetch_id = log_fetch(self._con, result, meta, None, self._pending)
        self._states.pop(result.source, None)
        return result


# A model's versions side by side: its description and `extra` repeat from one version to
# the next, so zstd and DuckDB's dictionaries see the repeats (OpenRouter: -12%)
COMPACT_ORDER = {"model_versions_stored": " ORDER BY source, model_id, valid_from"}
# what compact rewrites on the way: a closed version's digest is dropped (older stores)
COMPACT_SELECT = {
    "model_versions_stored": "* REPLACE (CASE WHEN valid_to IS NULL THEN row_hash END AS row_hash)"
}


def _copy_archive(
    con: duckdb.DuckDBPyConnection, progress: Callable[[int, int], None] | None
) -> None:
    """`compact`'s copy of the raw archive (`original` attached): the same rows, each
    body's data re-encoded at `archive.COMPACT_LEVEL` against the same base."""
    names = ", ".join(name for name, _ in RAW_COLUMNS)
    rows = con.execute(
        f"SELECT {names} FROM original.raw_payloads ORDER BY source, first_seen, content_hash"
    ).fetchall()
    con.execute("DELETE FROM raw_payloads")
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(rows))

    if rows:
        insert_columns(con, "raw_payloads", RAW_COLUMNS, recompressed(rows, advance=advance))


def compact(
    path: str | Path,
    *,
    lock_timeout: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
    recompress: bool = True,
) -> tuple[int, int]:
    """Rewrite the store at `path` into a fresh file made with this modelwatch's schema
    and storage settings (block size, each column's compression), table by table: free
    blocks are returned and a file made by an older modelwatch is brought up to date.
    The copy is checked table by table, then atomically replaces the original; a failure
    leaves the original as it was. Returns the sizes before and after, in bytes;
    `progress(done, total)` follows the raw bodies as they are re-encoded (the long part:
    30-60 ms a body)."""
    source = Path(path)
    if not source.exists():
        raise BadInput(f"database {str(source)!r} does not exist")
    with Store.open(source, lock_timeout=lock_timeout) as store:  # the only writer meanwhile
        store._rows("CHECKPOINT")  # the WAL is folded in: nothing is left outside the file
    before = source.stat().st_size
    target = source.with_name(source.name + ".compact")
    target.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(target), config=STORAGE_CONFIG)
        try:
            ensure_schema(con, str(target), read_only=False)
            ours = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            quoted = str(source).replace("'", "''")
            # attached (read-only) until the copy has replaced it: no other process can
            # write to the original meanwhile, so nothing committed there is lost
            con.execute(f"ATTACH '{quoted}' AS original (READ_ONLY)")
            tables = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'original'"
                ).fetchall()
            ]
            counts = {
                t: con.execute(f'SELECT count(*) FROM original."{t}"').fetchall()[0][0]
                for t in tables
            }
            sequence = con.execute(
                "SELECT coalesce(max(fetch_id), 0) FROM original.fetch_log"
            ).fetchall()[0][0]
            con.execute("BEGIN")
            for table in tables:
                if table == "raw_payloads" and recompress:  # bodies re-encoded at level 19
                    _copy_archive(con, progress)
                elif table in ours:  # this schema's table, rows matched by column name
                    con.execute(f'DELETE FROM "{table}"')
                    con.execute(
                        f'INSERT INTO "{table}" BY NAME SELECT {COMPACT_SELECT.get(table, "*")} '
                        f'FROM original."{table}"' + COMPACT_ORDER.get(table, "")
                    )
                else:  # a table of the analyst's own: kept as it is
                    con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM original."{table}"')
            con.execute("COMMIT")
            # the copied sequence restarts: move it past every fetch id already used
            while con.execute("SELECT nextval('fetch_id_seq')").fetchall()[0][0] <= sequence:
                pass
            copied = {
                t: con.execute(f'SELECT count(*) FROM main."{t}"').fetchall()[0][0] for t in tables
            }
            if copied != counts:
                raise StoreError(f"compacting {str(source)!r} copied {copied}, not {counts}")
            con.execute("CHECKPOINT")  # the copy is whole in its file: no WAL is left
            with open(target, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(target, source)  # the original is still attached, hence locked
        finally:
            con.close()
    except duckdb.Error as exc:
        raise StoreError(f"could not compact {str(source)!r}: {exc}") from exc
    finally:
        target.unlink(missing_ok=True)
        Path(f"{target}.wal").unlink(missing_ok=True)
    return before, source.stat().st_size


# After a long run (`replay`, `backfill`) a file keeps the blocks its checkpoints freed and
# the partly filled ones they left (OpenRouter's 400 snapshots: 58 of 251 blocks free, 3.9
# MiB where a rewrite takes 2.4; LiteLLM's: 37 of 120, 1.9 MiB for 1.3): a compaction
# without re-encoding the archive returns them in ~0.5 s. Small stores (the bundled
# history's 33 payloads leave none free) and tidy ones are left as they are.
RETURN_FREE_SHARE = 0.2  # of the file's blocks
RETURN_FREE_MIN = 1 << 18  # bytes free, at least (16 blocks)


def free_space(path: str | Path) -> tuple[int, int]:
    """(bytes in free blocks, bytes in all blocks) of the store at `path`."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StoreError(f"could not read {str(path)!r}: {exc}") from exc
    try:
        size, free, total = con.execute(
            "SELECT block_size, free_blocks, total_blocks FROM pragma_database_size()"
        ).fetchall()[0]
    finally:
        con.close()
    return size * free, size * total


def return_free_space(path: str | Path, *, lock_timeout: float = 0.0) -> tuple[int, int] | None:
    """After a long run: `compact` (the archive as it is) when at least `RETURN_FREE_SHARE`
    of the file, and `RETURN_FREE_MIN` bytes, are free blocks. The sizes before and
    after, or None when it was left alone."""
    if str(path) == ":memory:" or not Path(path).exists():
        return None
    free, total = free_space(path)
    if free < RETURN_FREE_MIN or free < RETURN_FREE_SHARE * total:
        return None
    return compact(path, lock_timeout=lock_timeout, recompress=False)
