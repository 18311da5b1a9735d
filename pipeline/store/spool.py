"""The spool: fetched bodies kept durably beside the store while it cannot be written.

DuckDB lets one process write a file, and while it does no other process can open it
(a notebook's connection, the `duckdb` shell, a long replay). A fetch made then is not
lost (SPEC 3): its answer goes into `<db>.spool/`, one file per fetch, written to a
temporary name, fsynced and renamed, so a kill at any point leaves either the whole
entry or none. The next run that can write applies the entries in fetch order, each at
its own fetch time, and deletes each once it is in the store; an entry found already
in the store (a kill between the two) is deleted without being applied twice.

An entry is one JSON header line, a newline, then the raw body bytes (already
redacted: a token never reaches the spool).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

SUFFIX = ".spool"
FORMAT = 1


@dataclass(frozen=True)
class SpoolEntry:
    """One fetch that could not be written when it was made."""

    source: str
    kind: str
    url: str
    fetched_at: datetime
    status: int | None  # HTTP status of the answer (None: no answer at all)
    etag: str | None = None  # the answer's ETag
    sent_etag: str | None = None  # the If-None-Match the fetch sent
    max_age: int | None = None
    failure: str | None = None  # "rejected" or "failed" when the fetch raised
    error: str | None = None
    private: bool = False  # fetched with a bearer token
    body: bytes | None = None
    path: Path | None = None  # where it is spooled (set when read back)

    def header(self) -> bytes:
        fields = asdict(self)
        fields.pop("body"), fields.pop("path")
        fields["fetched_at"] = self.fetched_at.isoformat()
        fields["format"] = FORMAT
        fields["has_body"] = self.body is not None
        return json.dumps(fields, ensure_ascii=False, sort_keys=True).encode()


class Spool:
    """The folder `<db>.spool` and its entries."""

    def __init__(self, db: str | Path):
        self.path = Path(f"{db}.spool")

    def put(self, entry: SpoolEntry) -> Path:
        """Write `entry` durably (fsync, atomic rename); return its file."""
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = entry.fetched_at.strftime("%Y-%m-%dT%H-%M-%S.%fZ")
        name = f"{stamp}_{uuid.uuid4().hex[:12]}{SUFFIX}"
        temporary = self.path / f".tmp-{name}"
        with open(temporary, "wb") as handle:
            handle.write(entry.header() + b"\n" + (entry.body or b""))
            handle.flush()
            os.fsync(handle.fileno())
        final = self.path / name
        os.replace(temporary, final)
        self._sync_folder()
        return final

    def entries(self) -> list[SpoolEntry]:
        """Every complete entry, oldest fetch first."""
        if not self.path.is_dir():
            return []
        found = [  # a `.tmp-` file is an entry a kill interrupted: never read
            _read(p) for p in sorted(self.path.glob(f"*{SUFFIX}")) if not p.name.startswith(".")
        ]
        return sorted(found, key=lambda e: (e.fetched_at, e.path.name if e.path else ""))

    def remove(self, entry: SpoolEntry) -> None:
        if entry.path is not None:
            entry.path.unlink(missing_ok=True)
            self._sync_folder()

    def set_aside(self, entry: SpoolEntry, why: str) -> Path | None:
        """Move an entry that cannot be applied to `rejected/`, with the reason beside it."""
        if entry.path is None:
            return None
        target = self.path / "rejected" / entry.path.name
        target.parent.mkdir(exist_ok=True)
        os.replace(entry.path, target)
        target.with_suffix(".why.txt").write_text(why + "\n")
        self._sync_folder()
        return target

    def _sync_folder(self) -> None:
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read(path: Path) -> SpoolEntry:
    data = path.read_bytes()
    head, _, body = data.partition(b"\n")
    fields = json.loads(head)
    has_body = fields.pop("has_body")
    fields.pop("format")
    fields["fetched_at"] = datetime.fromisoformat(fields["fetched_at"])
    return SpoolEntry(**fields, body=body if has_body else None, path=path)
