"""One writer at a time per database, across threads and processes.

DuckDB already refuses a second process; this lock also orders writers inside one
process (concurrent flow runs) and turns waiting into a clear timeout error.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import StoreLocked


@contextmanager
def db_lock(db: str | Path, *, timeout: float = 60.0, poll: float = 0.05) -> Iterator[None]:
    """Hold `<db>.lock` exclusively; raise `StoreLocked` after `timeout` seconds."""
    lock_path = f"{db}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLocked(
                        f"database {str(db)!r} is locked by another run; waited {timeout:g}s"
                    ) from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
