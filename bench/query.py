"""`python -m bench.query`: the query benchmark (issue 3, "Measure").

On a synthetic year of 5-minute polls of 1,000 models with a few changes a day it measures:

    models     `pipeline.query.models` (as-of + filter + sort) at random instants of the year,
               in process on a warm connection; baselines: the same filter and sort by polars
               on an already materialised catalog (the floor), and a naive "append every row
               of every snapshot" table queried with `observed_at = (SELECT max(..) <= t)`
    changes    `pipeline.query.changes` over the 90 days before a random instant; baselines:
               reading the versions opened or closed in the window (the floor), and a naive
               change detection (lag over every snapshot row) on the append-everything table
    cli        wall time of a cold `modelwatch models --format json --type llm`; baselines:
               `python -c pass` and `python -c "import duckdb, polars"` in the same run

Times are reported, never asserted: each comes with a baseline from the same run and the
ratio between them. The built store (and the naive table) are cached in the work folder,
keyed by the build parameters, and rebuilt when absent.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from bench import report
from pipeline.ingest import ingest
from bench.report import ms as _ms
from bench.report import ratio as _ratio
from bench.report import stats as _stats
from bench.synthetic import START, catalog_history
from pipeline import query
from pipeline.store import Store
from schemas.record import SCHEMA

SOURCE = "aihubmix"
BUILD_VERSION = 1  # bump when the recipe below changes: cached stores are then rebuilt
TARGETS = {"models_ms": 20.0, "cli_s": 0.6}
MODELS_PER_CHANGE = 3  # a changed poll changes 1-5 models (bench.synthetic: mean * U(0.5, 1.5))
CHANGES_WINDOW = timedelta(days=90)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_WORKDIR = DEFAULT_OUT / "query-work"

# realistic `/api/v1/models` questions: a filtered, price-sorted list and a fuzzy id search
COMBOS: dict[str, dict[str, str]] = {
    "llm+tools, by price desc": {
        "type": "llm",
        "features": "tools",
        "sort_by": "model_ratio",
        "sort_order": "desc",
    },
    "fuzzy model='claude sonnet'": {"model": "claude sonnet"},
}
HEADLINE = "llm+tools, by price desc"


# -- small helpers -----------------------------------------------------------------------


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}.wal")):
        if p.exists():
            p.unlink()


def _file_bytes(path: Path) -> int:
    wal = Path(f"{path}.wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


# -- building the year -------------------------------------------------------------------
def _config(
    models: int, days: int, polls_per_day: int, changes_per_day: int, seed: int
) -> dict[str, Any]:
    return {
        "models": models,
        "days": days,
        "polls_per_day": polls_per_day,
        "changes_per_day": changes_per_day,
        "seed": seed,
        "polls": days * polls_per_day,
        "build_version": BUILD_VERSION,
    }


def _paths(workdir: Path, config: dict[str, Any]) -> tuple[Path, Path, Path]:
    key = (
        f"{config['models']}m-{config['days']}d-{config['polls_per_day']}p-"
        f"{config['changes_per_day']}c-s{config['seed']}-v{BUILD_VERSION}"
    )
    return (
        workdir / f"query-{key}.duckdb",
        workdir / f"query-{key}-naive.duckdb",
        workdir / f"query-{key}.json",
    )


def build_store(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Write the synthetic year into a fresh store at `path`.

    Only the polls whose body changed go through `Store.ingest` (as a real poller's would:
    parse, normalise, archive, apply). The ~104k unchanged polls are then written as
    `fetch_log` rows with one INSERT ... SELECT: the shortcut is that they skip `ingest`'s
    duplicate check and hashing (an unchanged poll is only a fetch_log row anyway), their
    fetch_ids come after those of the changed polls rather than in time order, and
    `http_status`/`models`/`content_hash` are copied from the snapshot in force (ASOF JOIN).
    """
    _remove(path)
    polls = config["polls"]
    spacing = timedelta(days=1) / config["polls_per_day"]
    share = min(1.0, config["changes_per_day"] / config["polls_per_day"])
    rate = MODELS_PER_CHANGE / config["models"]
    started = time.perf_counter()
    ingest_ms: list[float] = []
    outcomes: dict[str, int] = {}
    previous: bytes | None = None
    with Store.open(path) as store:
        history = catalog_history(config["models"], polls, rate, share, config["seed"])
        for index, (_, body) in enumerate(history):
            if body == previous:  # an unchanged poll: bulk-logged below
                continue
            previous = body
            t0 = time.perf_counter()
            result = ingest(
                store,
                body,
                source=SOURCE,
                fetched_at=START + index * spacing,
                accept_mass_removal=True,
            )
            ingest_ms.append(_ms(t0))
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        ingest_s = time.perf_counter() - started
        t0 = time.perf_counter()
        store.execute(
            """INSERT INTO fetch_log (source, url, fetched_at, http_status, content_hash,
                   outcome, models)
               WITH polls AS (
                   SELECT $start + to_microseconds(range * $us) AS fetched_at
                   FROM range(0, $polls)
               )
               SELECT $src, 'synthetic:bulk', p.fetched_at, 200, s.content_hash, 'unchanged',
                      s.models
               FROM polls p
               ASOF JOIN (SELECT * FROM snapshots WHERE source = $src) s
                   ON p.fetched_at >= s.observed_at
               WHERE p.fetched_at NOT IN (SELECT fetched_at FROM fetch_log WHERE source = $src)
               ORDER BY p.fetched_at""",
            {
                "start": START,
                "us": spacing // timedelta(microseconds=1),
                "polls": polls,
                "src": SOURCE,
            },
        )
        bulk_s = time.perf_counter() - t0
        store.execute("CHECKPOINT")
        summary = store.summary()
    return {
        "seconds": time.perf_counter() - started,
        "ingest_seconds": ingest_s,
        "bulk_insert_seconds": bulk_s,
        "ingest_ms": _stats(ingest_ms),
        "ingested_polls": len(ingest_ms),
        "ingest_outcomes": outcomes,
        "bytes": _file_bytes(path),
        "summary": {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in summary.items()
        },
    }


