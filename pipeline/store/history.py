"""The history writer: one fetch's log row, quarantine and type-2 changes (SPEC 3).

`SnapshotWrite` is what the ingest stage decided about one body; `write()` applies it
with plain INSERTs and one UPDATE on the caller's connection, inside the caller's
transaction, so a failure anywhere leaves the history as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson

from pipeline.outcome import IngestResult
from pipeline.store.schema import STORED_VERSION_COLUMNS
from schemas.record import LIST_COLUMNS

_ORDER_COLUMNS = (
    ("order_hash", "VARCHAR"),
    ("source", "VARCHAR"),
    ("model_ids", "VARCHAR"),
    ("positions", "VARCHAR"),
)


def compact_json(values: Any, *, ensure_ascii: bool = False) -> str:
    """`json.dumps(values, separators=(",", ":"), ensure_ascii=...)` of strings, integers,
    None, booleans and lists or tuples of them (ids, orders, digests), character for
    character, written by orjson (LiteLLM's 2,900 ids: 5-10x faster). orjson escapes
    the same characters; it refuses a lone surrogate or an integer past 64 bits, and
    writes non-ASCII (and DEL, which `ensure_ascii` escapes) as it is: json.dumps then.
    Not for floats (their text differs)."""
    try:
        text = orjson.dumps(values)
    except orjson.JSONEncodeError:
        text = None
    if text is None or (ensure_ascii and (not text.isascii() or b"\x7f" in text)):
        return json.dumps(values, ensure_ascii=ensure_ascii, separators=(",", ":"))
    return text.decode()


@dataclass(frozen=True)
class Order:
    """A catalog's default order as it is stored: its ids and positions as JSON text,
    each made once (LiteLLM: 1,700 ids a snapshot), and their digest."""

    ids: str  # JSON list of the ids, in order
    positions: str | None  # JSON list of the positions; None when 0, 1, 2, ... (no gaps)
    digest: str

    @classmethod
    def of(cls, source: str, ids: list[str], positions: list[int]) -> Order:
        ids_text, positions_text = compact_json(ids), compact_json(positions)
        # the text of json.dumps([source, ids, positions]) with these separators
        canon = f"[{compact_json(source)},{ids_text},{positions_text}]"
        digest = hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()
        dense = positions == list(range(len(ids)))
        return cls(ids_text, None if dense else positions_text, digest)


@dataclass
class VersionChanges:
    """How a new snapshot changes the type-2 history of its source."""

    closing: list[str]  # ids whose open version ends now (changed or removed)
    fresh: list[tuple[dict[str, Any], str]]  # (record, row_hash) of versions that open now
    ids: list[str]  # the snapshot's ids in default order
    order: Order
    order_is_new: bool
    current: dict[str, str]  # model_id -> row_hash once applied


@dataclass(frozen=True)
class FetchMeta:
    """What the HTTP exchange said, kept in the fetch log."""

    url: str | None = None
    http_status: int | None = None
    etag: str | None = None
    max_age: int | None = None


@dataclass
class SnapshotWrite:
    """Everything to write for one fetch; `Store.write` applies it atomically."""

    result: IngestResult
    meta: FetchMeta
    body: bytes | None = None  # archived unless stored already
    raw_base: str | None = None  # delta base in the raw archive (None: a keyframe)
    quarantine: list[Any] = field(default_factory=list)  # normalise.QuarantinedRow
    changes: VersionChanges | None = None
    kind: str | None = None  # the adapter, remembered for the source on its first write


_LOG_COLUMNS = (
    ("fetch_id", "BIGINT"),
    ("source", "VARCHAR"),
    ("url", "VARCHAR"),
    ("fetched_at", "TIMESTAMP"),
    ("http_status", "INTEGER"),
    ("etag", "VARCHAR"),
    ("max_age", "INTEGER"),
    ("content_hash", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("error", "VARCHAR"),
    ("models", "INTEGER"),
    ("added", "INTEGER"),
    ("removed", "INTEGER"),
    ("returned", "INTEGER"),
    ("changed", "INTEGER"),
    ("quarantined", "INTEGER"),
    ("unknown_values", "JSON"),
    ("duration_ms", "DOUBLE"),
    ("catalog_hash", "VARCHAR"),
    ("order_hash", "VARCHAR"),
)


def _log_row(result: IngestResult, meta: FetchMeta, order_hash: str | None) -> list[Any]:
    """A fetch's log row without its id, in `_LOG_COLUMNS` order."""
    return [
        result.source,
        meta.url,
        result.fetched_at,
        meta.http_status,
        meta.etag,
        meta.max_age,
        result.content_hash,
        str(result.outcome),
        result.error,
        result.models,
        len(result.added),
        len(result.removed),
        len(result.returned),
        len(result.changed),
        result.quarantined,
        json.dumps(result.unknown_values) if result.unknown_values else None,
        result.duration_ms,
        result.catalog_hash,
        order_hash,
    ]


def log_fetch(
    con: duckdb.DuckDBPyConnection,
    result: IngestResult,
    meta: FetchMeta,
    order_hash: str | None = None,
    pending: PendingBatch | None = None,
) -> int:
    """The fetch's log row; with `order_hash`, the fetch applied a catalog in that order
    (it is a snapshot: the `snapshots` view). In a batch (`pending`) the row waits for
    the batch's one INSERT; its id is taken now."""
    row = _log_row(result, meta, order_hash)
    if pending is not None:
        fetch_id = pending.fetch_id(con)
        pending.log.append([fetch_id, *row])
        return fetch_id
    names = ", ".join(name for name, _ in _LOG_COLUMNS[1:])
    marks = ", ".join("?" for _ in _LOG_COLUMNS[1:])
    got = con.execute(
        f"INSERT INTO fetch_log ({names}) VALUES ({marks}) RETURNING fetch_id", row
    ).fetchall()
    return int(got[0][0])


def insert_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: tuple[tuple[str, str], ...],
    rows: Sequence[Sequence[Any]],
    unless_stored: str | None = None,
) -> None:
    """`rows` into `table` in one statement, a typed list per column (0.5 ms, where an
    Arrow table took 1 ms and `executemany` 1.6 ms); with `unless_stored`, a row whose
    value in that column is in the table already is left out."""
    select = ", ".join(
        f"unnest(?::{sql.replace('JSON', 'VARCHAR')}[]) AS {name}" for name, sql in columns
    )
    names = ", ".join(name for name, _ in columns)
    where = (
        f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{unless_stored} = n.{unless_stored})"
        if unless_stored
        else ""
    )
    con.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM (SELECT {select}) n{where}",
        [list(column) for column in zip(*rows, strict=True)],
    )


