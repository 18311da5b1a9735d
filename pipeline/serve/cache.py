"""The mirror's answer cache, keyed by the database's version.

A repeated request costs a file `stat` and a dict lookup. The database is opened
read-only and only on a cache miss, so `modelwatch snapshot` can write between
requests (DuckDB allows one writing process per file, and no reader while it writes).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import BadInput, StoreLocked
from pipeline.store import Store, writer_waiting

T = TypeVar("T")
BUSY_RECHECK = 0.25  # seconds a busy store is not asked again while stale bodies exist


class Mirror:
    """Computed values (answers, token scopes) cached by database version."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        store: Store | None = None,
        source: str = "aihubmix",
        cache_size: int = 512,
        wait: float = 5.0,
    ):
        if (db is None) == (store is None):
            raise ValueError("give exactly one of db or store")
        self.path = None if db is None else Path(db)
        # the file and its WAL: any write changes one of them
        self._watched = () if db is None else (str(db), f"{db}.wal")
        self.store = store
        self.source = source
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        # the newest value computed for each key, whatever the version: served while the
        # store is busy (stale-while-revalidate), so an answer once given never goes dark
        self._last: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._cache_size = cache_size
        self.wait = wait  # seconds a query never answered waits for a busy store
        self._busy_until = 0.0  # monotonic time before which the store is taken as busy
        self._lock = threading.Lock()

    def version(self) -> tuple[Any, ...]:
        if self.store is not None:
            return (self.store.version(),)
        stats: list[tuple[int, int] | None] = []
        for path in self._watched:
            try:
                st = os.stat(path)
                stats.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stats.append(None)
        return tuple(stats)

    def cached(self, full_key: tuple[Any, ...]) -> Any:
        """The value stored under (version, *key), if any: no lock, no thread hop."""
        return self._cache.get(full_key)

    def remember(self, full_key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            for cache, key in ((self._cache, full_key), (self._last, full_key[1:])):
                cache[key] = value
                cache.move_to_end(key)
                while len(cache) > self._cache_size:
                    cache.popitem(last=False)

    def compute(
        self, key: tuple[Any, ...], compute: Callable[[Store], T], *, stale_ok: bool = True
    ) -> T:
        """The cached value for `key`, or `compute` over a briefly opened store. While the
        store is busy (a writer holds it, or waits for it) the last value computed for
        `key` is returned, when `stale_ok`; otherwise (a key never computed, or a value
        that must be current, like a token's scope) it waits a little, then `StoreLocked`."""
        full_key = (self.version(), *key)
        hit = self.cached(full_key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        if self.store is not None:
            result = compute(self.store)
        else:
            if not self.path or not self.path.exists():
                raise BadInput(f"database {str(self.path)!r} does not exist")
            stale = self._last.get(key) if stale_ok else None
            try:
                if writer_waiting(self.path):
                    raise StoreLocked("a writer is waiting for the database")
                if stale is not None and time.monotonic() < self._busy_until:
                    raise StoreLocked("the database was busy a moment ago")
                # with a body to fall back on, one try: a waiting reader only slows everyone
                wait = 0.0 if stale is not None else self.wait
                with Store.open(self.path, read_only=True, lock_timeout=wait) as store:
                    result = compute(store)
            except StoreLocked:
                self._busy_until = time.monotonic() + BUSY_RECHECK
                if stale is not None:
                    return stale  # type: ignore[no-any-return]
                raise
        self.remember(full_key, result)
        return result
