"""Baseline: dlt's `scd2` merge into DuckDB, against `Store.ingest`, on the same snapshots.

What a user might pick instead of modelwatch: load each poll's rows with dlt
(`write_disposition={"disposition": "merge", "strategy": "scd2"}`), which keeps a type-2
history keyed by a hash of each row. Both sides get the same snapshots of the synthetic
1,000-model catalog (its first N changed polls, after the first load), in one run:

    dlt         `pipeline.run` of the snapshot's normalised rows (`normalise_items(...).frame`:
                the list columns joined to strings, `position` and `row_hash` dropped so a
                row changes only when its values do, column types from `schemas.record`),
                timed per snapshot; parsing and normalising are done beforehand, untimed,
                which flatters dlt
    modelwatch  `Store.ingest` of the same payload bytes (parse, normalise, archive, apply)

Each scd2 load sets `boundary_timestamp` to the poll's time, and `primary_key="model_id"`;
no `merge_key`, so a model absent from a snapshot is retired, as in modelwatch (with a
`merge_key`, dlt only retires rows whose key is in the load). dlt is an optional bench-only
dependency: `pip install "dlt[duckdb]"`. Its pipelines folder, data folder and DuckDB file
live in the work folder; telemetry is off.

    python -m bench.dlt_baseline [--models 1000] [--snapshots 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bench import report
from bench.ingest import _fresh, _ms, _stats, db_bytes
from bench.synthetic import catalog_history
from pipeline.normalise import normalise_items
from pipeline.store import Store
from schemas.record import FIELDS, LIST_COLUMNS
from pipeline.ingest import ingest

SOURCE = "aihubmix"
TARGET_RATIO = 20.0  # dlt scd2 ms per snapshot / modelwatch ms per snapshot, at least
NOT_INSTALLED = "dlt: not installed (pip install 'dlt[duckdb]')"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TABLE = "models"
DATASET = "catalog"
DROPPED = ("position", "row_hash")  # not values of a model: a moved row is not a change


def installed() -> str | None:
    """dlt's version when it can be imported, else None."""
    if importlib.util.find_spec("dlt") is None:
        return None
    return report.version("dlt") or "unknown"


def changed_snapshots(
    models: int,
    snapshots: int,
    *,
    seed: int = 0,
    change_rate: float = 0.01,
    changed_poll_share: float = 0.3,
) -> list[tuple[datetime, bytes]]:
    """The first load and the next `snapshots` polls whose body changed, in poll order."""
    out: list[tuple[datetime, bytes]] = []
    previous: bytes | None = None
    polls = catalog_history(models, (snapshots + 1) * 50, change_rate, changed_poll_share, seed)
    for fetched_at, body in polls:
        if body != previous:
            out.append((fetched_at, body))
            previous = body
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
    settings = {
        "DLT_DATA_DIR": str(workdir / "dlt-data"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__LOG_LEVEL": "ERROR",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a third party's deprecations are not ours
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure_dlt(history: list[tuple[datetime, bytes]], workdir: Path) -> dict[str, Any]:
    """Every snapshot through `pipeline.run` with scd2; ms per run, rows and bytes after."""
    for stale in ("dlt-data", "dlt-pipelines"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    db = _fresh(workdir / "dlt.duckdb")
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
            prepare_ms.append(_ms(t0))
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
            run_ms.append(_ms(t0))
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
        "changed_ms": _stats(run_ms[1:]),
        "prepare_ms": _stats(prepare_ms),
        "seconds": seconds,
        "versions": int(versions),
        "models_now": int(active),
        **db_bytes(db),
    }


def measure_modelwatch(history: list[tuple[datetime, bytes]], path: Path) -> dict[str, Any]:
    """The same payloads through `Store.ingest`: ms per call."""
    _fresh(path)
    times: list[float] = []
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    with Store.open(path) as store:
        for fetched_at, body in history:
            t0 = time.perf_counter()
            result = ingest(store, body, source=SOURCE, fetched_at=fetched_at)
            times.append(_ms(t0))
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        summary = store.summary()
    return {
        "first_ms": times[0] if times else None,
        "changed_ms": _stats(times[1:]),
        "seconds": time.perf_counter() - started,
        "outcomes": outcomes,
        "versions": summary["versions"],
        "models_now": summary["models_now"],
        **db_bytes(path),
    }


def run(*, workdir: Path, models: int = 1000, snapshots: int = 30, seed: int = 0) -> dict[str, Any]:
    """Both loaders on the first load plus `snapshots` changed polls; dlt absent is a result
    (`available: False`), not an error."""
    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"models": models, "snapshots": snapshots, "seed": seed}
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "config": config,
    }
    if installed() is None:
        return {
            **result,
            "available": False,
            "reason": NOT_INSTALLED,
            "rows": [],
            "elapsed_seconds": time.perf_counter() - started,
        }
    history = changed_snapshots(models, snapshots, seed=seed)
    mw = measure_modelwatch(history, workdir / "dlt-baseline-store.duckdb")
    dl = measure_dlt(history, workdir)
    ratio = report.ratio(dl["changed_ms"]["median"], mw["changed_ms"]["median"])
    result.update(
        {
            "available": True,
            "snapshots": len(history),
            "payload_bytes_mean": sum(len(b) for _, b in history) / len(history),
            "modelwatch": mw,
            "dlt": dl,
            "ratios": {
                "dlt_vs_modelwatch_changed_ms": ratio,
                "dlt_vs_modelwatch_first_ms": report.ratio(dl["first_ms"], mw["first_ms"]),
                "dlt_with_prepare_vs_modelwatch_changed_ms": report.ratio(
                    _sum_medians(dl["changed_ms"], dl["prepare_ms"]), mw["changed_ms"]["median"]
                ),
                "dlt_vs_modelwatch_bytes": report.ratio(dl["bytes"], mw["bytes"]),
            },
            "same_history": dl["versions"] == mw["versions"]
            and dl["models_now"] == mw["models_now"],
            "met": {
                "dlt_vs_modelwatch_changed_ms": None if ratio is None else ratio >= TARGET_RATIO
            },
        }
    )
    result["rows"] = rows(result)
    result["elapsed_seconds"] = time.perf_counter() - started
    return result


