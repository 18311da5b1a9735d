"""Baseline: dlt's `scd2` merge into DuckDB, against `ingest`, on the same snapshots.

What a user might pick instead of modelwatch. Both get the first load and the next N
changed polls of the synthetic catalog, in one run: dlt's `pipeline.run` of each
snapshot's normalised rows (list columns joined, `position` and `row_hash` dropped so a
row changes only when its values do, types from `schemas.record`; parsed and normalised
beforehand, untimed, which flatters dlt), with `boundary_timestamp` = the poll's time and
`primary_key="model_id"` (no `merge_key`: an absent model is retired, as in modelwatch);
and `ingest` of the same bytes. dlt is optional: `pip install "dlt[duckdb]"`; its
folders live in the work folder, telemetry off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl

from bench import SOURCE, Log, Result
from bench import measure as m
from bench.ingest import measure_store
from bench.report import prefixed, row, version
from bench.synthetic import catalog_history
from pipeline.normalise import normalise_items
from schemas.record import FIELDS, LIST_COLUMNS

TARGET_RATIO = 20.0  # dlt scd2 ms per snapshot / modelwatch ms per snapshot, at least
NOT_INSTALLED = "dlt: not installed (pip install 'dlt[duckdb]')"
TABLE = "models"
DATASET = "catalog"
DROPPED = ("position", "row_hash")  # not values of a model: a moved row is not a change


def installed() -> str | None:
    """dlt's version when it can be imported, else None."""
    if importlib.util.find_spec("dlt") is None:
        return None
    return version("dlt") or "unknown"


def changed_snapshots(models: int, snapshots: int, seed: int) -> list[tuple[datetime, bytes]]:
    """The first load and the next `snapshots` polls whose body changed, in poll order."""
    out: list[tuple[datetime, bytes]] = []
    for fetched_at, body in catalog_history(models, (snapshots + 1) * 50, 0.01, 0.3, seed):
        if not out or body != out[-1][1]:
            out.append((fetched_at, body))
            if len(out) == snapshots + 1:
                break
    return out


def dlt_rows(body: bytes) -> list[dict[str, Any]]:
    """The normalised rows of a payload as dlt takes them: dicts, list columns joined."""
    frame = normalise_items(json.loads(body)["data"], source=SOURCE).frame
    frame = frame.drop([c for c in DROPPED if c in frame.columns]).with_columns(
        pl.col(c).list.join(",") for c in LIST_COLUMNS
    )
    return frame.to_dicts()


def dlt_columns() -> dict[str, dict[str, Any]]:
    """Column hints from `schemas.record.FIELDS`: no type is left to inference (a column
    that is all nulls in a load would otherwise not be created, with a warning per load)."""
    types = {pl.Int64: "bigint", pl.Float64: "double"}
    return {
        f.name: {"data_type": types.get(type(f.dtype), "text"), "nullable": f.name != "model_id"}
        for f in FIELDS
        if f.name not in DROPPED
    }


@contextlib.contextmanager
def _dlt_environment(workdir: Path) -> Iterator[None]:
    """dlt's data folder in the work folder, telemetry off, its logger quiet; restored after."""
    settings = {"DLT_DATA_DIR": str(workdir / "dlt-data"), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    settings["RUNTIME__LOG_LEVEL"] = "ERROR"
    with mock.patch.dict(os.environ, settings), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a third party's deprecations are not ours
        yield


def measure_dlt(history: list[tuple[datetime, bytes]], workdir: Path) -> dict[str, Any]:
    """Every snapshot through `pipeline.run` with scd2; ms per run, rows and bytes after."""
    for stale in ("dlt-data", "dlt-pipelines"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    db = m.fresh(workdir / "dlt.duckdb")
    with _dlt_environment(workdir):
        import dlt

        logging.getLogger("dlt").setLevel(logging.ERROR)
        pipeline = dlt.pipeline(
            pipeline_name="modelwatch_bench_scd2",
            destination=dlt.destinations.duckdb(str(db)),
            dataset_name=DATASET,
            pipelines_dir=str(workdir / "dlt-pipelines"),
        )
        columns = dlt_columns()
        prepare_ms: list[float] = []
        run_ms: list[float] = []
        started = time.perf_counter()
        for fetched_at, body in history:
            t0 = time.perf_counter()
            rows = dlt_rows(body)
            prepare_ms.append(m.ms(t0))
            t0 = time.perf_counter()
            pipeline.run(
                rows,
                table_name=TABLE,
                columns=columns,
                primary_key="model_id",
                write_disposition={
                    "disposition": "merge",
                    "strategy": "scd2",
                    "boundary_timestamp": fetched_at.replace(tzinfo=UTC),
                },
            )
            run_ms.append(m.ms(t0))
        seconds = time.perf_counter() - started
        version = dlt.__version__
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        versions, active = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE _dlt_valid_to IS NULL) FROM {DATASET}.{TABLE}"
        ).fetchall()[0]
    finally:
        con.close()
    return {
        "version": version,
        "first_ms": run_ms[0] if run_ms else None,
        "changed_ms": m.stats(run_ms[1:]),
        "prepare_ms": m.stats(prepare_ms),
        "seconds": seconds,
        "versions": int(versions),
        "models_now": int(active),
        **m.db_bytes(db),
    }


def run(params: dict[str, Any], workdir: Path, log: Log) -> Result:
    """Both loaders on the first load plus `snapshots` changed polls; dlt absent is a
    result (`not installed`), not an error."""
    if installed() is None:
        log(NOT_INSTALLED)
        return Result("not installed", reason=NOT_INSTALLED)
    c = {"seed": 0, **params}
    workdir.mkdir(parents=True, exist_ok=True)
    history = changed_snapshots(c["models"], c["snapshots"], c["seed"])
    log(f"  dlt: {len(history)} snapshots through dlt scd2 and through ingest")
    mw = measure_store(history, workdir / "dlt-baseline-store.duckdb", accept_mass_removal=False)
    dl = measure_dlt(history, workdir)
    d = {
        "config": c,
        "snapshots": len(history),
        "payload_bytes_mean": sum(len(b) for _, b in history) / len(history),
        "modelwatch": mw,
        "dlt": dl,
        "versions": mw["summary"]["versions"],
        "same_history": (dl["versions"], dl["models_now"])
        == (mw["summary"]["versions"], mw["summary"]["models_now"]),
    }
    changed, base = dl["changed_ms"], mw["changed_ms"]
    prepare = dl["prepare_ms"]["median"]
    r = prefixed("dlt scd2")
    return Result(
        "ok",
        [
            r(
                f" `pipeline.run`, ms per changed snapshot, median ({changed['count']})",
                changed["median"],
                "ms",
                base["median"],
                "modelwatch `ingest`, median",
                f">= {TARGET_RATIO:g}x modelwatch",
                m.at_least(m.ratio(changed["median"], base["median"]), TARGET_RATIO),
                headline=True,
            ),
            r(", p95", changed["p95"], "ms", base["p95"], "modelwatch, p95"),
            r(
                " incl. parse + normalise (untimed above), median",
                None
                if changed["median"] is None or prepare is None
                else changed["median"] + prepare,
                "ms",
                base["median"],
                "modelwatch, median",
            ),
            r(", first load", dl["first_ms"], "ms", mw["initial_ms"], "modelwatch, first load"),
            row("dlt DuckDB file", dl["bytes"], "B", mw["bytes"], "modelwatch store file"),
            row(
                "model versions stored (dlt rows)",
                dl["versions"],
                "rows",
                d["versions"],
                "modelwatch",
            ),
        ],
        d,
    )