_QUARANTINE_COLUMNS = (
    ("content_hash", "VARCHAR"),
    ("source", "VARCHAR"),
    ("position", "INTEGER"),
    ("model_id", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("raw", "JSON"),
)


def store_quarantine(
    con: duckdb.DuckDBPyConnection,
    source: str,
    digest: str,
    rows: list[Any],
    first_time: bool = False,
    pending: PendingBatch | None = None,
) -> None:
    """Invalid rows with their reasons, once per distinct body (a body archived just now,
    `first_time`, has none stored yet). In a batch (`pending`) they wait for its flush,
    which leaves out the bodies whose rows are stored already."""
    if not rows:
        return
    quarantined = [[digest, source, q.position, q.model_id, q.reason, q.raw] for q in rows]
    if pending is not None:
        if digest not in pending.quarantined:
            pending.quarantined[digest] = quarantined
        return
    if (
        not first_time
        and con.execute(
            "SELECT 1 FROM quarantine WHERE content_hash = ? LIMIT 1", [digest]
        ).fetchall()
    ):
        return
    insert_columns(con, "quarantine", _QUARANTINE_COLUMNS, quarantined)


# the names of every table and view that reads what a batch holds back: a query naming
# one of them has the batch's rows written first (`Store._flush`)
BATCH_READERS = (
    "fetch_log",
    "snapshot",  # snapshots, snapshot_models
    "quarantine",
    "orders",
    "raw_payloads",
    "model_versions",  # and model_versions_stored
    "model_changes",
    "price_changes",
    "as_of",  # catalog_as_of, models_as_of, model_compare_as_of
    "compare",
    "current_models",
)


class PendingBatch:
    """What a batch (`Store.batch`) holds back: its fetch-log rows, quarantined rows, new
    orders and type-2 changes (`versions`), written by one statement each when the batch
    ends, or before a query that may read them. Fetch ids are taken from the sequence
    as the fetches are logged, so they keep their order."""

    def __init__(self) -> None:
        self.versions = PendingVersions()
        self.log: list[list[Any]] = []
        self.quarantined: dict[str, list[list[Any]]] = {}  # content hash -> its rows
        self.orders: dict[str, list[Any]] = {}  # order hash -> its row
        self._ids: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.log or self.quarantined or self.orders or self.versions)

    def fetch_id(self, con: duckdb.DuckDBPyConnection) -> int:
        if not self._ids:  # a batch's worth at a time; the ones left unused are a gap
            self._ids = [
                int(r[0])
                for r in con.execute(
                    "SELECT nextval('fetch_id_seq') FROM range(16) ORDER BY 1"
                ).fetchall()
            ]
        return self._ids.pop(0)

    def flush(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.log:
            insert_columns(con, "fetch_log", _LOG_COLUMNS, self.log)
        if self.quarantined:
            rows = [row for body in self.quarantined.values() for row in body]
            insert_columns(con, "quarantine", _QUARANTINE_COLUMNS, rows, "content_hash")
        if self.orders:
            insert_columns(con, "orders", _ORDER_COLUMNS, list(self.orders.values()), "order_hash")
        self.log, self.quarantined, self.orders = [], {}, {}
        self.versions.flush(con)


class PendingVersions:
    """The type-2 changes of a batch of snapshots, applied set-wise when it ends (or
    before anything reads the versions): versions opened and closed within the batch are
    written once with both ends, the versions open before it are closed by one UPDATE."""

    # tables and views whose answer depends on model_versions

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.open: dict[tuple[str, str], int] = {}  # (source, model_id) -> index in rows
        self.closings: dict[tuple[str, str], Any] = {}  # versions stored open -> valid_to

    def __bool__(self) -> bool:
        return bool(self.rows or self.closings)

    def add(self, result: IngestResult, changes: VersionChanges) -> None:
        source, at = result.source, result.fetched_at
        for model_id in changes.closing:
            index = self.open.pop((source, model_id), None)
            if index is None:
                self.closings[(source, model_id)] = at
            else:
                self.rows[index]["valid_to"] = at
                self.rows[index]["row_hash"] = None  # a closed version needs no digest
        for record, digest in changes.fresh:
            self.open[(source, record["model_id"])] = len(self.rows)
            self.rows.append(
                {
                    **record,
                    "valid_from": at,
                    "valid_to": None,
                    "row_hash": digest,
                    "fetch_id": result.fetch_id,
                }
            )

    def flush(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.closings:
            (sources, ids), ends = zip(*self.closings, strict=True), self.closings.values()
            con.execute(
                "UPDATE model_versions_stored v SET valid_to = c.valid_to, row_hash = NULL "
                "FROM (SELECT unnest(?::VARCHAR[]) AS source, unnest(?::VARCHAR[]) AS model_id,"
                " unnest(?::TIMESTAMP[]) AS valid_to) c WHERE v.source = c.source "
                "AND v.model_id = c.model_id AND v.valid_to IS NULL",
                [list(sources), list(ids), list(ends)],
            )
        if self.rows:
            _insert_versions(con, self.rows)
        self.rows, self.open, self.closings = [], {}, {}


_LIST_TEXTS: dict[tuple[str, ...], str] = {}  # a list column's few distinct values, as JSON


def _list_json(values: list[str]) -> str:
    """The stored JSON text of a list column's value: a catalog has a few dozen distinct
    lists (OpenRouter: 45,000 in a replay, ~1.3 ms a snapshot when each was dumped)."""
    key = tuple(values)
    text = _LIST_TEXTS.get(key)
    if text is None:
        if len(_LIST_TEXTS) > 10_000:
            _LIST_TEXTS.clear()
        text = _LIST_TEXTS[key] = compact_json(values)
    return text


def _insert_versions(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    """New versions in one statement (`insert_columns`); list columns as JSON text,
    which `model_versions` reads back as lists."""
    insert_columns(
        con,
        "model_versions_stored",
        STORED_VERSION_COLUMNS,
        [
            [_list_json(r[c]) if c in LIST_COLUMNS else r[c] for c, _ in STORED_VERSION_COLUMNS]
            for r in rows
        ],
    )


def apply_changes(
    con: duckdb.DuckDBPyConnection,
    result: IngestResult,
    changes: VersionChanges,
    pending: PendingBatch | None = None,
) -> None:
    """Close the versions that end, open the fresh ones, record the snapshot's order.
    In a batch (`pending`), they are left to its flush."""
    source, at = result.source, result.fetched_at
    if pending is not None:
        pending.versions.add(result, changes)
    else:
        if changes.closing:
            con.execute(
                "UPDATE model_versions_stored SET valid_to = ?, row_hash = NULL "
                "WHERE source = ? AND valid_to IS NULL "
                "AND list_contains(?, model_id)",
                [at, source, changes.closing],
            )
        if changes.fresh:
            _insert_versions(
                con,
                [
                    {
                        **r,
                        "valid_from": at,
                        "valid_to": None,
                        "row_hash": h,
                        "fetch_id": result.fetch_id,
                    }
                    for r, h in changes.fresh
                ],
            )
    if changes.order_is_new:  # most changes keep the order
        order = changes.order
        row = [order.digest, source, order.ids, order.positions]
        if pending is not None:
            pending.orders.setdefault(order.digest, row)
        else:
            # not ON CONFLICT: its upsert path costs twice this (1.1 vs 0.55 ms)
            con.execute(
                "INSERT INTO orders SELECT ?, ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM orders WHERE order_hash = ?)",
                [*row, order.digest],
            )
