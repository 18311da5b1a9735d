"""`modelwatch up`: the configured schedule and the served API in one process.

The schedule runs in a thread: each configured source is snapshotted at its cron times
(UTC) with `snapshot_at`, which holds the store only to plan and to write and spools
what it cannot write, so the process never locks analysts out of the file (a notebook,
the `duckdb` shell, `modelwatch models` can open it between writes). The served API
runs in the main thread; SIGINT or SIGTERM stops the server, then the schedule, which
finishes the snapshot in flight (or its answer goes to the spool) within `STOP_WAIT` s.
After each snapshot the configured alerts send what changed (`pipeline.alerts`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.config import Config, SourceConfig
from pipeline.errors import ModelwatchError
from pipeline.timeutil import utcnow

log = logging.getLogger("modelwatch.service")

STOP_WAIT = 8.0  # seconds the schedule gets to finish its snapshot after a stop
LOCK_WAIT = 2.0  # seconds a snapshot waits for a busy store before it spools


def next_run(source: SourceConfig, after: datetime, interval: timedelta | None) -> datetime:
    """When `source` runs next: its cron (UTC) after `after`, or every `interval`."""
    if interval is not None:
        return after + interval
    from cronsim import CronSim

    return next(CronSim(source.schedule, after))


class Schedule:
    """Snapshots every configured source on its schedule until `stop()`."""

    def __init__(
        self,
        db: Path,
        config: Config,
        *,
        interval: timedelta | None = None,
        on_result: Callable[[str, Any], None] | None = None,
        on_alert: Callable[[str], None] | None = None,
        now: Callable[[], datetime] = utcnow,
    ):
        self.db = db
        self.config = config
        self.interval = interval
        self.on_result = on_result or (lambda source, result: None)
        self.on_alert = on_alert or (lambda line: log.warning("%s", line))
        self.now = now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelwatch-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: float = STOP_WAIT) -> bool:
        """Ask the schedule to stop; whether it did within `wait` seconds."""
        self._stop.set()
        self._thread.join(timeout=wait)
        return not self._thread.is_alive()

    def _run(self) -> None:
        start = self.now()
        # with an interval (testing, `--every`) the first runs are now; crons wait a tick
        due = {
            s.name: start if self.interval is not None else next_run(s, start, None)
            for s in self.config.sources
        }
        while not self._stop.is_set() and due:
            name = min(due, key=due.__getitem__)
            wait = (due[name] - self.now()).total_seconds()
            if wait > 0:
                self._stop.wait(min(wait, 60.0))
                continue
            source = self.config.source(name)
            self.on_result(name, self.run_once(source))
            due[name] = next_run(source, max(due[name], self.now()), self.interval)

    def run_once(self, source: SourceConfig) -> Any:
        """One snapshot of `source`: its result, or the error it ended with (never raised:
        one failing source stops neither the others nor the server)."""
        from pipeline.ingest import Spooled, snapshot_at

        result: Any
        try:
            result = snapshot_at(
                self.db,
                source=source.name,
                kind=source.kind,
                url=source.url,
                token=source.token(),
                hold_policy=source.hold,
                lock_timeout=LOCK_WAIT,
            )
        except ModelwatchError as exc:
            log.warning("%s: %s", source.name, exc)
            result = exc
        if not isinstance(result, Spooled):  # spooled: the store is busy, alerts wait too
            self.send_alerts()
        return result

    def send_alerts(self) -> None:
        """The alerts of the config (SPEC 5b), after a snapshot: one log line each; a
        failed delivery is retried by the next run and stops nothing."""
        if not self.config.alerts:
            return
        from pipeline.alerts import send_alerts

        try:
            lines = send_alerts(self.db, self.config, lock_timeout=LOCK_WAIT).lines()
        except Exception as exc:  # a bug in sending must not stop the schedule
            lines = [f"alerts: not sent: {type(exc).__name__}: {exc}"]
        for line in lines:
            self.on_alert(line)
