"""Is each source alive? Last attempt, last success, last change, stale or failing.

A source is *stale* when it has had no successful fetch for 3 schedule intervals, and
*failing* when its newest attempt failed or was rejected. Both are what a price tracker
that broke months ago looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.config import Config
from pipeline.outcome import NOT_APPLIED
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow

STALE_AFTER_INTERVALS = 3


@dataclass(frozen=True)
class SourceHealth:
    source: str
    interval: timedelta
    last_attempt: datetime | None
    last_outcome: str | None
    last_error: str | None
    last_success: datetime | None
    last_change: datetime | None
    stale: bool
    failing: bool
    hold: str | None = None  # a held change: since when, and how close to confirmation

    @property
    def state(self) -> str:
        if self.last_attempt is None:
            return "never fetched"
        if self.hold:
            return "held"
        return "failing" if self.failing else "stale" if self.stale else "ok"


def source_health(
    store: Store, config: Config, *, now: datetime | None = None
) -> list[SourceHealth]:
    """Health of every configured source, plus any other source found in the store."""
    when = now or utcnow()
    intervals = {s.name: s.interval() for s in config.sources}
    for name in store.sources():
        intervals.setdefault(name, timedelta(minutes=5))
    rows = []
    for name, interval in intervals.items():
        last = store.last_attempt(name)
        success, change = store.last_success_and_change(name)
        attempt, outcome, error = last if last else (None, None, None)
        holds = store.pending_holds(name)
        hold = None
        if holds and attempt is not None:
            latest = holds[-1][1]
            run = [at for at, h in holds if h == latest]
            policy = config.hold_policy(name)
            hold = (
                f"since {iso(holds[0][0])}; latest catalog "
                f"{policy.describe(len(run), run[0], holds[-1][0])} to apply by itself"
            )
        reference = success or attempt
        stale = reference is None or when - reference > STALE_AFTER_INTERVALS * interval
        rows.append(
            SourceHealth(
                source=name,
                interval=interval,
                last_attempt=attempt,
                last_outcome=outcome,
                last_error=error,
                last_success=success,
                last_change=change,
                stale=attempt is not None and stale,
                failing=outcome in NOT_APPLIED,
                hold=hold,
            )
        )
    return rows
