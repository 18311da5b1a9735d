"""The store's schema: tables, and the SQL views and macros analysts and `pipeline.query`
share (one definition of "the catalog at t" and "what changed").

Tables (all times are naive UTC):

    fetch_log      one row per fetch attempt, whatever its outcome
    raw_payloads   every distinct body once, zstd-compressed against the previous body
                   of the same source (a delta chain cut every `KEYFRAME_EVERY` payloads)
    model_versions_stored  type-2 history: one row per (model, values) with valid_from
                   and valid_to; an open version keeps its values' digest (`row_hash`) for
                   the next diff; list columns are JSON text (query the view instead)
    orders         the default order of a catalog, stored once per distinct order
    snapshots      (a view) one row per applied snapshot: when, and which order it had
    quarantine     invalid rows, with reasons, once per distinct body
    tokens         bearer tokens of the served API (SHA-256 only)
    private_sources  sources fetched with a bearer token (never served anonymously)
    source_kinds   the adapter each source was ingested with
    alert_baselines  per [[alerts]] name: after which fetch its changes count
    alert_deliveries per alert and change: sending, sent or failed (at most once)

Views and macros:

    model_versions             the stored versions with list columns as lists (query this)
    catalog_as_of(source, ts)  one source's catalog as last observed at or before ts
    models_as_of(ts)           every source's catalog at ts
    current_models             every source's latest catalog
    snapshot_models            every applied snapshot expanded to its models (observed_at)
    model_changes              one row per change: added/removed/returned, or a field
    price_changes              the price rows of model_changes, with the % change
    canonical_model_key(id)    one key for one model across naming schemes
    model_compare_as_of(ts)    every source's models at ts, with their canonical key
    model_compare              the same over the current catalogs
"""

from __future__ import annotations

import hashlib

import duckdb

from pipeline.errors import StoreError
from pipeline.outcome import LOGGED
from schemas.record import COLUMNS, FIELDS, LIST_COLUMNS, PRICE_COLUMNS, VALUE_COLUMNS, Field

SCHEMA_VERSION = 1
_VERSION_COLS = [f for f in FIELDS if f.name != "position"]
VERSION_COLUMNS = tuple(f.name for f in _VERSION_COLS)

# Long repeated text (descriptions, `extra` JSON, orders) is zstd-compressed, where
# it takes half of DuckDB's default (dictionary + FSST per segment); every other column
# keeps DuckDB's own choice (constant, RLE, bit-packing, ALP), which zstd would only grow.
ZSTD_COLUMNS = ("description", "extra")


def _compression(column: str) -> str:
    return " USING COMPRESSION zstd" if column in ZSTD_COLUMNS else ""


# `model_versions` is a view of the table `model_versions_stored`, which keeps a list
# column as JSON text: in 16 KiB blocks DuckDB stores a list's offsets as 8 uncompressed bytes a row
# (OpenRouter: 3 x 120 KiB), where a few distinct JSON texts take a dictionary's few bytes.
def _stored(f: Field) -> str:
    return "VARCHAR" if f.name in LIST_COLUMNS else f.sql


# the stored table's columns and their types, as its writer inserts them
STORED_VERSION_COLUMNS: tuple[tuple[str, str], ...] = (
    *((f.name, _stored(f)) for f in _VERSION_COLS),
    ("valid_from", "TIMESTAMP"),
    ("valid_to", "TIMESTAMP"),
    ("row_hash", "VARCHAR"),
    ("fetch_id", "INTEGER"),
)


def _as_listed(column: str) -> str:
    return (
        f"""from_json({column}, '["VARCHAR"]') AS {column}""" if column in LIST_COLUMNS else column
    )


VERSIONS_VIEW = f"""
CREATE OR REPLACE VIEW model_versions AS
    SELECT {", ".join(_as_listed(f.name) for f in _VERSION_COLS)},
           valid_from, valid_to, row_hash, fetch_id::BIGINT AS fetch_id
    FROM model_versions_stored;
"""