def build_naive(store_path: Path, naive_path: Path) -> dict[str, Any]:
    """The "append everything" layout: every row of every applied snapshot, in one table.

    It flatters the naive approach: a real append-everything poller also writes the
    unchanged polls (~100x more rows); only the snapshots that changed are kept here.
    """
    _remove(naive_path)
    started = time.perf_counter()
    con = duckdb.connect(str(store_path))  # a read-only one could not attach for writing
    try:
        con.execute(f"ATTACH '{naive_path}' AS naive")
        con.execute(
            "CREATE TABLE naive.main.snapshot_rows AS SELECT * FROM snapshot_models "
            "ORDER BY observed_at, source, position"
        )  # append order
        rows = con.execute("SELECT count(*) FROM naive.main.snapshot_rows").fetchall()[0][0]
        con.execute("DETACH naive")
    finally:
        con.close()
    return {
        "seconds": time.perf_counter() - started,
        "rows": int(rows),
        "bytes": _file_bytes(naive_path),
    }


def ensure_built(
    workdir: Path, config: dict[str, Any], *, rebuild: bool = False
) -> tuple[Path, Path, dict[str, Any]]:
    """The cached store and naive table for `config`, building them when absent."""
    workdir.mkdir(parents=True, exist_ok=True)
    store_path, naive_path, meta_path = _paths(workdir, config)
    if not rebuild and meta_path.exists() and store_path.exists() and naive_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("config") == config:
            meta["cached"] = True
            return store_path, naive_path, meta
    meta_path.unlink(missing_ok=True)  # written last: a partial build is rebuilt
    meta = {
        "config": config,
        "store": build_store(store_path, config),
        "naive": build_naive(store_path, naive_path),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    meta["cached"] = False
    return store_path, naive_path, meta


# -- measurements ------------------------------------------------------------------------
def _year(store: Store) -> tuple[datetime, datetime]:
    first, last = store.execute(
        "SELECT min(fetched_at), max(fetched_at) FROM fetch_log WHERE source = ?", [SOURCE]
    )[0]
    return first, last


def _instants(rng: random.Random, start: datetime, end: datetime, n: int) -> list[datetime]:
    span = (end - start).total_seconds()
    return [start + timedelta(seconds=round(rng.uniform(0, span))) for _ in range(n)]


NAIVE_AS_OF = """
    SELECT * EXCLUDE (observed_at) FROM snapshot_rows
    WHERE source = $src
      AND observed_at = (SELECT max(observed_at) FROM snapshot_rows
                         WHERE source = $src AND observed_at <= $ts)
    ORDER BY position"""


def naive_models(con: duckdb.DuckDBPyConnection, as_of: datetime, **params: str) -> pl.DataFrame:
    """Baseline: as-of on the append-everything table, then the same filter and sort."""
    frame = con.sql(NAIVE_AS_OF, params={"src": SOURCE, "ts": as_of}).pl()
    frame = frame.cast(SCHEMA) if frame.height else pl.DataFrame(schema=SCHEMA)
    return query.apply_query(frame, query.parse_query(frame, **params))


def measure_models(
    store: Store,
    naive: duckdb.DuckDBPyConnection,
    instants: list[datetime],
    params: dict[str, str],
    *,
    warmup: int = 5,
) -> dict[str, Any]:
    """Per instant: the full `query.models`, and apart its as-of and its filter+sort."""
    full: list[float] = []
    as_of: list[float] = []
    floor: list[float] = []
    naive_ms: list[float] = []
    rows: list[int] = []
    agree = True
    for i, at in enumerate(instants[:warmup] + instants):
        t0 = time.perf_counter()
        result = query.models(store, source=SOURCE, as_of=at, **params)
        t_full = _ms(t0)
        t0 = time.perf_counter()
        frame = store.catalog_as_of(SOURCE, at)
        t_as_of = _ms(t0)
        t0 = time.perf_counter()
        query.apply_query(frame, query.parse_query(frame, **params))
        t_floor = _ms(t0)
        t0 = time.perf_counter()
        baseline = naive_models(naive, at, **params)
        t_naive = _ms(t0)
        if i < warmup:
            continue
        full.append(t_full)
        as_of.append(t_as_of)
        floor.append(t_floor)
        naive_ms.append(t_naive)
        rows.append(result.height)
        agree = agree and result.equals(baseline)
    return {
        "params": params,
        "ms": _stats(full),
        "as_of_ms": _stats(as_of),
        "floor_ms": _stats(floor),
        "naive_ms": _stats(naive_ms),
        "rows": _stats(rows),
        "agrees_with_naive": agree,
    }


CHANGES_FLOOR = """
    SELECT * FROM model_versions
    WHERE source = $src AND ((valid_from > $since AND valid_from <= $until)
                             OR (valid_to > $since AND valid_to <= $until))"""

# every snapshot row compared with the same model's row in the snapshot before (a hash of
# its values); additions and removals are not even derived: a lower bound of naive work
NAIVE_CHANGES = """
    WITH r AS (
        SELECT observed_at, model_id,
               hash(description, types, features, input_modalities, max_output,
                    context_length, input_price, output_price, cache_read_price,
                    cache_write_price, extra) AS h
        FROM snapshot_rows WHERE source = $src AND observed_at <= $until
    ), d AS (
        SELECT *, lag(h) OVER (PARTITION BY model_id ORDER BY observed_at) AS prev
        FROM r
    )
    SELECT observed_at, model_id FROM d
    WHERE observed_at > $since AND prev IS DISTINCT FROM h
    ORDER BY observed_at, model_id"""


def measure_changes(
    store: Store,
    naive: duckdb.DuckDBPyConnection,
    instants: list[datetime],
    *,
    naive_repeats: int,
    warmup: int = 2,
) -> dict[str, Any]:
    ms: list[float] = []
    floor: list[float] = []
    naive_ms: list[float] = []
    rows: list[int] = []
    naive_rows: list[int] = []
    for i, until in enumerate(instants[:warmup] + instants):
        since = until - CHANGES_WINDOW
        t0 = time.perf_counter()
        frame = query.changes(store, since=since, until=until)
        t_changes = _ms(t0)
        t0 = time.perf_counter()
        store.frame(CHANGES_FLOOR, {"src": SOURCE, "since": since, "until": until})
        t_floor = _ms(t0)
        if i < warmup:
            continue
        ms.append(t_changes)
        floor.append(t_floor)
        rows.append(frame.height)
        if len(naive_ms) < naive_repeats:
            t0 = time.perf_counter()
            found = naive.sql(
                NAIVE_CHANGES, params={"src": SOURCE, "since": since, "until": until}
            ).pl()
            naive_ms.append(_ms(t0))
            naive_rows.append(found.height)
    return {
        "window_days": CHANGES_WINDOW.days,
        "ms": _stats(ms),
        "floor_ms": _stats(floor),
        "naive_ms": _stats(naive_ms),
        "rows": _stats(rows),
        "naive_rows": _stats(naive_rows),
    }


def cli_command() -> tuple[list[str], str]:
    """The `modelwatch` console script: the installed one next to this Python (a pyenv or
    asdf shim on PATH adds its own shell start-up), else the one on PATH, else
    `python -c "from pipeline.cli import main; main()"`."""
    name = "modelwatch.exe" if os.name == "nt" else "modelwatch"
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], str(beside)
    found = shutil.which("modelwatch")
    if found:
        return [found], found
    return [sys.executable, "-c", "from pipeline.cli import main; main()"], "python -c main()"


