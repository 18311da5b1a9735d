"""What one fetch attempt did: its `Outcome`, and the `IngestResult` every stage reports.

The outcome vocabulary is defined here once; the store's `fetch_log` CHECK constraint
is generated from it, and the CLI, the flows and the health checks compare against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    NEW = "new"  # the history changed
    UNCHANGED = "unchanged"  # a body equal to the catalog in force
    NOT_MODIFIED = "not_modified"  # HTTP 304
    REJECTED = "rejected"  # not a catalog (bad JSON, no data list, success:false, 4xx)
    FAILED = "failed"  # the upstream or the store failed
    SUSPECT = "suspect"  # empty, or a mass removal: held, not applied
    DUPLICATE = "duplicate"  # this body at this time is stored already: nothing written


LOGGED = tuple(o for o in Outcome if o is not Outcome.DUPLICATE)  # what fetch_log may hold
ACCEPTED = (Outcome.NEW, Outcome.UNCHANGED)  # a catalog that is now in force
SUCCESS = (Outcome.NEW, Outcome.UNCHANGED, Outcome.NOT_MODIFIED)  # the upstream answered well
CONTACT = (*SUCCESS, Outcome.SUSPECT)  # answers whose ETag and max-age can be reused
NOT_APPLIED = (Outcome.REJECTED, Outcome.FAILED, Outcome.SUSPECT)


@dataclass
class IngestResult:
    """What one fetch did to the store; also the summary the CLI and flows report."""

    source: str
    fetched_at: datetime
    outcome: Outcome
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
    catalog_hash: str | None = None  # digest of the normalised catalog (ids, values, order)
    released: list[datetime] = field(default_factory=list)  # held fetches this one applied

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fetched_at"] = self.fetched_at.isoformat()
        d["outcome"] = str(self.outcome)
        d["released"] = [t.isoformat() for t in self.released]
        return d
