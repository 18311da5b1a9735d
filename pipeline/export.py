"""Parquet export of the history, so other engines (polars, Spark, pandas) can read it."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import BadInput
from pipeline.store import Store

TABLES = ("fetch_log", "raw_payloads", "model_versions", "orders", "snapshots", "quarantine")


def export_parquet(store: Store, directory: Path) -> dict[str, int]:
    """One `<table>.parquet` per history table; returns rows written per file."""
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"export target {str(directory)!r} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for table in TABLES:
        path = directory / f"{table}.parquet"
        store.con.execute(
            f"COPY (SELECT * FROM {table}) TO '{_quote(path)}' (FORMAT parquet, COMPRESSION zstd)"
        )
        written[str(path)] = store.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return written


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