DDL = f"""
CREATE SEQUENCE IF NOT EXISTS fetch_id_seq START 1;
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS fetch_log (
    fetch_id BIGINT PRIMARY KEY DEFAULT nextval('fetch_id_seq'),
    source VARCHAR NOT NULL,
    url VARCHAR,
    fetched_at TIMESTAMP NOT NULL,
    http_status INTEGER,
    etag VARCHAR,
    max_age INTEGER,
    content_hash VARCHAR,
    outcome VARCHAR NOT NULL CHECK (outcome IN {tuple(str(o) for o in LOGGED)!r}),
    error VARCHAR,
    models INTEGER,
    added INTEGER,
    removed INTEGER,
    returned INTEGER,
    changed INTEGER,
    quarantined INTEGER,
    unknown_values JSON,
    duration_ms DOUBLE
);
-- added after 0.1.0: the normalised catalog's digest, to see a held change confirmed
ALTER TABLE fetch_log ADD COLUMN IF NOT EXISTS catalog_hash VARCHAR;
-- the order of the catalog a fetch applied (NULL when it applied nothing): `snapshots`
ALTER TABLE fetch_log ADD COLUMN IF NOT EXISTS order_hash VARCHAR;
CREATE TABLE IF NOT EXISTS raw_payloads (
    content_hash VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    size BIGINT NOT NULL,
    codec VARCHAR NOT NULL,
    base_hash VARCHAR,
    depth INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions_stored (
    {", ".join(f"{f.name} {_stored(f)}{_compression(f.name)}" for f in _VERSION_COLS)},
    valid_from TIMESTAMP NOT NULL,
    valid_to TIMESTAMP,
    -- the values' digest while open, NULL once closed: few are left, so no zstd (which
    -- took 7 bytes a row, NULLs included, where the dictionary takes a third of it)
    row_hash VARCHAR,
    fetch_id INTEGER NOT NULL  -- 4 bytes a row, not 8 (read as BIGINT); 2**31 fetches is
                               -- a poll a minute for 4,000 years
);
CREATE TABLE IF NOT EXISTS orders (
    order_hash VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    model_ids VARCHAR NOT NULL USING COMPRESSION zstd,  -- a JSON list of ids
    positions VARCHAR USING COMPRESSION zstd  -- JSON; NULL when 0, 1, 2, ... (no gaps)
);
CREATE TABLE IF NOT EXISTS tokens (
    name VARCHAR PRIMARY KEY,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    models VARCHAR[],
    grp VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS source_kinds (
    source VARCHAR PRIMARY KEY,  -- a source's adapter, stored so it need not be repeated
    kind VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS private_sources (
    source VARCHAR PRIMARY KEY,  -- fetched with a bearer token: served only to its tokens
    since TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    content_hash VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    model_id VARCHAR,
    reason VARCHAR NOT NULL USING COMPRESSION zstd,
    raw JSON USING COMPRESSION zstd
);
-- alerts (SPEC 5b, pipeline/alerts.py): never a URL or a secret, only names and keys
CREATE TABLE IF NOT EXISTS alert_baselines (
    alert VARCHAR PRIMARY KEY,
    after_fetch BIGINT NOT NULL,    -- changes committed by later fetches are this alert's
    since TIMESTAMP NOT NULL,       -- when it was first evaluated (for staleness)
    definition VARCHAR NOT NULL     -- what it matches; a new definition is a new baseline
);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert VARCHAR NOT NULL,
    change_key VARCHAR NOT NULL,    -- JSON: what changed (source, model, time, kind, field)
    fetch_id BIGINT,                -- the fetch that committed it (none for staleness)
    state VARCHAR NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
    attempted_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL,
    error VARCHAR,
    PRIMARY KEY (alert, change_key)
);
"""


