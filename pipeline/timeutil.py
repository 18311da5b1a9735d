"""Times are UTC everywhere; the store keeps naive UTC timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pipeline.errors import BadInput

_FILE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})(?:\.(\d+))?Z_")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_time(text: str, *, name: str = "time") -> datetime:
    """ISO 8601 (`2026-03-01T12:00:00Z`, offsets allowed) or a bare date (00:00 UTC)."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{name} {text!r} is not an ISO 8601 time; use e.g. 2026-03-01 or 2026-03-01T12:00:00Z"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def looks_timed(name: str) -> bool:
    """Whether a file name starts like `2026-03-01T12-00-00Z_` (its time may still be bad)."""
    return re.match(r"^\d{4}-\d{2}-\d{2}T", name) is not None


def time_from_filename(name: str) -> datetime:
    """`2026-03-01T12-00-00Z_anything.json[.gz]` -> 2026-03-01 12:00:00 (UTC)."""
    match = _FILE_TIME.match(name)
    if not match:
        raise BadInput(f"file name {name!r} does not start with a time like 2026-03-01T12-00-00Z_")
    day, hh, mm, ss, frac = match.groups()
    iso = f"{day}T{hh}:{mm}:{ss}" + (f".{frac[:6]}" if frac else "")
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        raise BadInput(f"file name {name!r} holds an impossible time {iso!r}") from None


def iso(value: datetime | None) -> str | None:
    """A time as people read it, everywhere the same: `2026-03-01T12:00:00Z` (seconds)."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")