def _sum_medians(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a["median"] is None or b["median"] is None:
        return None
    return a["median"] + b["median"]


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    dl, mw = result["dlt"], result["modelwatch"]
    n = dl["changed_ms"]["count"]
    return [
        report.row(
            f"dlt scd2 `pipeline.run`, ms per changed snapshot, median ({n})",
            dl["changed_ms"]["median"],
            "ms",
            mw["changed_ms"]["median"],
            "modelwatch `Store.ingest`, median",
            f">= {TARGET_RATIO:g}x modelwatch",
            result["met"]["dlt_vs_modelwatch_changed_ms"],
        ),
        report.row(
            "dlt scd2, p95",
            dl["changed_ms"]["p95"],
            "ms",
            mw["changed_ms"]["p95"],
            "modelwatch, p95",
        ),
        report.row(
            "dlt scd2 incl. parse + normalise (untimed above), median",
            _sum_medians(dl["changed_ms"], dl["prepare_ms"]),
            "ms",
            mw["changed_ms"]["median"],
            "modelwatch, median",
        ),
        report.row(
            "dlt scd2, first load", dl["first_ms"], "ms", mw["first_ms"], "modelwatch, first load"
        ),
        report.row("dlt DuckDB file", dl["bytes"], "B", mw["bytes"], "modelwatch store file"),
        report.row(
            "model versions stored (dlt rows)",
            dl["versions"],
            "rows",
            mw["versions"],
            "modelwatch model_versions",
        ),
    ]


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    if not result["available"]:
        return f"# dlt scd2 baseline\n\n{result['reason']}\n"
    dl = result["dlt"]
    return (
        "\n\n".join(
            [
                "# dlt scd2 baseline",
                (
                    f"The first load and {result['snapshots'] - 1} changed polls of the synthetic "
                    f"{c['models']}-model catalog (seed {c['seed']}, "
                    f"{result['payload_bytes_mean'] / 1024:,.0f} KiB per payload), loaded by dlt "
                    f'{dl["version"]} (`merge`/`scd2` into DuckDB, `primary_key="model_id"`, '
                    "`boundary_timestamp` = poll time) and by `Store.ingest`, in the same run. "
                    f"Both keep the same history: {result['same_history']} "
                    f"({dl['versions']:,} versions, {dl['models_now']:,} models now)."
                ),
                report.table(result["rows"]),
                f"{report.machine_line(result['machine'])} Run took {result['elapsed_seconds']:.0f} s.",
                "dlt's time is `pipeline.run` alone (extract, normalise, load into DuckDB): the rows "
                "are parsed and normalised beforehand, untimed; modelwatch's includes parsing, "
                "normalising, the raw archive and the fetch log. Times are never asserted.",
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dlt_baseline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=30, help="changed polls to load")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where dlt's folders and the databases go (default: a temp folder)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-dlt-") as tmp:
        result = run(
            workdir=args.workdir or Path(tmp),
            models=args.models,
            snapshots=args.snapshots,
            seed=args.seed,
        )
    text = markdown(result)
    print(text)
    json_path, md_path = report.write(args.out, "dlt", result, text)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