_SELECT = ", ".join(
    f"o.{c}" if c in ("source", "model_id", "position") else f"v.{c}" for c in COLUMNS
)
# orders hold JSON text: zstd takes LiteLLM's 400 orders of 1,700 ids (20 MB) to 0.2 MB,
# where a VARCHAR[] column took 10 MB in 16 KiB blocks
_IDS = """from_json(orders.model_ids, '["VARCHAR"]')"""
_POSITIONS = (
    f"""unnest(coalesce(from_json(orders.positions, '["INTEGER"]'),"""
    f" range(len({_IDS}))::INTEGER[]))"
)
_VALID_AT = (
    "v.source = o.source AND v.model_id = o.model_id AND v.valid_from <= o.observed_at"
    " AND (v.valid_to IS NULL OR v.valid_to > o.observed_at)"
)


def _as_text(column: str, alias: str) -> str:
    if column in LIST_COLUMNS:
        return f"""array_to_string(from_json({alias}.{column}, '["VARCHAR"]'), ',')"""
    return f"CAST({alias}.{column} AS VARCHAR)"


def _differs(column: str) -> str:
    """Whether version `c`'s value differs from `p`'s, read from the stored table: a list
    is JSON text there, parsed only when the texts differ (equal lists written by two
    writers may be spelled differently)."""
    test = f"c.{column} IS DISTINCT FROM p.{column}"
    if column in LIST_COLUMNS:
        test += (
            f""" AND from_json(c.{column}, '["VARCHAR"]')"""
            f""" IS DISTINCT FROM from_json(p.{column}, '["VARCHAR"]')"""
        )
    return test


def _field_changes() -> str:
    parts = []
    for column in VALUE_COLUMNS:
        number = column in PRICE_COLUMNS or column in ("max_output", "context_length")
        old_num = f"CAST(p.{column} AS DOUBLE)" if number else "NULL::DOUBLE"
        new_num = f"CAST(c.{column} AS DOUBLE)" if number else "NULL::DOUBLE"
        parts.append(
            f"SELECT c.valid_from AS changed_at, c.source, c.model_id, 'changed' AS kind, "
            f"3 AS kind_order, '{column}' AS field, {_as_text(column, 'p')} AS old_value, "
            f"{_as_text(column, 'c')} AS new_value, {old_num} AS old_number, "
            f"{new_num} AS new_number FROM pairs c JOIN model_versions_stored p "
            f"ON p.source = c.source AND p.model_id = c.model_id AND p.valid_from = c.prev_from "
            f"WHERE {_differs(column)}"
        )
    return "\nUNION ALL ".join(parts)


