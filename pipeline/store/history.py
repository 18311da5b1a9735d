"""The history writer: one fetch's log row, quarantine and type-2 changes (SPEC 3).

`SnapshotWrite` is what the ingest stage decided about one body; `write()` applies it
with plain INSERTs and one UPDATE on the caller's connection, inside the caller's
transaction, so a failure anywhere leaves the history as it was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from pipeline.outcome import IngestResult
from pipeline.store.schema import VERSION_COLUMNS
from schemas.record import frame_from_rows


def order_hash(source: str, ids: list[str], positions: list[int]) -> str:
    canon = json.dumps([source, ids, positions], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()


@dataclass
class VersionChanges:
    """How a new snapshot changes the type-2 history of its source."""

    closing: list[str]  # ids whose open version ends now (changed or removed)
    fresh: list[tuple[dict[str, Any], str]]  # (record, row_hash) of versions that open now
    ids: list[str]  # the snapshot's ids in default order
    positions: list[int]
    order_hash: str
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


def log_fetch(con: duckdb.DuckDBPyConnection, result: IngestResult, meta: FetchMeta) -> int:
    row = con.execute(
        """INSERT INTO fetch_log (source, url, fetched_at, http_status, etag, max_age,
               content_hash, outcome, error, models, added, removed, returned, changed,
               quarantined, unknown_values, duration_ms, catalog_hash)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING fetch_id""",
        [
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
        ],
    ).fetchall()
    return int(row[0][0])


def store_quarantine(
    con: duckdb.DuckDBPyConnection, source: str, digest: str, rows: list[Any]
) -> None:
    """Invalid rows with their reasons, once per distinct body."""
    if (
        not rows
        or con.execute(
            "SELECT 1 FROM quarantine WHERE content_hash = ? LIMIT 1", [digest]
        ).fetchall()
    ):
        return
    con.executemany(
        "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
        [[digest, source, q.position, q.model_id, q.reason, q.raw] for q in rows],
    )


def apply_changes(
    con: duckdb.DuckDBPyConnection, result: IngestResult, changes: VersionChanges
) -> None:
    """Close the versions that end, open the fresh ones, record the snapshot and its order."""
    source, at = result.source, result.fetched_at
    if changes.closing:
        con.execute(
            "UPDATE model_versions SET valid_to = ? WHERE source = ? AND valid_to IS NULL "
            "AND list_contains(?, model_id)",
            [at, source, changes.closing],
        )
    if changes.fresh:
        new_rows = frame_from_rows([r for r, _ in changes.fresh]).with_columns(
            pl.Series("row_hash", [h for _, h in changes.fresh], dtype=pl.String)
        )
        con.register("_new_rows", new_rows)
        try:
            cols = ", ".join(VERSION_COLUMNS)
            con.execute(
                f"INSERT INTO model_versions ({cols}, valid_from, valid_to, row_hash, fetch_id)"
                f" SELECT {cols}, ?, NULL, row_hash, ? FROM _new_rows",
                [at, result.fetch_id],
            )
        finally:
            con.unregister("_new_rows")
    if changes.order_is_new:  # most changes keep the order
        dense = changes.positions == list(range(len(changes.ids)))  # no quarantined gaps
        con.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [changes.order_hash, source, changes.ids, None if dense else changes.positions],
        )
    con.execute(
        "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
        [result.fetch_id, source, at, result.content_hash, changes.order_hash, len(changes.ids)],
    )
