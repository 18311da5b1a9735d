"""Every read the library makes, as a named method: the SQL lives here, once.

`Reads` is mixed into `Store`; it needs only `frame()` and `_rows()`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import BadInput
from pipeline.outcome import CONTACT, SUCCESS
from schemas.record import PRICE_COLUMNS, SCHEMA

FAR_FUTURE = datetime(9999, 12, 31)
EXPORTED_TABLES = (
    "fetch_log",
    "raw_payloads",
    "model_versions",
    "orders",
    "snapshots",
    "quarantine",
)
_PRICES = ", ".join(PRICE_COLUMNS)


def _in(values: tuple[str, ...]) -> str:
    """A SQL list of outcome literals (values from `Outcome`, never user input)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Reads:
    """Named queries over the history; each returns plain values or a polars frame."""

    def frame(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        raise NotImplementedError

    def _rows(
        self, sql: str, params: dict[str, Any] | list[Any] | None = None, *, flush: bool = True
    ) -> list[Any]:
        raise NotImplementedError

    def _scalar(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    # -- the fetch log ------------------------------------------------------------------
    def sources(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT source FROM fetch_log ORDER BY source")]

    def version(self) -> int:
        """Changes whenever anything is written: a cache key for served bodies."""
        return int(self._scalar("SELECT coalesce(max(fetch_id), 0) FROM fetch_log") or 0)

    def last_contact(self, source: str, url: str | None = None) -> tuple[Any, ...] | None:
        """(fetched_at, etag, max_age, outcome) of the newest good answer from `source`."""
        rows = self._rows(
            f"""SELECT fetched_at, etag, max_age, outcome FROM fetch_log
               WHERE source = ? AND (? IS NULL OR url = ?) AND outcome IN {_in(CONTACT)}
               ORDER BY fetched_at DESC, fetch_id DESC LIMIT 1""",
            [source, url, url],
        )
        return tuple(rows[0]) if rows else None

    def last_attempt(self, source: str) -> tuple[datetime, str, str | None] | None:
        """(fetched_at, outcome, error) of the newest attempt of any outcome."""
        rows = self._rows(
            "SELECT fetched_at, outcome, error FROM fetch_log WHERE source = ? "
            "ORDER BY fetched_at DESC, fetch_id DESC LIMIT 1",
            [source],
        )
        return tuple(rows[0]) if rows else None  # type: ignore[return-value]

    def last_success_and_change(self, source: str) -> tuple[datetime | None, datetime | None]:
        rows = self._rows(
            f"SELECT max(fetched_at) FILTER (outcome IN {_in(SUCCESS)}),"
            " max(fetched_at) FILTER (outcome = 'new') FROM fetch_log WHERE source = ?",
            [source],
        )
        return rows[0][0], rows[0][1]

    def fetches_at(self, source: str, fetched_at: datetime) -> list[tuple[str | None, str]]:
        """(content_hash, outcome) of every attempt logged for `source` at that instant."""
        return [
            (r[0], r[1])
            for r in self._rows(
                "SELECT content_hash, outcome FROM fetch_log WHERE source = ? AND fetched_at = ?",
                [source, fetched_at],
            )
        ]

    def pending_holds(self, source: str) -> list[tuple[datetime, str | None]]:
        """(fetched_at, catalog_hash) of the held (`suspect`) fetches since the catalog in
        force was last accepted, oldest first: what `--accept-mass-removal` would apply."""
        return [
            (r[0], r[1])
            for r in self._rows(
                """SELECT fetched_at, catalog_hash FROM fetch_log
                   WHERE source = $s AND outcome = 'suspect' AND fetched_at > coalesce(
                       (SELECT max(fetched_at) FROM fetch_log
                        WHERE source = $s AND outcome IN ('new', 'unchanged')),
                       TIMESTAMP '0001-01-01')
                   ORDER BY fetched_at, fetch_id""",
                {"s": source},
            )
        ]

    def fetches_from(self, source: str, url_prefix: str) -> list[tuple[str, datetime, str | None]]:
        """(url, fetched_at, content_hash) of the fetches of `source` whose URL starts with
        `url_prefix` and that did not fail (a failed one is to be fetched again)."""
        return [
            (r[0], r[1], r[2])
            for r in self._rows(
                "SELECT url, fetched_at, content_hash FROM fetch_log WHERE source = $s "
                "AND starts_with(url, $prefix) AND outcome <> 'failed'",
                {"s": source, "prefix": url_prefix},
            )
        ]

    # -- the catalog at a time ------------------------------------------------------------
    def catalog_as_of(self, source: str, as_of: datetime) -> pl.DataFrame:
        """The normalised catalog as last observed at or before `as_of`, in default order."""
        frame = self.frame("SELECT * FROM catalog_as_of($src, $ts)", {"src": source, "ts": as_of})
        return frame.cast(pl.Schema(SCHEMA)) if frame.height else pl.DataFrame(schema=SCHEMA)

    def snapshot_times(self, source: str) -> pl.DataFrame:
        """observed_at and model count of every applied snapshot of `source`."""
        return self.frame(
            "SELECT observed_at, models FROM snapshots WHERE source = $s ORDER BY observed_at",
            {"s": source},
        )

    def first_seen(self, source: str) -> dict[str, datetime]:
        """model_id -> when it was first listed by `source`."""
        return dict(
            self._rows(
                "SELECT model_id, min(valid_from) FROM model_versions WHERE source = ? "
                "GROUP BY model_id",
                [source],
            )
        )

    def model_ids(self, source: str | None = None) -> list[tuple[str, str]]:
        """(source, model_id) of every model ever listed (by `source`, if given)."""
        return [
            (r[0], r[1])
            for r in self._rows(
                "SELECT DISTINCT source, model_id FROM model_versions "
                "WHERE $source IS NULL OR source = $source",
                {"source": source},
            )
        ]

    def versions(self, source: str, model_id: str) -> pl.DataFrame:
        """One row per version of a model: prices and limits, valid_from/valid_to."""
        return self.frame(
            f"""SELECT source, model_id, valid_from, valid_to, {_PRICES},
                       context_length, max_output
                FROM model_versions WHERE source = ? AND model_id = ? ORDER BY valid_from""",
            [source, model_id],
        )

    def model_history(self, source: str, model_id: str) -> pl.DataFrame:
        """Every version of one model with all its fields, oldest first (its page)."""
        return self.frame(
            "SELECT * EXCLUDE (row_hash, fetch_id) FROM model_versions "
            "WHERE source = ? AND model_id = ? ORDER BY valid_from",
            [source, model_id],
        )

    # -- what changed ---------------------------------------------------------------------
    def changes(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        model_id: str | None = None,
    ) -> pl.DataFrame:
        """`model_changes` in (since, until] (of one model, if given), oldest first."""
        return self.frame(
            """SELECT * FROM model_changes
               WHERE ($since IS NULL OR changed_at > $since)
                 AND ($until IS NULL OR changed_at <= $until)
                 AND ($source IS NULL OR source = $source)
                 AND ($model IS NULL OR model_id = $model)
               ORDER BY changed_at, source, model_id, kind_order, field""",
            {"since": since, "until": until, "source": source, "model": model_id},
        ).drop("kind_order")

    def changes_with_values(
        self, *, source: str, since: datetime | None = None, limit: int = 200
    ) -> pl.DataFrame:
        """The newest `limit` changes of `source` after `since`, newest first, each with
        the model's values then (the version that opened, or for a removal the one that
        closed): what a change feed filters on with SPEC 4's semantics."""
        return self.frame(
            f"""SELECT c.changed_at, c.kind, c.field, c.old_value, c.new_value, c.pct_change,
                       {", ".join(f"v.{c}" for c in SCHEMA if c not in ("position",))}
                FROM model_changes c JOIN model_versions v
                  ON v.source = c.source AND v.model_id = c.model_id
                 AND (CASE WHEN c.kind = 'removed' THEN v.valid_to = c.changed_at
                           ELSE v.valid_from = c.changed_at END)
                WHERE c.source = $s AND ($since IS NULL OR c.changed_at > $since)
                ORDER BY c.changed_at DESC, c.model_id, c.kind_order, c.field
                LIMIT $limit""",
            {"s": source, "since": since, "limit": limit},
        )

    def price_changes_at(self, source: str, at: datetime) -> list[dict[str, Any]]:
        """The price changes one snapshot made."""
        return self.frame(
            "SELECT model_id, price, old_price, new_price, pct_change FROM price_changes "
            "WHERE source = $s AND changed_at = $t ORDER BY model_id, price",
            {"s": source, "t": at},
        ).to_dicts()

    def median_price_by_type(self, source: str, price: str) -> pl.DataFrame:
        """Median price per type at each snapshot."""
        if price not in PRICE_COLUMNS:
            raise BadInput(f"price {price!r} is not one of {', '.join(PRICE_COLUMNS)}")
        return self.frame(
            f"""SELECT s.observed_at, t.type, median(m.{price}) AS median_{price},
                       count(m.{price}) AS models_priced
                FROM snapshots s, catalog_as_of(s.source, s.observed_at) m,
                     unnest(m.types) AS t(type)
                WHERE s.source = $source
                GROUP BY ALL ORDER BY s.observed_at, t.type""",
            {"source": source},
        )

    def coverage(self, source: str, column: str) -> pl.DataFrame:
        """Number of models per value of a list column at each snapshot."""
        if column not in ("features", "input_modalities", "types"):
            raise BadInput(f"column {column!r} is not one of features, input_modalities, types")
        return self.frame(
            f"""SELECT s.observed_at, v.value, count(*) AS models
                FROM snapshots s, catalog_as_of(s.source, s.observed_at) m,
                     unnest(m.{column}) AS v(value)
                WHERE s.source = $source
                GROUP BY ALL ORDER BY s.observed_at, v.value""",
            {"source": source},
        )

    # -- across sources (canonical_model_key, in `schema`) ----------------------------------
    def canonical_key(self, model_id: str) -> str:
        return str(self._scalar("SELECT canonical_model_key(?)", [model_id]))

    def canonical_keys(self, at: datetime | None) -> list[str]:
        return [
            r[0]
            for r in self._rows(
                "SELECT DISTINCT canonical_key FROM model_compare_as_of($at)",
                {"at": at or FAR_FUTURE},
            )
            if r[0]
        ]

    def listings(self, key: str, at: datetime | None) -> pl.DataFrame:
        """Every source's listing with canonical key `key`, now or as of `at`."""
        if at is None:
            return self.frame(
                "SELECT * FROM model_compare WHERE canonical_key = $key ORDER BY source, model_id",
                {"key": key},
            )
        return self.frame(
            "SELECT * FROM model_compare_as_of($at) WHERE canonical_key = $key "
            "ORDER BY source, model_id",
            {"key": key, "at": at},
        )

    def listing_price_steps(self, key: str) -> pl.DataFrame:
        """Price steps of every listing with canonical key `key` (versions that changed
        only other fields are merged; a gap in a listing starts a new step)."""
        return self.frame(
            f"""
            WITH v AS (
                SELECT source, model_id, valid_from, valid_to, {_PRICES},
                       lag(valid_to) OVER w AS prev_to,
                       lag(struct_pack({_PRICES})) OVER w AS prev_prices
                FROM model_versions
                WHERE canonical_model_key(model_id) = $key
                WINDOW w AS (PARTITION BY source, model_id ORDER BY valid_from)
            ),
            steps AS (
                SELECT *, sum(CASE WHEN prev_to IS NOT DISTINCT FROM valid_from
                                    AND prev_prices IS NOT DISTINCT FROM struct_pack({_PRICES})
                                   THEN 0 ELSE 1 END)
                          OVER (PARTITION BY source, model_id ORDER BY valid_from) AS step
                FROM v
            )
            SELECT $key AS canonical_key, source, model_id, min(valid_from) AS valid_from,
                   CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END
                       AS valid_to,
                   {", ".join(f"any_value({c}) AS {c}" for c in PRICE_COLUMNS)}
            FROM steps
            GROUP BY source, model_id, step
            ORDER BY source, model_id, valid_from
            """,
            {"key": key},
        )

    def source_kind(self, source: str) -> str | None:
        """The adapter `source` was ingested with, if it was."""
        return self._scalar("SELECT kind FROM source_kinds WHERE source = ?", [source])

    def private_sources(self) -> set[str]:
        """Sources fetched with a bearer token: token-scoped lists, never public."""
        return {r[0] for r in self._rows("SELECT source FROM private_sources")}

    # -- tokens of the served API ---------------------------------------------------------
    def token_named(self, name: str) -> bool:
        return bool(self._rows("SELECT 1 FROM tokens WHERE name = ?", [name]))

    def token_by_hash(self, sha256: str) -> tuple[str, list[str] | None, str | None] | None:
        """(name, models, group) of the token with this SHA-256, if any."""
        rows = self._rows("SELECT name, models, grp FROM tokens WHERE token_sha256 = ?", [sha256])
        return tuple(rows[0]) if rows else None  # type: ignore[return-value]

    def tokens(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT name, models, grp, created_at FROM tokens ORDER BY name")
        return [{"name": n, "models": m, "group": g, "created_at": c} for n, m, g, c in rows]

    # -- the whole store ------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts a person checks first: how much history, how many models now."""
        outcomes = dict(
            self._rows("SELECT outcome, count(*) FROM fetch_log GROUP BY outcome ORDER BY outcome")
        )
        scalar = self._scalar
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

    def export_parquet(self, directory: Path) -> dict[str, int]:
        """One `<table>.parquet` per history table; returns rows written per file."""
        if directory.exists() and not directory.is_dir():
            raise BadInput(f"export target {str(directory)!r} exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for table in EXPORTED_TABLES:
            path = directory / f"{table}.parquet"
            quoted = str(path).replace("'", "''")
            self._rows(
                f"COPY (SELECT * FROM {table}) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)"
            )
            written[str(path)] = int(self._scalar(f"SELECT count(*) FROM {table}"))
        return written