VIEWS = (
    VERSIONS_VIEW
    + f"""
-- a fetch that applied a catalog is a snapshot: its log row says when and in which order
CREATE OR REPLACE VIEW snapshots AS
    SELECT fetch_id, source, fetched_at AS observed_at, content_hash, order_hash, models
    FROM fetch_log WHERE order_hash IS NOT NULL;

CREATE OR REPLACE MACRO catalog_as_of(src, ts) AS TABLE
    WITH s AS (
        SELECT source, order_hash, observed_at FROM snapshots
        WHERE source = src AND observed_at <= CAST(ts AS TIMESTAMP)
        ORDER BY observed_at DESC, fetch_id DESC LIMIT 1
    ),
    o AS (
        SELECT s.source, unnest({_IDS}) AS model_id,
               {_POSITIONS} AS position, s.observed_at
        FROM orders JOIN s USING (order_hash)
    )
    SELECT {_SELECT} FROM o JOIN model_versions v ON {_VALID_AT}
    ORDER BY o.position;

CREATE OR REPLACE VIEW snapshot_models AS
    WITH o AS (
        SELECT s.source, s.observed_at, unnest({_IDS}) AS model_id,
               {_POSITIONS} AS position
        FROM snapshots s JOIN orders USING (order_hash)
    )
    SELECT o.observed_at, {_SELECT} FROM o JOIN model_versions v ON {_VALID_AT};

CREATE OR REPLACE MACRO models_as_of(ts) AS TABLE
    WITH s AS (
        SELECT source, arg_max(order_hash, observed_at) AS order_hash,
               max(observed_at) AS observed_at
        FROM snapshots WHERE observed_at <= CAST(ts AS TIMESTAMP) GROUP BY source
    ),
    o AS (
        SELECT s.source, unnest({_IDS}) AS model_id,
               {_POSITIONS} AS position, s.observed_at
        FROM orders JOIN s USING (order_hash)
    )
    SELECT {_SELECT} FROM o JOIN model_versions v ON {_VALID_AT}
    ORDER BY o.source, o.position;

CREATE OR REPLACE VIEW current_models AS
    SELECT * FROM models_as_of(TIMESTAMP '9999-12-31');

CREATE OR REPLACE VIEW model_changes AS
    WITH pairs AS (
        SELECT *,
               lag(valid_from) OVER w AS prev_from,
               lag(valid_to) OVER w AS prev_to,
               lead(valid_from) OVER w AS next_from
        FROM model_versions_stored  -- lists as JSON text: parsed only where they changed
        WINDOW w AS (PARTITION BY source, model_id ORDER BY valid_from)
    ),
    events AS (
        SELECT valid_from AS changed_at, source, model_id, 'added' AS kind, 0 AS kind_order,
               NULL AS field, NULL AS old_value, NULL AS new_value,
               NULL::DOUBLE AS old_number, NULL::DOUBLE AS new_number
        FROM pairs WHERE prev_from IS NULL
        UNION ALL
        SELECT valid_to, source, model_id, 'removed', 1, NULL, NULL, NULL, NULL, NULL
        FROM pairs WHERE valid_to IS NOT NULL AND (next_from IS NULL OR next_from > valid_to)
        UNION ALL
        SELECT valid_from, source, model_id, 'returned', 2, NULL, NULL, NULL, NULL, NULL
        FROM pairs WHERE prev_to < valid_from
        UNION ALL {_field_changes()}
    )
    SELECT *, CASE WHEN old_number > 0 AND new_number IS NOT NULL
                   THEN round((new_number - old_number) / old_number * 100, 4) END AS pct_change
    FROM events;

CREATE OR REPLACE VIEW price_changes AS
    SELECT changed_at, source, model_id, field AS price, old_number AS old_price,
           new_number AS new_price, pct_change,
           CASE WHEN new_number < old_number THEN 'cut' WHEN new_number > old_number THEN 'rise'
                WHEN old_number IS NULL THEN 'priced' ELSE 'unpriced' END AS direction
    FROM model_changes
    WHERE kind = 'changed' AND field IN ({", ".join(repr(c) for c in PRICE_COLUMNS)});
"""
)

# -- cross-source comparison (issue 7) ------------------------------------------------------
# canonical_model_key(id) is the one definition of "the same model" across naming schemes
# (`gpt-4o`, `openai/gpt-4o`, `azure/gpt-4o-2024-08-06`); `pipeline.query.compare` calls it through
# SQL. Steps: lower-case; drop everything up to the last `/`; drop a `:free`-style suffix
# (from the first `:`); map `.` and `_` to `-`; drop a trailing date `-2024-08-06`,
# `-20240806` or `@20240806`. What does not match is listed in docs/sources.md.
COMPARE_COLUMNS = (
    "source",
    "model_id",
    "input_price",
    "output_price",
    "cache_read_price",
    "cache_write_price",
    "context_length",
    "max_output",
)
COMPARE_VIEWS = rf"""
CREATE OR REPLACE MACRO canonical_model_key(id) AS
    regexp_replace(
        regexp_replace(
            regexp_replace(regexp_replace(lower(id), '^.*/', ''), ':.*$', ''),
            '[._]', '-', 'g'),
        '[-@](\d{{4}}-\d{{2}}-\d{{2}}|\d{{8}})$', '');

CREATE OR REPLACE MACRO model_compare_as_of(ts) AS TABLE
    SELECT canonical_model_key(model_id) AS canonical_key, {", ".join(COMPARE_COLUMNS)}
    FROM models_as_of(ts)
    ORDER BY canonical_key, source, position;

CREATE OR REPLACE VIEW model_compare AS
    SELECT * FROM model_compare_as_of(TIMESTAMP '9999-12-31');
"""
VIEWS += COMPARE_VIEWS


