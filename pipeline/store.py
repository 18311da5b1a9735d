"""The DuckDB store: fetch log, raw archive, type-2 model history, quarantine (SPEC 3).

Tables (all times are naive UTC):

    fetch_log      one row per fetch attempt, whatever its outcome
    raw_payloads   every distinct body once, zstd-compressed against the previous body
                   of the same source (a delta chain cut every `KEYFRAME_EVERY` payloads)
    model_versions type-2 history: one row per (model, values) with valid_from/valid_to
    orders         the default order of a catalog, stored once per distinct order
    snapshots      one row per applied snapshot: when, and which order it had
    quarantine     invalid rows, with reasons, once per distinct body

A snapshot is applied in one transaction: a failure leaves the history as it was, and
the attempt (with its raw body) is then recorded as `failed` in a second transaction.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import zstandard as zstd

from pipeline.errors import BadInput, ModelwatchError, PayloadRejected, StoreError, StoreLocked
from pipeline.record import FIELDS, frame_from_rows
from pipeline.sql import VIEWS

SCHEMA_VERSION = 1
KEYFRAME_EVERY = 128
ZSTD_LEVEL = 6  # deltas: ~2 ms for a 500 KB body, ~400 bytes each
KEYFRAME_LEVEL = 19  # one body in KEYFRAME_EVERY: worth the time
OUTCOMES = ("new", "unchanged", "not_modified", "rejected", "failed", "suspect")
ACCEPTED = ("new", "unchanged")
DEFAULT_DB = Path("data/catalog.duckdb")

_VERSION_COLS = [f for f in FIELDS if f.name != "position"]

DDL = f"""
CREATE SEQUENCE IF NOT EXISTS fetch_id_seq START 1;
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS fetch_log (
    fetch_id BIGINT PRIMARY KEY DEFAULT nextval('fetch_id_seq'),
    source VARCHAR NOT NULL,
    url VARCHAR,
    fetched_at TIMESTAMP NOT NULL,
    http_status INTEGER,
    etag VARCHAR,
    max_age INTEGER,
    content_hash VARCHAR,
    outcome VARCHAR NOT NULL CHECK (outcome IN {OUTCOMES!r}),
    error VARCHAR,
    models INTEGER,
    added INTEGER,
    removed INTEGER,
    returned INTEGER,
    changed INTEGER,
    quarantined INTEGER,
    unknown_values JSON,
    duration_ms DOUBLE
);
CREATE TABLE IF NOT EXISTS raw_payloads (
    content_hash VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    size BIGINT NOT NULL,
    codec VARCHAR NOT NULL,
    base_hash VARCHAR,
    depth INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    {", ".join(f"{f.name} {f.sql}" for f in _VERSION_COLS)},
    valid_from TIMESTAMP NOT NULL,
    valid_to TIMESTAMP,
    row_hash VARCHAR NOT NULL,
    fetch_id BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_hash VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    model_ids VARCHAR[] NOT NULL,
    positions INTEGER[]  -- NULL when they are 0, 1, 2, ... (no quarantined gaps)
);
CREATE TABLE IF NOT EXISTS snapshots (
    fetch_id BIGINT PRIMARY KEY,
    source VARCHAR NOT NULL,
    observed_at TIMESTAMP NOT NULL,
    content_hash VARCHAR NOT NULL,
    order_hash VARCHAR NOT NULL,
    models INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    name VARCHAR PRIMARY KEY,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    models VARCHAR[],
    grp VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    content_hash VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    model_id VARCHAR,
    reason VARCHAR NOT NULL,
    raw JSON
);
"""


DDL_HASH = hashlib.sha256((DDL + VIEWS).encode()).hexdigest()[:16]


MAX_WINDOW = 2**27  # 128 MiB: deltas of bodies up to ~64 MiB each


def _delta_compressor(dictionary: zstd.ZstdCompressionDict, span: int) -> zstd.ZstdCompressor:
    """A compressor that can reach back over the whole previous body.

    At level 6 zstd's window and match tables cover ~1 MiB; a 5 MB catalog then finds few
    of its matches in the dictionary (634 KB deltas instead of 6 KB). Larger spans get a
    window over both bodies and tables sized to index them.
    """
    if span <= 1 << 20:
        return zstd.ZstdCompressor(level=ZSTD_LEVEL, dict_data=dictionary)
    window = min(27, max(21, span.bit_length()))
    params = zstd.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, window_log=window, hash_log=min(22, window - 1), chain_log=min(23, window)
    )
    return zstd.ZstdCompressor(dict_data=dictionary, compression_params=params)


@dataclass
class IngestResult:
    """What one fetch did to the store; also the summary the CLI and flows report."""

    source: str
    fetched_at: datetime
    outcome: str
    content_hash: str | None = None
    fetch_id: int | None = None
    models: int = 0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    quarantined: int = 0
    unknown_values: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fetched_at"] = self.fetched_at.isoformat()
        return d


@dataclass(frozen=True)
class LastFetch:
    fetched_at: datetime
    etag: str | None
    max_age: int | None
    outcome: str


@dataclass
class _SourceState:
    """What ingest needs to know about a source, read once per connection.

    DuckDB lets one process write a file at a time, so while this Store is open nobody
    else can change it; the state is refreshed from the tables after a failed write.
    """

    last_accepted: str | None  # content hash of the newest new/unchanged body
    newest: datetime | None  # newest fetch time of any outcome
    current: dict[str, str]  # open versions: model_id -> row_hash
    order_hash: str | None  # order of the newest applied snapshot
    items: dict[str, Any] = field(default_factory=dict)  # the last body's Normalised.cache


def content_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _order_hash(source: str, ids: list[str], positions: list[int]) -> str:
    canon = json.dumps([source, ids, positions], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()


class Store:
    """One DuckDB file (or `:memory:`): `with Store.open(path) as store: ...`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, *, read_only: bool = False):
        self.con = con
        self.path = path
        self.read_only = read_only
        self._raw_cache: dict[str, bytes] = {}  # content_hash -> body, the last few bases
        self._states: dict[str, _SourceState] = {}
        self._depths: dict[str, int] = {}  # delta-chain depth of bodies stored by this Store
        self._ensure_schema()

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | Path | None = None, *, lock_timeout: float = 10.0, read_only: bool = False
    ) -> Store:
        """Open (creating if needed); wait up to `lock_timeout` s for another writer.

        `read_only` is for queries: several readers may share the file, never with a writer.
        """
        target = str(path if path is not None else DEFAULT_DB)
        if target != ":memory:":
            parent = Path(target).parent
            if not parent.exists():
                raise BadInput(f"database folder {str(parent)!r} does not exist")
            if read_only and not Path(target).exists():
                raise BadInput(f"database {target!r} does not exist; run a snapshot or replay")
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                con = duckdb.connect(target, read_only=read_only and target != ":memory:")
                break
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower():
                    raise StoreError(
                        f"cannot open database {target!r}: {text.splitlines()[0]}"
                    ) from None
                if time.monotonic() >= deadline:
                    holder = (
                        text.split("(PID", 1)[-1].split(")")[0].strip() if "PID" in text else "?"
                    )
                    raise StoreLocked(
                        f"database {target!r} is in use by another process (PID {holder}); "
                        f"waited {lock_timeout:g}s"
                    ) from None
                time.sleep(0.1)
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot open database {target!r}: {str(exc).splitlines()[0]}"
                ) from None
        return cls(con, target, read_only=read_only)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _ensure_schema(self) -> None:
        """Create or refresh tables and views, unless this file already has this code's."""
        found = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchall()[0][0]
        meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall()) if found else {}
        version = meta.get("schema_version")
        if version is not None and int(version) != SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path!r} has schema version {version}, "
                f"this modelwatch expects {SCHEMA_VERSION}"
            )
        if meta.get("ddl_hash") == DDL_HASH:
            return
        if self.read_only:
            if not found:
                raise StoreError(f"database {self.path!r} holds no modelwatch history")
            return  # an older modelwatch's views: still readable
        self.con.execute("BEGIN")
        self.con.execute(DDL)
        self.con.execute(VIEWS)
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?), ('ddl_hash', ?)",
            [str(SCHEMA_VERSION), DDL_HASH],
        )
        self.con.execute("COMMIT")

    # -- small reads -----------------------------------------------------------------
    def frame(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        """A query's result as a polars frame."""
        return pl.DataFrame(self.con.sql(sql, params=params))  # Arrow stream: no pyarrow import

    def _one(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...] | None:
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def last_fetch(self, source: str, url: str | None = None) -> LastFetch | None:
        """The newest successful contact with `source` (for ETag and max-age)."""
        row = self._one(
            """SELECT fetched_at, etag, max_age, outcome FROM fetch_log
               WHERE source = ? AND (? IS NULL OR url = ?)
                 AND outcome IN ('new', 'unchanged', 'not_modified', 'suspect')
               ORDER BY fetched_at DESC, fetch_id DESC LIMIT 1""",
            [source, url, url],
        )
        return LastFetch(*row) if row else None

    def _last_accepted(self, source: str) -> tuple[str, datetime] | None:
        row = self._one(
            """SELECT content_hash, fetched_at FROM fetch_log
               WHERE source = ? AND outcome IN ('new', 'unchanged')
               ORDER BY fetched_at DESC, fetch_id DESC LIMIT 1""",
            [source],
        )
        return (row[0], row[1]) if row else None

    def _state(self, source: str) -> _SourceState:
        if source not in self._states:
            last = self._last_accepted(source)
            newest = self._one("SELECT max(fetched_at) FROM fetch_log WHERE source = ?", [source])
            self._states[source] = _SourceState(
                last_accepted=last[0] if last else None,
                newest=newest[0] if newest else None,
                current=self._current(source),
                order_hash=self._current_order(source),
            )
        return self._states[source]

    def _current(self, source: str) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT model_id, row_hash FROM model_versions WHERE source = ? AND valid_to IS NULL",
            [source],
        ).fetchall()
        return dict(rows)

    def _current_order(self, source: str) -> str | None:
        row = self._one(
            "SELECT order_hash FROM snapshots WHERE source = ? ORDER BY observed_at DESC LIMIT 1",
            [source],
        )
        return row[0] if row else None

    # -- raw archive -----------------------------------------------------------------
    def raw_payload(self, digest: str) -> bytes:
        """The exact bytes of a stored body, following its delta chain."""
        if digest in self._raw_cache:
            return self._raw_cache[digest]
        chain: list[tuple[str, str, str | None, bytes]] = []
        cursor: str | None = digest
        while cursor is not None and cursor not in self._raw_cache:
            row = self._one(
                "SELECT content_hash, codec, base_hash, data FROM raw_payloads "
                "WHERE content_hash = ?",
                [cursor],
            )
            if row is None:
                raise StoreError(f"no raw payload with hash {cursor!r}")
            chain.append(row)  # type: ignore[arg-type]
            cursor = row[2]
        body = b""
        for digest_i, codec, base, data in reversed(chain):
            if codec == "zstd":
                body = zstd.ZstdDecompressor(max_window_size=MAX_WINDOW).decompress(data)
            else:
                base_body = self._raw_cache.get(base, body) if base else body
                dictionary = zstd.ZstdCompressionDict(
                    base_body, dict_type=zstd.DICT_TYPE_RAWCONTENT
                )
                body = zstd.ZstdDecompressor(
                    dict_data=dictionary, max_window_size=MAX_WINDOW
                ).decompress(data)
            self._remember(digest_i, body)
        return body

    def _remember(self, digest: str, body: bytes) -> None:
        self._raw_cache[digest] = body
        while len(self._raw_cache) > 4:
            self._raw_cache.pop(next(iter(self._raw_cache)))

    def _store_raw(
        self, source: str, body: bytes, digest: str, at: datetime, base: str | None
    ) -> None:
        if digest in self._depths or self._one(
            "SELECT 1 FROM raw_payloads WHERE content_hash = ?", [digest]
        ):
            return
        depth = 0
        if base is not None:
            if base not in self._depths:
                row = self._one("SELECT depth FROM raw_payloads WHERE content_hash = ?", [base])
                if row is not None:
                    self._depths[base] = row[0]
            depth = self._depths[base] + 1 if base in self._depths else KEYFRAME_EVERY
            if depth >= KEYFRAME_EVERY:
                base, depth = None, 0
        if base is None:
            # level 19 is ~0.5 s per MB: worth it once per chain, not for huge bodies
            level = KEYFRAME_LEVEL if len(body) <= 1 << 20 else ZSTD_LEVEL + 6
            data = zstd.ZstdCompressor(level=level).compress(body)
            codec = "zstd"
        else:
            base_body = self.raw_payload(base)
            dictionary = zstd.ZstdCompressionDict(base_body, dict_type=zstd.DICT_TYPE_RAWCONTENT)
            data = _delta_compressor(dictionary, len(base_body) + len(body)).compress(body)
            codec = "zstd-delta"
        self.con.execute(
            "INSERT INTO raw_payloads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [digest, source, at, len(body), codec, base, depth, data],
        )
        self._remember(digest, body)
        self._depths[digest] = depth

    # -- writing ---------------------------------------------------------------------
    def _log(
        self,
        result: IngestResult,
        *,
        url: str | None,
        http_status: int | None,
        etag: str | None,
        max_age: int | None,
    ) -> int:
        row = self.con.execute(
            """INSERT INTO fetch_log (source, url, fetched_at, http_status, etag, max_age,
                   content_hash, outcome, error, models, added, removed, returned, changed,
                   quarantined, unknown_values, duration_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING fetch_id""",
            [
                result.source,
                url,
                result.fetched_at,
                http_status,
                etag,
                max_age,
                result.content_hash,
                result.outcome,
                result.error,
                result.models,
                len(result.added),
                len(result.removed),
                len(result.returned),
                len(result.changed),
                result.quarantined,
                json.dumps(result.unknown_values) if result.unknown_values else None,
                result.duration_ms,
            ],
        ).fetchall()
        return int(row[0][0])

    def record_attempt(
        self,
        *,
        source: str,
        fetched_at: datetime,
        outcome: str,
        url: str | None = None,
        http_status: int | None = None,
        etag: str | None = None,
        max_age: int | None = None,
        error: str | None = None,
        body: bytes | None = None,
    ) -> IngestResult:
        """Log an attempt that applies nothing (304, upstream failure), keeping any body."""
        digest = content_hash(body) if body is not None else None
        result = IngestResult(
            source=source, fetched_at=fetched_at, outcome=outcome, content_hash=digest, error=error
        )
        with self.transaction():
            if body is not None and digest is not None:
                self._store_raw(source, body, digest, fetched_at, None)
            result.fetch_id = self._log(
                result, url=url, http_status=http_status, etag=etag, max_age=max_age
            )
        self._states.pop(source, None)
        return result

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            self._depths.clear()  # may name bodies whose insert was just rolled back
            raise
        else:
            self.con.execute("COMMIT")

    def ingest(
        self,
        body: bytes,
        *,
        source: str,
        fetched_at: datetime,
        kind: str | None = None,
        url: str | None = None,
        http_status: int = 200,
        etag: str | None = None,
        max_age: int | None = None,
        accept_mass_removal: bool = False,
    ) -> IngestResult:
        """Store one fetched body: archive it, validate it, and apply it to the history.

        Outcomes: `new` (the history changed), `unchanged`, `rejected` (not a catalog),
        `suspect` (empty, or removes more than half the models: held, not applied), and
        `duplicate` (this very body at this very time is already stored: nothing written).
        """
        from pipeline.normalise import normalise_items
        from pipeline.sources import get_source

        spec = get_source(kind or source)  # a source is named after its adapter by default
        started = time.perf_counter()
        state = self._state(source)
        last = state.last_accepted
        # the common poll: the very bytes in force; comparing them beats hashing them
        same = last is not None and self._raw_cache.get(last) == body
        digest = last if same and last is not None else content_hash(body)
        result = IngestResult(
            source=source, fetched_at=fetched_at, outcome="new", content_hash=digest
        )
        log_args: dict[str, Any] = {
            "url": url, "http_status": http_status, "etag": etag, "max_age": max_age
        }

        # only a fetch no newer than the newest stored can be a repeat (a replay re-run)
        if (state.newest is None or fetched_at <= state.newest) and self._one(
            "SELECT 1 FROM fetch_log WHERE source = ? AND fetched_at = ? AND content_hash = ?",
            [source, fetched_at, digest],
        ):
            result.outcome = "duplicate"
            return result
        if state.newest is not None and fetched_at < state.newest:
            raise BadInput(
                f"{source} fetch at {fetched_at.isoformat()} is older than the newest one stored "
                f"({state.newest.isoformat()}); history is written oldest first"
            )
        base = state.last_accepted

        def finish(outcome: str) -> IngestResult:
            result.outcome = outcome
            result.duration_ms = (time.perf_counter() - started) * 1000
            return result

        def commit(
            outcome: str, *, raw_base: str | None = base, quarantine: Any = (), apply: Any = None
        ) -> IngestResult:
            try:
                with self.transaction():
                    if outcome != "unchanged" or raw_base != digest:
                        self._store_raw(source, body, digest, fetched_at, raw_base)
                    self._store_quarantine(source, digest, quarantine)
                    result.fetch_id = self._log(finish(outcome), **log_args)
                    if apply is not None:
                        apply()
            except Exception as exc:
                self._states.pop(source, None)
                if isinstance(exc, ModelwatchError):
                    raise
                error = f"could not apply the snapshot: {exc.__class__.__name__}: {exc}"
                self.record_attempt(
                    source=source,
                    fetched_at=fetched_at,
                    outcome="failed",
                    error=error,
                    body=body,
                    **log_args,
                )
                raise StoreError(error) from exc
            state.newest = fetched_at
            if outcome in ACCEPTED:
                state.last_accepted = digest
            return result

        # 1. the same bytes as the catalog in force: one small log row, nothing else
        if state.last_accepted == digest:
            result.models = len(state.current)
            return commit("unchanged", raw_base=digest)

        # 2. not a catalog: keep the bytes, say why
        try:
            items = spec.parse(body)
        except PayloadRejected as exc:
            result.error = str(exc)
            return commit("rejected", raw_base=None)

        norm = normalise_items(
            items, source=source, price_multiplier=spec.price_multiplier, cache=state.items
        )
        rows = norm.rows
        result.models = len(rows)
        result.quarantined = len(norm.quarantine)
        result.unknown_values = norm.unknown_values

        current = state.current
        ids = norm.ids
        positions = [r["position"] for r in rows]
        new_hashes = dict(zip(ids, norm.hashes, strict=True))
        result.removed = sorted(set(current) - set(new_hashes))
        result.changed = sorted(
            m for m, h in new_hashes.items() if m in current and current[m] != h
        )
        appeared = [m for m in ids if m not in current]
        if appeared:
            seen_before = {
                r[0]
                for r in self.con.execute(
                    "SELECT DISTINCT model_id FROM model_versions WHERE source = ? "
                    "AND list_contains(?, model_id)",
                    [source, appeared],
                ).fetchall()
            }
            result.returned = sorted(m for m in appeared if m in seen_before)
            result.added = sorted(m for m in appeared if m not in seen_before)
        order_hash = _order_hash(source, ids, positions)

        # 3. held: an outage must not erase the catalog
        mass_removal = len(result.removed) * 2 > len(current)
        if (not rows or mass_removal) and not accept_mass_removal:
            result.error = (
                "empty catalog"
                if not rows
                else f"would remove {len(result.removed)} of {len(current)} models"
            ) + " (held as suspect; pass --accept-mass-removal to apply it)"
            commit("suspect", quarantine=norm.quarantine)
            state.items = norm.cache
            return result

        touched = set(result.changed) | set(result.added) | set(result.returned)
        if not touched and not result.removed and order_hash == state.order_hash:
            commit("unchanged", quarantine=norm.quarantine)
            state.items = norm.cache
            return result

        def apply() -> None:
            fresh = [
                (r, h) for r, h in zip(rows, norm.hashes, strict=True) if r["model_id"] in touched
            ]
            self._apply(source, fetched_at, result, fresh, ids, positions, order_hash)

        commit("new", quarantine=norm.quarantine, apply=apply)
        state.current = new_hashes
        state.order_hash = order_hash
        state.items = norm.cache
        return result

    def _store_quarantine(self, source: str, digest: str, rows: list[Any]) -> None:
        if not rows or self._one(
            "SELECT 1 FROM quarantine WHERE content_hash = ? LIMIT 1", [digest]
        ):
            return
        self.con.executemany(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
            [[digest, source, q.position, q.model_id, q.reason, q.raw] for q in rows],
        )

    def _apply(
        self,
        source: str,
        at: datetime,
        result: IngestResult,
        fresh: list[tuple[dict[str, Any], str]],
        ids: list[str],
        positions: list[int],
        order_hash: str,
    ) -> None:
        closing = sorted(set(result.changed) | set(result.removed))
        if closing:
            self.con.execute(
                "UPDATE model_versions SET valid_to = ? WHERE source = ? AND valid_to IS NULL "
                "AND list_contains(?, model_id)",
                [at, source, closing],
            )
        if fresh:
            new_rows = frame_from_rows([r for r, _ in fresh]).with_columns(
                pl.Series("row_hash", [h for _, h in fresh], dtype=pl.String)
            )
            self.con.register("_new_rows", new_rows)
            try:
                cols = ", ".join(f.name for f in _VERSION_COLS)
                self.con.execute(
                    f"INSERT INTO model_versions ({cols}, valid_from, valid_to, row_hash, fetch_id)"
                    f" SELECT {cols}, ?, NULL, row_hash, ? FROM _new_rows",
                    [at, result.fetch_id],
                )
            finally:
                self.con.unregister("_new_rows")
        if order_hash != self._state(source).order_hash:  # most changes keep the order
            self._write_order(source, order_hash, ids, positions)
        self.con.execute(
            "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
            [result.fetch_id, source, at, result.content_hash, order_hash, len(ids)],
        )

    def _write_order(
        self, source: str, order_hash: str, ids: list[str], positions: list[int]
    ) -> None:
        dense = positions == list(range(len(ids)))  # the usual case: no quarantined gaps
        self.con.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [order_hash, source, ids, None if dense else positions],
        )

    # -- reading ---------------------------------------------------------------------
    def catalog_as_of(self, source: str, as_of: datetime) -> pl.DataFrame:
        """The normalised catalog as last observed at or before `as_of`, in default order."""
        frame = self.frame("SELECT * FROM catalog_as_of($src, $ts)", {"src": source, "ts": as_of})
        from pipeline.record import SCHEMA

        return frame.cast(pl.Schema(SCHEMA)) if frame.height else pl.DataFrame(schema=SCHEMA)

    def sources(self) -> list[str]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT DISTINCT source FROM fetch_log ORDER BY source"
            ).fetchall()
        ]

    def summary(self) -> dict[str, Any]:
        """Counts a person checks first: how much history, how many models now."""

        def scalar(sql: str) -> Any:
            row = self._one(sql)
            return row[0] if row else None

        outcomes = dict(
            self.con.execute(
                "SELECT outcome, count(*) FROM fetch_log GROUP BY outcome ORDER BY outcome"
            ).fetchall()
        )
        return {
            "fetches": sum(outcomes.values()),
            "outcomes": outcomes,
            "snapshots": scalar("SELECT count(*) FROM snapshots"),
            "first_snapshot": scalar("SELECT min(observed_at) FROM snapshots"),
            "last_snapshot": scalar("SELECT max(observed_at) FROM snapshots"),
            "models_now": scalar("SELECT count(*) FROM model_versions WHERE valid_to IS NULL"),
            "models_ever": scalar(
                "SELECT count(*) FROM (SELECT DISTINCT source, model_id FROM model_versions)"
            ),
            "versions": scalar("SELECT count(*) FROM model_versions"),
            "raw_payloads": scalar("SELECT count(*) FROM raw_payloads"),
            "raw_bytes": scalar("SELECT coalesce(sum(size), 0) FROM raw_payloads"),
            "raw_stored_bytes": scalar(
                "SELECT coalesce(sum(octet_length(data)), 0) FROM raw_payloads"
            ),
            "quarantined_rows": scalar("SELECT count(*) FROM quarantine"),
        }

    def version(self) -> int:
        """Changes whenever anything is written: a cache key for served bodies."""
        row = self._one("SELECT coalesce(max(fetch_id), 0) FROM fetch_log")
        return int(row[0]) if row else 0