def _wall(argv: list[str], runs: int, *, check_output: bool = False) -> dict[str, Any]:
    """Wall time (s) of `runs` fresh processes, after one untimed run (page cache, .pyc)."""
    # let the untimed run write .pyc files, as an installed package has them (any value of
    # PYTHONDONTWRITEBYTECODE, even "0", stops that)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: list[float] = []
    out = b""
    for i in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env=env, timeout=120)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"{argv!r} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}"
            )
        if i == 0:
            out = proc.stdout
            continue
        times.append(elapsed)
    result = {"s": _stats(times), "argv": argv}
    if check_output:
        doc = json.loads(out)
        result["models_printed"] = len(doc["data"])
        result["stdout_bytes"] = len(out)
    return result


def measure_cli(store_path: Path, runs: int) -> dict[str, Any]:
    """A cold `modelwatch models --format json --type llm`, and Python start-up baselines."""
    base, name = cli_command()
    args = ["models", "--db", str(store_path), "--format", "json", "--type", "llm"]
    py = sys.executable
    result = {
        "command": name,
        "cli": _wall([*base, *args], runs, check_output=True),
        "python_pass": _wall([py, "-c", "pass"], runs),
        "import_duckdb_polars": _wall([py, "-c", "import duckdb, polars"], runs),
        "import_cli": _wall([py, "-c", "import pipeline.cli"], runs),
    }
    on_path = shutil.which("modelwatch")
    if on_path and on_path != base[0]:  # e.g. a pyenv shim: what a shell user really runs
        result["on_path"] = {
            "command": on_path,
            **_wall([on_path, *args], max(3, runs // 2), check_output=True),
        }
    return result


# -- profiles (optional) -----------------------------------------------------------------
def profile_models(
    store: Store, instants: list[datetime], params: dict[str, str], *, top: int = 20
) -> str:
    """cProfile of `query.models` over `instants`, and one EXPLAIN ANALYZE of the macro."""
    profiler = cProfile.Profile()
    profiler.enable()
    for at in instants:
        query.models(store, source=SOURCE, as_of=at, **params)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    plan = store.execute(
        "EXPLAIN ANALYZE SELECT * FROM catalog_as_of($src, $ts)", {"src": SOURCE, "ts": instants[0]}
    )
    text = plan[0][1] if plan and len(plan[0]) > 1 else str(plan)
    total = next((line.strip(" │") for line in text.splitlines() if "Total Time" in line), "?")
    out.write(f"\nEXPLAIN ANALYZE of catalog_as_of(...): {total}\n")
    return out.getvalue()


def profile_cli_imports(top: int = 15) -> str:
    """`python -X importtime -c "import pipeline.cli"`: the slowest imports (cumulative)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pipeline.cli"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue  # the header line
        self_us, cumulative_us, name = (p.strip() for p in line.split(":", 1)[1].split("|"))
        rows.append((int(cumulative_us), int(self_us), name))
    rows.sort(reverse=True)
    lines = [f"{c / 1000:9.1f} ms cumulative {s / 1000:8.1f} ms self  {n}" for c, s, n in rows]
    return "\n".join(lines[:top])


_STAGES = r"""
import sys, time
marks = [("", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import duckdb, polars
mark("import duckdb + polars")
import typer, rich.console
mark("import typer + rich")
import pipeline.cli
mark("import the rest of pipeline.cli")
import typer._adapters
mark("typer._adapters (pydantic), imported on first parse")
from pipeline.store import Store
from pipeline import query, timeutil
from pipeline.query import render
store = Store.open(sys.argv[1])
mark("Store.open (connect + schema/views rewrite)")
frame = store.catalog_as_of("aihubmix", timeutil.utcnow())
mark("store.catalog_as_of (first .pl())")
result = query.apply_query(frame, query.parse_query(frame, type="llm"))
mark("parse_query + apply_query")
store.close()
mark("Store.close")
render.catalog_body(result)
mark("render.catalog_body")
for (_, a), (name, b) in zip(marks, marks[1:]):
    print(f"{(b - a) * 1000:.1f}\t{name}")
"""


def profile_cli_stages(store_path: Path, runs: int = 5) -> str:
    """The cold `models --format json --type llm` path, stage by stage in a fresh process
    (no profiler overhead): median ms per stage over `runs` processes."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    per_stage: dict[str, list[float]] = {}
    for _ in range(runs + 1):
        proc = subprocess.run(
            [sys.executable, "-c", _STAGES, str(store_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        for line in proc.stdout.splitlines():
            ms, name = line.split("\t", 1)
            per_stage.setdefault(name, []).append(float(ms))
    medians = {name: statistics.median(v[1:]) for name, v in per_stage.items()}
    lines = [f"{ms:8.1f} ms  {name}" for name, ms in medians.items()]
    lines.append(f"{sum(medians.values()):8.1f} ms  total after interpreter start-up")
    return "\n".join(lines)


# -- the whole run -----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return report.machine()


def _row(
    figure: str,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    met: bool | None = None,
) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": _ratio(value, baseline),
        "target": target,
        "met": met,
    }


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    target_ms = f"<= {TARGETS['models_ms']:g} ms"
    for name, m in result["models"].items():
        head = name == HEADLINE
        for stat in ("median", "p95"):
            value = m["ms"][stat]
            rows.append(
                _row(
                    f"models [{name}] as-of+filter+sort, {stat}",
                    value,
                    "ms",
                    m["floor_ms"][stat],
                    f"polars filter+sort of a ready frame, {stat}",
                    target_ms if head and stat == "median" else "",
                    value <= TARGETS["models_ms"] if head and stat == "median" else None,
                )
            )
        rows.append(
            _row(
                f"models [{name}] vs naive append-everything, median",
                m["ms"]["median"],
                "ms",
                m["naive_ms"]["median"],
                "naive as-of + same filter+sort, median",
            )
        )
        rows.append(
            _row(
                f"models [{name}]: of which `catalog_as_of` (macro + .pl() + cast)",
                m["as_of_ms"]["median"],
                "ms",
                m["ms"]["median"],
                "full call, median",
            )
        )
    c = result["changes"]
    rows += [
        _row(
            f"changes over {c['window_days']} days, median (~{c['rows']['median']:.0f} rows)",
            c["ms"]["median"],
            "ms",
            c["floor_ms"]["median"],
            "read versions in window, median",
        ),
        _row(
            f"changes over {c['window_days']} days, p95",
            c["ms"]["p95"],
            "ms",
            c["floor_ms"]["p95"],
            "read versions in window, p95",
        ),
        _row(
            f"changes over {c['window_days']} days vs naive lag diff, median",
            c["ms"]["median"],
            "ms",
            c["naive_ms"]["median"],
            f"naive lag over snapshot rows, median of {c['naive_ms']['count']}",
        ),
    ]
    cli = result["cli"]
    if cli is not None:
        median = cli["cli"]["s"]["median"]
        target_s = f"<= {TARGETS['cli_s']:g} s"
        rows += [
            _row(
                f"cold `modelwatch models --format json --type llm`, median "
                f"({cli['cli']['s']['count']} runs)",
                median,
                "s",
                cli["python_pass"]["s"]["median"],
                "python -c pass",
                target_s,
                median <= TARGETS["cli_s"],
            ),
            _row(
                "cold CLI vs importing duckdb+polars",
                median,
                "s",
                cli["import_duckdb_polars"]["s"]["median"],
                "python -c 'import duckdb, polars'",
            ),
            _row(
                "cold CLI vs importing pipeline.cli",
                median,
                "s",
                cli["import_cli"]["s"]["median"],
                "python -c 'import pipeline.cli'",
            ),
            _row("cold CLI, p95", cli["cli"]["s"]["p95"], "s"),
        ]
        if "on_path" in cli:
            rows.append(
                _row(
                    f"cold CLI via {cli['on_path']['command']} (PATH), median",
                    cli["on_path"]["s"]["median"],
                    "s",
                    median,
                    "console script",
                )
            )
    return rows


def run(
    *,
    workdir: Path,
    models: int = 1000,
    days: int = 365,
    polls_per_day: int = 288,
    changes_per_day: int = 3,
    seed: int = 0,
    repeats: int = 200,
    changes_repeats: int = 50,
    naive_changes_repeats: int = 10,
    cli_runs: int = 10,
    rebuild: bool = False,
    profile: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the synthetic year in `workdir` and measure; returns every figure,
    its baselines, the ratios, the targets and whether they are `met` (by the median)."""
    started = time.perf_counter()
    workdir = Path(workdir)
    config = _config(models, days, polls_per_day, changes_per_day, seed)
    store_path, naive_path, build = ensure_built(workdir, config, rebuild=rebuild)
    rng = random.Random(seed)
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            **config,
            "repeats": repeats,
            "changes_repeats": changes_repeats,
            "cli_runs": cli_runs,
        },
        "targets": dict(TARGETS),
        "build": build,
        "paths": {"store": str(store_path), "naive": str(naive_path)},
    }
    naive = duckdb.connect(str(naive_path), read_only=True)
    try:
        with Store.open(store_path) as store:
            first, last = _year(store)
            instants = _instants(rng, first, last, repeats)
            result["models"] = {
                name: measure_models(store, naive, instants, params)
                for name, params in COMBOS.items()
            }
            window_start = min(first + CHANGES_WINDOW, last)
            result["changes"] = measure_changes(
                store,
                naive,
                _instants(rng, window_start, last, changes_repeats),
                naive_repeats=naive_changes_repeats,
            )
            if profile:
                result["profile"] = {
                    "models": profile_models(store, instants[:100], COMBOS[HEADLINE])
                }
    finally:
        naive.close()
    # the CLI opens the store itself: ours is closed above (DuckDB allows one writer)
    result["cli"] = measure_cli(store_path, cli_runs) if cli_runs > 0 else None
    if profile:
        result["profile"]["cli_imports"] = profile_cli_imports()
        result["profile"]["cli_stages"] = profile_cli_stages(store_path)
    head = result["models"][HEADLINE]
    cli = result["cli"]
    cli_median = cli["cli"]["s"]["median"] if cli else None
    result["figures"] = {
        "models_ms_median": head["ms"]["median"],
        "models_ms_p95": head["ms"]["p95"],
        "changes_ms_median": result["changes"]["ms"]["median"],
        "changes_ms_p95": result["changes"]["ms"]["p95"],
        "changes_rows_median": result["changes"]["rows"]["median"],
        "cli_s_median": cli_median,
    }
    result["baselines"] = {
        "models_floor_ms_median": head["floor_ms"]["median"],
        "models_naive_ms_median": head["naive_ms"]["median"],
        "changes_floor_ms_median": result["changes"]["floor_ms"]["median"],
        "changes_naive_ms_median": result["changes"]["naive_ms"]["median"],
        "python_pass_s_median": cli["python_pass"]["s"]["median"] if cli else None,
        "import_duckdb_polars_s_median": (
            cli["import_duckdb_polars"]["s"]["median"] if cli else None
        ),
    }
    b = result["baselines"]
    f = result["figures"]
    result["ratios"] = {
        "models_vs_floor": _ratio(f["models_ms_median"], b["models_floor_ms_median"]),
        "models_vs_naive": _ratio(f["models_ms_median"], b["models_naive_ms_median"]),
        "changes_vs_floor": _ratio(f["changes_ms_median"], b["changes_floor_ms_median"]),
        "changes_vs_naive": _ratio(f["changes_ms_median"], b["changes_naive_ms_median"]),
        "cli_vs_python_pass": _ratio(cli_median, b["python_pass_s_median"]),
        "cli_vs_import_duckdb_polars": _ratio(cli_median, b["import_duckdb_polars_s_median"]),
    }
    result["met"] = {
        "models_ms": f["models_ms_median"] <= TARGETS["models_ms"],
        "cli_s": None if cli_median is None else cli_median <= TARGETS["cli_s"],
    }
    result["rows"] = _rows(result)
    result["elapsed_seconds"] = time.perf_counter() - started
    return result


# -- printing ----------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    return report.table(rows)


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    build = result["build"]
    s = build["store"]["summary"]
    m = result["machine"]
    built = "reused from the cache" if build["cached"] else "built in this run"
    lines = [
        "# Query benchmark",
        (
            f"Synthetic: {c['models']} models, {c['days']} days x {c['polls_per_day']} polls/day "
            f"({c['polls']:,} polls), ~{c['changes_per_day']} changed polls/day of 1-5 models, "
            f"seed {c['seed']}: {s['snapshots']:,} snapshots, {s['versions']:,} model versions, "
            f"{s['fetches']:,} fetch_log rows. Store {built} "
            f"({build['store']['seconds']:.0f} s: {build['store']['ingested_polls']} polls "
            f"through `Store.ingest` at {build['store']['ingest_ms']['median']:.0f} ms median, "
            f"the unchanged ones bulk-inserted in {build['store']['bulk_insert_seconds']:.2f} s); "
            f"store file {build['store']['bytes'] / 2**20:.1f} MiB, naive table "
            f"{build['naive']['rows']:,} rows / {build['naive']['bytes'] / 2**20:.1f} MiB. "
            f"{c['repeats']} random as-of instants, {c['changes_repeats']} random 90-day windows."
        ),
        table(result["rows"]),
        f"{report.machine_line(m)} Run took {result['elapsed_seconds']:.0f} s.",
        "Ratios are against baselines measured in the same run; times are never asserted. "
        "`met` applies to the median. Store and naive results agree: "
        + ", ".join(f"{k}: {v['agrees_with_naive']}" for k, v in result["models"].items())
        + ".",
    ]
    if "profile" in result:
        lines.append(
            "## Profile of `query.models` (cProfile, tottime)\n\n```\n"
            + result["profile"]["models"]
            + "\n```"
        )
        if "cli_stages" in result["profile"]:
            lines.append(
                "## Cold CLI path, stage by stage (median of 5 fresh processes)\n\n"
                "```\n" + result["profile"]["cli_stages"] + "\n```"
            )
        if "cli_imports" in result["profile"]:
            lines.append(
                "## Slowest imports of `pipeline.cli`\n\n```\n"
                + result["profile"]["cli_imports"]
                + "\n```"
            )
    return "\n\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.query", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--polls-per-day", type=int, default=288)
    parser.add_argument("--changes-per-day", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=200, help="as-of instants per query")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the built store is cached"
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached store")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile query.models and list the CLI's slowest imports",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    result = run(
        workdir=args.workdir,
        models=args.models,
        days=args.days,
        polls_per_day=args.polls_per_day,
        changes_per_day=args.changes_per_day,
        seed=args.seed,
        repeats=args.repeats,
        cli_runs=args.cli_runs,
        rebuild=args.rebuild,
        profile=args.profile,
    )
    text = markdown(result)
    print(text)
    json_path, md_path = report.write(args.out, "query", result, text)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