DDL_HASH = hashlib.sha256((DDL + VIEWS).encode()).hexdigest()[:16]


def _migrate_orders(con: duckdb.DuckDBPyConnection) -> None:
    """A store made before orders were JSON text: its lists become JSON, in place."""
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE table_name = 'orders' AND database_name = current_database()"
        ).fetchall()
    )
    for column in ("model_ids", "positions"):
        if types.get(column, "VARCHAR") != "VARCHAR":
            con.execute(
                f"ALTER TABLE orders ALTER COLUMN {column} SET DATA TYPE VARCHAR "
                f"USING to_json({column})::VARCHAR"
            )


def _migrate_row_hash(con: duckdb.DuckDBPyConnection) -> None:
    """A store made when every version kept its digest: closed versions may drop it now
    (their digests stay until `compact` rewrites the table)."""
    nullable = con.execute(
        "SELECT is_nullable FROM duckdb_columns() WHERE table_name = 'model_versions_stored' "
        "AND column_name = 'row_hash' AND database_name = current_database()"
    ).fetchall()
    if nullable and not nullable[0][0]:
        con.execute("ALTER TABLE model_versions_stored ALTER COLUMN row_hash DROP NOT NULL")


def _migrate_versions(con: duckdb.DuckDBPyConnection) -> None:
    """A store made when `model_versions` was the table itself (list columns as lists):
    its rows move to `model_versions_stored`, lists as JSON text, and the name goes to the view."""
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'model_versions' "
        "AND table_catalog = current_database()"
    ).fetchall()
    if kind and kind[0][0] == "BASE TABLE":
        columns = [*VERSION_COLUMNS, "valid_from", "valid_to", "row_hash", "fetch_id"]
        values = [f"to_json({c})::VARCHAR" if c in LIST_COLUMNS else c for c in columns]
        con.execute(
            f"INSERT INTO model_versions_stored ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM model_versions"
        )
        con.execute("DROP TABLE model_versions")


def _migrate_snapshots(con: duckdb.DuckDBPyConnection) -> None:
    """A store made when snapshots were a table of their own (the same fetch id, source,
    time, body and count as the fetch's log row, plus the order): the order moves to the
    log row and the table gives way to the view."""
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = 'snapshots' "
        "AND table_catalog = current_database()"
    ).fetchall()
    if kind and kind[0][0] == "BASE TABLE":
        con.execute(
            "UPDATE fetch_log SET order_hash = s.order_hash FROM snapshots s "
            "WHERE fetch_log.fetch_id = s.fetch_id"
        )
        con.execute("DROP TABLE snapshots")


def ensure_schema(con: duckdb.DuckDBPyConnection, path: str, *, read_only: bool) -> None:
    """Create or refresh tables and views, unless this file already has this code's."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchall()[0][0]
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if found else {}
    version = meta.get("schema_version")
    if version is not None and int(version) != SCHEMA_VERSION:
        raise StoreError(
            f"database {path!r} has schema version {version}, "
            f"this modelwatch expects {SCHEMA_VERSION}"
        )
    if read_only:
        if not found:
            raise StoreError(f"database {path!r} holds no modelwatch history")
        if not con.execute(
            "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'model_compare_as_of'"
        ).fetchall()[0][0]:
            # an older modelwatch's file opened read-only: this connection's own macros
            con.execute(
                COMPARE_VIEWS.replace(
                    "CREATE OR REPLACE MACRO", "CREATE OR REPLACE TEMP MACRO"
                ).replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW")
            )
        return
    if meta.get("ddl_hash") == DDL_HASH:
        return
    con.execute("BEGIN")
    con.execute(DDL)
    _migrate_orders(con)
    _migrate_versions(con)
    _migrate_row_hash(con)
    _migrate_snapshots(con)
    con.execute(VIEWS)
    con.execute(
        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?), ('ddl_hash', ?)",
        [str(SCHEMA_VERSION), DDL_HASH],
    )
    con.execute("COMMIT")
