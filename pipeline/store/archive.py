"""The raw archive: every distinct body once, so the history can be re-derived (SPEC 3).

Bodies are zstd-compressed against the previous body of the same source (a delta),
with a keyframe every `KEYFRAME_EVERY` payloads so no chain grows long.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import cache
from typing import Any

import duckdb
import zstandard as zstd

from pipeline.errors import StoreError
from pipeline.store.history import insert_columns

# A keyframe is 12-40 KB of a 0.4-0.8 MB catalog where a delta is ~0.4-1.5 KB: one per 512
# bodies (a year of daily changes) keeps the archive under git's pack. Reading one body
# from a cold store walks its chain (at most 511 deltas, ~0.3 s); replays and rebuilds read
# in order and walk nothing.
KEYFRAME_EVERY = 512
ZSTD_LEVEL = 6  # deltas as they are written: ~1 ms for a 0.4 MB body, ~1.5 KB each
# `compact` re-encodes every body at level 19 (30-60 ms a delta, on two threads): 37% smaller
# (OpenRouter's 400 bodies: 616 -> 387 KB; LiteLLM's: 239 -> 150 KB), the bodies and their
# chains as they were. (Level 12 as they are written saved a quarter but cost OpenRouter's
# replay 8%: its tables are sized for the span, not the level's own defaults.)
KEYFRAME_LEVEL = COMPACT_LEVEL = 19
MAX_WINDOW = 2**27  # 128 MiB: deltas of bodies up to ~64 MiB each


def content_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _delta_compressor(
    dictionary: zstd.ZstdCompressionDict, span: int, level: int = ZSTD_LEVEL
) -> zstd.ZstdCompressor:
    """A compressor that can reach back over the whole previous body.

    At level 6 zstd's window and match tables cover ~1 MiB; a 5 MB catalog then finds few
    of its matches in the dictionary (634 KB deltas instead of 6 KB). Larger spans get a
    window over both bodies and tables sized to index them.
    """
    if span <= 1 << 20:
        return zstd.ZstdCompressor(level=level, dict_data=dictionary)
    window = min(27, max(21, span.bit_length()))
    params = zstd.ZstdCompressionParameters.from_level(
        level, window_log=window, hash_log=min(22, window - 1), chain_log=min(23, window)
    )
    return zstd.ZstdCompressor(dict_data=dictionary, compression_params=params)


@cache
def _worker() -> ThreadPoolExecutor:
    """One thread for deltas: zstd releases the GIL, so a body is compressed while the
    same body is parsed and normalised (OpenRouter: ~2 ms of a changed poll's ~20)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelwatch-zstd")


def digest_later(body: bytes) -> Future[str]:
    """`content_hash(body)` on the worker thread (sha256 releases the GIL: 0.35 ms of a
    0.4 MB body, while the main thread parses it)."""
    return _worker().submit(content_hash, body)


def _exact(data: bytes) -> bytes:
    """zstd's output keeps the allocation of its worst case (about the input's size)
    however short it is: a copy of its own size, for anything kept (a batch's held
    bodies, compact's new data)."""
    return memoryview(data).tobytes()


def _delta(base_body: bytes, body: bytes, level: int = ZSTD_LEVEL) -> bytes:
    dictionary = zstd.ZstdCompressionDict(base_body, dict_type=zstd.DICT_TYPE_RAWCONTENT)
    return _exact(_delta_compressor(dictionary, len(base_body) + len(body), level).compress(body))


def _keyframe(body: bytes, level: int = KEYFRAME_LEVEL) -> bytes:
    # level 19 is ~0.5 s per MB: worth it once per chain, not for huge bodies
    chosen = level if len(body) <= 1 << 20 else ZSTD_LEVEL + 6
    return _exact(zstd.ZstdCompressor(level=chosen).compress(body))


def _undelta(base_body: bytes, data: bytes) -> bytes:
    dictionary = zstd.ZstdCompressionDict(base_body, dict_type=zstd.DICT_TYPE_RAWCONTENT)
    return zstd.ZstdDecompressor(dict_data=dictionary, max_window_size=MAX_WINDOW).decompress(data)


def _unpack(data: bytes) -> bytes:
    return zstd.ZstdDecompressor(max_window_size=MAX_WINDOW).decompress(data)


def _decode(codec: str, data: bytes, base_body: bytes | None) -> bytes:
    """A stored body's bytes: a keyframe by itself, a delta against its base's body."""
    if codec == "zstd":
        return _unpack(data)
    assert base_body is not None, "a delta needs its base"
    return _undelta(base_body, data)


# `raw_payloads` as `RawArchive` holds a row: (content_hash, source, first_seen, size, codec,
# base_hash, depth, data)
RAW_COLUMNS = (
    ("content_hash", "VARCHAR"),
    ("source", "VARCHAR"),
    ("first_seen", "TIMESTAMP"),
    ("size", "BIGINT"),
    ("codec", "VARCHAR"),
    ("base_hash", "VARCHAR"),
    ("depth", "INTEGER"),
    ("data", "BLOB"),
)


class RawArchive:
    """Reads and writes `raw_payloads` on one connection, remembering the last few bodies
    (the next delta's base is nearly always the body just written)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con
        self._bodies: dict[str, bytes] = {}  # content_hash -> body, the last few
        self._depths: dict[str, int] = {}  # delta-chain depth of bodies written here
        # (digest, base, delta being computed): `prepare` started it, `put` takes it
        self._prepared: tuple[bytes, str, Future[bytes]] | None = None
        # in a batch (`hold`): rows put but not yet inserted, by content hash
        self._held: dict[str, list[Any]] | None = None

    def _one(self, sql: str, params: list[object]) -> tuple[object, ...] | None:
        rows = self._con.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def recent(self, digest: str) -> bytes | None:
        """The body of `digest` if it is one of the last few read or written."""
        return self._bodies.get(digest)

    def get(self, digest: str) -> bytes:
        """The exact bytes of a stored body, following its delta chain."""
        if digest in self._bodies:
            return self._bodies[digest]
        chain: list[tuple[str, str, str | None, bytes]] = []
        cursor: str | None = digest
        while cursor is not None and cursor not in self._bodies:
            held = self._held.get(cursor) if self._held is not None else None
            row: tuple[Any, ...] | None = (
                (held[0], held[4], held[5], held[7])
                if held is not None
                else self._one(
                    "SELECT content_hash, codec, base_hash, data FROM raw_payloads "
                    "WHERE content_hash = ?",
                    [cursor],
                )
            )
            if row is None:
                raise StoreError(f"no raw payload with hash {cursor!r}")
            chain.append(row)  # type: ignore[arg-type]
            cursor = row[2]  # type: ignore[assignment]
        body = b""
        for digest_i, codec, base, data in reversed(chain):
            body = _decode(codec, data, self._bodies.get(base, body) if base else body)
            self._remember(digest_i, body)
        return body

    def _remember(self, digest: str, body: bytes) -> None:
        self._bodies[digest] = body
        while len(self._bodies) > 4:
            self._bodies.pop(next(iter(self._bodies)))

    def put(self, source: str, body: bytes, digest: str, at: datetime, base: str | None) -> bool:
        """Archive `body` (a delta against `base` when given), unless it is stored already;
        whether it was stored now. Runs inside the caller's transaction; `forget()` after
        a rollback."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None and (prepared[0] is not body or prepared[1] != base):
            prepared = None
        # with a delta ready, the INSERT itself says whether the body was stored already
        if digest in self._depths or (
            prepared is None
            and self._one("SELECT 1 FROM raw_payloads WHERE content_hash = ?", [digest])
        ):
            return False
        depth = 0
        if base is not None:
            if base not in self._depths:
                row = self._one("SELECT depth FROM raw_payloads WHERE content_hash = ?", [base])
                if row is not None:
                    self._depths[base] = int(row[0])  # type: ignore[call-overload]
            depth = self._depths[base] + 1 if base in self._depths else KEYFRAME_EVERY
            if depth >= KEYFRAME_EVERY:
                base, depth = None, 0
        if base is None:
            data = _keyframe(body)
            codec = "zstd"
        else:
            data = prepared[2].result() if prepared is not None else _delta(self.get(base), body)
            codec = "zstd-delta"
        stored = [digest, source, at, len(body), codec, base, depth, data]
        if self._held is not None:  # the batch's one INSERT leaves out what is stored
            self._held[digest] = stored
        elif not self._con.execute(
            "INSERT INTO raw_payloads SELECT ?, ?, ?, ?, ?, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM raw_payloads WHERE content_hash = ?)",
            [*stored, digest],
        ).fetchall()[0][0]:
            return False
        self._remember(digest, body)
        self._depths[digest] = depth
        return True

    def prepare(self, body: bytes, base: str | None) -> None:
        """Start the delta `put` will most likely need (`body` against `base`, the body
        just written) on the worker thread. Only for a base in memory whose chain goes
        on; if `put` is given another body or base, the work is dropped."""
        if (
            base is None
            or base not in self._bodies
            or self._depths.get(base, KEYFRAME_EVERY) + 1 >= KEYFRAME_EVERY
        ):
            return
        self._prepared = (body, base, _worker().submit(_delta, self._bodies[base], body))

    def hold(self) -> None:
        """From now until `write_held` (a batch), bodies put wait for one INSERT."""
        self._held = {}

    def release(self) -> None:
        """The batch is over: bodies are inserted as they are put again."""
        self._held = None

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def write_held(self) -> None:
        """Insert the bodies put since `hold` (or the last call), leaving out any stored
        already."""
        held = self._held
        if held:
            self._held = {}
            insert_columns(
                self._con, "raw_payloads", RAW_COLUMNS, list(held.values()), "content_hash"
            )

    def forget(self) -> None:
        """After a rollback: what this archive remembers may name bodies never committed."""
        self._depths.clear()
        self._prepared = None
        self._held = None


def recompressed(
    rows: list[tuple[Any, ...]],
    level: int = COMPACT_LEVEL,
    advance: Callable[[], None] | None = None,
) -> list[tuple[Any, ...]]:
    """`raw_payloads` rows (`RAW_COLUMNS`) with every body's data re-encoded at `level`
    against the same base, for `compact`. Each body is read back and checked against its
    digest before its new data is used, and the new data is checked to give the same
    body; whichever encoding is smaller is kept. Chains are walked from their keyframes,
    holding only the bodies a later delta still needs; `advance` is called as each body
    is done."""
    by_hash = {row[0]: row for row in rows}
    codec_of = {row[0]: row[4] for row in rows}
    base_of = {row[0]: row[5] if row[4] == "zstd-delta" else None for row in rows}
    children: dict[str | None, list[str]] = {}
    for digest, base in base_of.items():
        children.setdefault(base, []).append(digest)
    new_data: dict[str, bytes] = {}
    pending: list[tuple[str, bytes, Future[bytes]]] = []
    bodies: dict[str, bytes] = {}  # the bodies a pending delta or a child still needs

    def read(digest: str, data: bytes) -> bytes:
        base = base_of[digest]
        return _decode(codec_of[digest], data, bodies[base] if base else None)

    def settle(limit: int) -> None:  # take finished work until at most `limit` is pending
        while len(pending) > limit:
            digest, body, future = pending.pop(0)
            data, old = future.result(), by_hash[digest][7]
            new_data[digest] = data if len(data) < len(old) and read(digest, data) == body else old
            if advance is not None:
                advance()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelwatch-compact") as pool:
        stack = list(children.get(None, []))
        while stack:
            digest = stack.pop()
            try:
                body = read(digest, by_hash[digest][7])
            except zstd.ZstdError as exc:
                raise StoreError(f"raw payload {digest!r} cannot be read: {exc}") from None
            if content_hash(body) != digest:
                raise StoreError(f"raw payload {digest!r} does not read back to its digest")
            bodies[digest] = body
            base = base_of[digest]
            work = (
                pool.submit(_keyframe, body, level)
                if base is None
                else pool.submit(_delta, bodies[base], body, level)
            )
            pending.append((digest, body, work))
            settle(4)
            # the oldest child last in, so first out: a held body's branch (written
            # before the next accepted one) ends before the main line goes on, and
            # their base is let go then
            stack.extend(reversed(children.get(digest, [])))
            needed = {base_of[d] for d in stack} | {base_of[d] for d, _, _ in pending}
            for done in [h for h in bodies if h not in needed]:
                del bodies[done]
        settle(0)
    if len(new_data) != len(rows):
        lost = sorted(set(by_hash) - set(new_data))[:3]
        raise StoreError(f"raw payloads {lost} are not reachable from any keyframe")
    return [(*row[:7], new_data[row[0]]) for row in rows]
