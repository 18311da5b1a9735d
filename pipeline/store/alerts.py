"""The alerts' bookkeeping (SPEC 5b): each alert's baseline and each delivery, and the
reads that find what an alert may send. The rules are in `pipeline.alerts`.

`AlertBook` is mixed into `Store`; like `Reads` it needs only `frame()` and `_rows()`.
A store written by an older modelwatch and opened read-only has no alert tables: the
reads then answer as if no alert had ever run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.outcome import ACCEPTED, SUCCESS, Outcome
from schemas.record import SCHEMA

FAILED = (Outcome.FAILED, Outcome.REJECTED)
_VALUES = ", ".join(f"v.{c}" for c in SCHEMA if c not in ("source", "model_id", "position"))


def _in(values: tuple[str, ...]) -> str:
    """A SQL list of outcome literals (values from `Outcome`, never user input)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


@dataclass(frozen=True)
class AlertBaseline:
    after_fetch: int  # changes committed by fetches after this one are the alert's
    since: datetime  # when the alert was first evaluated
    definition: str


@dataclass(frozen=True)
class Delivery:
    state: str  # sending, sent, failed
    fetch_id: int | None
    attempted_at: datetime
    error: str | None


class AlertBook:
    """Named reads and writes of `alert_baselines` and `alert_deliveries`."""

    def frame(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        raise NotImplementedError

    def _rows(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> list[Any]:
        raise NotImplementedError

    def _has_alert_tables(self) -> bool:
        return bool(
            self._rows(
                "SELECT 1 FROM duckdb_tables() WHERE table_name = 'alert_deliveries' "
                "AND database_name = current_database()"
            )
        )

    # -- baselines ----------------------------------------------------------------------
    def alert_baseline(self, alert: str) -> AlertBaseline | None:
        if not self._has_alert_tables():
            return None
        rows = self._rows(
            "SELECT after_fetch, since, definition FROM alert_baselines WHERE alert = ?", [alert]
        )
        return AlertBaseline(*rows[0]) if rows else None

    def start_alert(self, alert: str, *, definition: str, now: datetime) -> AlertBaseline:
        """Record `alert`'s baseline: what is committed now is not its to send."""
        after = self._rows("SELECT coalesce(max(fetch_id), 0) FROM fetch_log")[0][0]
        self._rows(
            "INSERT OR REPLACE INTO alert_baselines VALUES (?, ?, ?, ?)",
            [alert, after, now, definition],
        )
        return AlertBaseline(int(after), now, definition)

    # -- deliveries -----------------------------------------------------------------------
    def alert_deliveries(self, alert: str) -> dict[str, Delivery]:
        """change key -> its delivery, for every change `alert` has tried to send."""
        if not self._has_alert_tables():
            return {}
        rows = self._rows(
            "SELECT change_key, state, fetch_id, attempted_at, error FROM alert_deliveries "
            "WHERE alert = ?",
            [alert],
        )
        return {r[0]: Delivery(*r[1:]) for r in rows}

    def claim_deliveries(
        self, alert: str, keys: list[str], fetch_ids: list[int | None], *, at: datetime
    ) -> None:
        """Mark changes `sending` before the message leaves: from then on they are never
        sent again by another run, whatever happens to this one (at most once)."""
        self._rows(
            """INSERT INTO alert_deliveries
               SELECT $alert, unnest($keys), unnest($ids), 'sending', $at, 1, NULL
               ON CONFLICT (alert, change_key) DO UPDATE SET
                   state = 'sending', attempted_at = excluded.attempted_at,
                   attempts = alert_deliveries.attempts + 1, error = NULL""",
            {"alert": alert, "keys": keys, "ids": fetch_ids, "at": at},
        )

    def settle_deliveries(
        self, alert: str, keys: list[str], *, sent: bool, error: str | None = None
    ) -> None:
        """What became of claimed changes: `sent`, or `failed` (sent again next run)."""
        self._rows(
            "UPDATE alert_deliveries SET state = $state, error = $error "
            "WHERE alert = $alert AND list_contains($keys, change_key)",
            {"alert": alert, "keys": keys, "state": "sent" if sent else "failed", "error": error},
        )

    def alert_summary(self) -> dict[str, dict[str, Any]]:
        """alert -> last_sent, and how many deliveries are failed or left `sending`."""
        if not self._has_alert_tables():
            return {}
        rows = self._rows(
            """SELECT alert, max(attempted_at) FILTER (WHERE state = 'sent'),
                      count(*) FILTER (WHERE state = 'failed'),
                      count(*) FILTER (WHERE state = 'sending')
               FROM alert_deliveries GROUP BY alert"""
        )
        return {r[0]: {"last_sent": r[1], "failed": r[2], "sending": r[3]} for r in rows}

    # -- what an alert may send ----------------------------------------------------------
    def changes_committed_after(self, fetch_id: int) -> pl.DataFrame:
        """Every `model_changes` row committed by a fetch after `fetch_id` (`fetch_id`
        column), oldest commit first, with the model's values then (the version that
        opened, or for a removal the one that closed). A source's first snapshot is its
        baseline: its rows (every model `added`) are left out."""
        return self.frame(
            f"""SELECT s.fetch_id, c.changed_at, c.source, c.model_id, c.kind, c.field,
                       c.old_value, c.new_value, c.old_number, c.new_number, c.pct_change,
                       {_VALUES}
                FROM model_changes c
                JOIN snapshots s ON s.source = c.source AND s.observed_at = c.changed_at
                JOIN model_versions v
                  ON v.source = c.source AND v.model_id = c.model_id
                 AND (CASE WHEN c.kind = 'removed' THEN v.valid_to = c.changed_at
                           ELSE v.valid_from = c.changed_at END)
                WHERE s.fetch_id > $after
                  AND c.changed_at > (SELECT min(observed_at) FROM snapshots f
                                      WHERE f.source = c.source)
                ORDER BY s.fetch_id, c.kind_order, c.model_id, c.field""",
            {"after": fetch_id},
        )

    def fetch_events_after(self, fetch_id: int) -> pl.DataFrame:
        """Fetches logged after `fetch_id` that begin a failure or a hold: the first
        `failed`/`rejected` attempt since the source last answered well, and the first
        `suspect` (held) one since a catalog was last accepted. `kind` is `failed` or
        `held`; later attempts of the same outage or hold are not events of their own."""
        return self.frame(
            f"""WITH f AS (
                    SELECT fetch_id, source, fetched_at, outcome, error,
                           max(CASE WHEN outcome IN {_in(SUCCESS)} THEN fetched_at END)
                               OVER w AS last_ok,
                           max(CASE WHEN outcome IN {_in(FAILED)} THEN fetched_at END)
                               OVER w AS last_failed,
                           max(CASE WHEN outcome IN {_in(ACCEPTED)} THEN fetched_at END)
                               OVER w AS last_accepted,
                           max(CASE WHEN outcome = 'suspect' THEN fetched_at END)
                               OVER w AS last_held
                    FROM fetch_log
                    WINDOW w AS (PARTITION BY source ORDER BY fetched_at, fetch_id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                )
                SELECT fetch_id, fetched_at, source, outcome, error,
                       CASE WHEN outcome = 'suspect' THEN 'held' ELSE 'failed' END AS kind
                FROM f
                WHERE fetch_id > $after AND (
                    (outcome IN {_in(FAILED)}
                     AND (last_failed IS NULL OR last_ok > last_failed))
                    OR (outcome = 'suspect'
                        AND (last_held IS NULL OR last_accepted > last_held)))
                ORDER BY fetch_id""",
            {"after": fetch_id},
        )

    def catalog_values(self, source: str | None = None) -> pl.DataFrame:
        """One row: every type, feature and input modality `source` (or any source) has
        ever listed, so a filter value can be checked as SPEC 4 checks it."""
        frame = self.frame(
            """SELECT
                 coalesce(list_distinct(flatten(list(types))), []) AS types,
                 coalesce(list_distinct(flatten(list(features))), []) AS features,
                 coalesce(list_distinct(flatten(list(input_modalities))), [])
                     AS input_modalities
               FROM model_versions WHERE $source IS NULL OR source = $source""",
            {"source": source},
        )
        return frame.cast({c: pl.List(pl.String) for c in frame.columns})
