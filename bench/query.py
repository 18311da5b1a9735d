"""The query bench (issue 3): as-of queries on a synthetic year, and the CLI's cold start.

    models   `query.models` at random instants of a year of 5-minute polls; baselines: the
             same filter and sort by polars on a ready catalog (the floor), and a naive
             append-every-snapshot table queried as of the instant
    changes  `query.changes` over 90-day windows; baselines: reading the versions opened or
             closed in the window, and a naive lag diff over every snapshot row
    cli      a cold `modelwatch models --format json --type llm`; baselines: `python -c
             pass` and `python -c "import duckdb, polars"`

The built year is cached in `params["cache"]` (else the work folder), keyed by its shape.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from bench import SOURCE, Log, Result
from bench import measure as m
from bench.report import prefixed, row
from bench.synthetic import START, catalog_history
from pipeline import query
from pipeline.ingest import ingest
from pipeline.store import Store
from pipeline.store.schema import DDL_HASH
from schemas.record import SCHEMA

BUILD_VERSION = 1  # bump when the recipe below changes: cached stores are then rebuilt
TARGETS = {"models_ms": 20.0, "cli_s": 0.6}
MODELS_PER_CHANGE = 3  # a changed poll changes 1-5 models (bench.synthetic: mean * U(0.5, 1.5))
CHANGES_WINDOW = timedelta(days=90)
TRUSTED = {"accept_mass_removal": True}  # a synthetic history is trusted

# realistic `/api/v1/models` questions: a filtered, price-sorted list and a fuzzy id search
HEADLINE_QUERY = {"type": "llm", "features": "tools", "sort_by": "model_ratio"}
COMBOS = {
    "llm+tools, by price desc": HEADLINE_QUERY | {"sort_order": "desc"},
    "fuzzy model='claude sonnet'": {"model": "claude sonnet"},
}
HEADLINE = "llm+tools, by price desc"


# -- building the year -------------------------------------------------------------------
def _paths(workdir: Path, c: dict[str, Any]) -> tuple[Path, Path, Path]:
    key = f"{c['models']}m-{c['days']}d-{c['polls_per_day']}p-{c['changes_per_day']}c-s{c['seed']}"
    # the store's layout too: a cached store made by an older schema would be migrated,
    # not rebuilt, and measure another layout
    key = f"query-{key}-v{BUILD_VERSION}-{DDL_HASH}"
    return workdir / f"{key}.duckdb", workdir / f"{key}-naive.duckdb", workdir / f"{key}.json"


def build_store(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Write the synthetic year into a fresh store at `path`.

    Only the polls whose body changed go through `Store.ingest` (as a real poller's would:
    parse, normalise, archive, apply). The ~104k unchanged polls are then written as
    `fetch_log` rows with one INSERT ... SELECT: the shortcut is that they skip `ingest`'s
    duplicate check and hashing (an unchanged poll is only a fetch_log row anyway), their
    fetch_ids come after those of the changed polls rather than in time order, and
    `http_status`/`models`/`content_hash` are copied from the snapshot in force (ASOF JOIN).
    """
    m.fresh(path)
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
            at = START + index * spacing
            result, took = m.timed(ingest, store, body, source=SOURCE, fetched_at=at, **TRUSTED)
            ingest_ms.append(took)
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
            {"start": START, "us": spacing // timedelta(microseconds=1)}
            | {"polls": polls, "src": SOURCE},
        )
        bulk_s = time.perf_counter() - t0
        store.execute("CHECKPOINT")
        summary = store.summary()
    return {
        "seconds": time.perf_counter() - started,
        "ingest_seconds": ingest_s,
        "bulk_insert_seconds": bulk_s,
        "ingest_ms": m.stats(ingest_ms),
        "ingested_polls": len(ingest_ms),
        "ingest_outcomes": outcomes,
        "bytes": m.db_bytes(path)["bytes"],
        "summary": m.jsonable(summary),
    }


def build_naive(store_path: Path, naive_path: Path) -> dict[str, Any]:
    """The "append everything" layout: every row of every applied snapshot, in one table.

    It flatters the naive approach: a real append-everything poller also writes the
    unchanged polls (~100x more rows); only the snapshots that changed are kept here.
    """
    m.fresh(naive_path)
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
        "bytes": m.db_bytes(naive_path)["bytes"],
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
    times: dict[str, list[float]] = {k: [] for k in ("ms", "as_of_ms", "floor_ms", "naive_ms")}
    rows, agree = [], True
    for i, at in enumerate(instants[:warmup] + instants):
        result, full = m.timed(query.models, store, source=SOURCE, as_of=at, **params)
        frame, as_of = m.timed(store.catalog_as_of, SOURCE, at)
        _, floor = m.timed(lambda f: query.apply_query(f, query.parse_query(f, **params)), frame)
        baseline, naive_ms = m.timed(naive_models, naive, at, **params)
        if i >= warmup:
            for key, value in zip(times, (full, as_of, floor, naive_ms), strict=True):
                times[key].append(value)
            rows.append(result.height)
            agree = agree and result.equals(baseline)
    return {
        "params": params,
        **{k: m.stats(v) for k, v in times.items()},
        "rows": m.stats(rows),
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
    store: Store, naive: duckdb.DuckDBPyConnection, instants: list[datetime], naive_repeats: int
) -> dict[str, Any]:
    """Per 90-day window: `query.changes`, the floor, and (the first few) the naive diff."""
    lists: dict[str, list[float]] = {k: [] for k in ("ms", "floor_ms", "rows")}
    lists |= {"naive_ms": [], "naive_rows": []}
    for i, until in enumerate(instants[:2] + instants):  # the first two warm up
        window = {"src": SOURCE, "since": until - CHANGES_WINDOW, "until": until}
        frame, t_changes = m.timed(query.changes, store, since=window["since"], until=until)
        _, t_floor = m.timed(store.frame, CHANGES_FLOOR, window)
        if i < 2:
            continue
        for key, value in (("ms", t_changes), ("floor_ms", t_floor), ("rows", frame.height)):
            lists[key].append(value)
        if len(lists["naive_ms"]) < naive_repeats:
            found, t_naive = m.timed(lambda w: naive.sql(NAIVE_CHANGES, params=w).pl(), window)
            lists["naive_ms"].append(t_naive)
            lists["naive_rows"].append(found.height)
    return {"window_days": CHANGES_WINDOW.days, **{k: m.stats(v) for k, v in lists.items()}}


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
    result = {"s": m.stats(times), "argv": argv}
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


# -- the whole run -----------------------------------------------------------------------
def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, q in result["models"].items():
        r, head = prefixed(f"models [{name}]"), name == HEADLINE
        for stat in ("median", "p95"):
            value, target = q["ms"][stat], head and stat == "median"
            rows.append(
                r(
                    f" as-of+filter+sort, {stat}",
                    value,
                    "ms",
                    q["floor_ms"][stat],
                    f"polars filter+sort of a ready frame, {stat}",
                    f"<= {TARGETS['models_ms']:g} ms" if target else "",
                    m.at_most(value, TARGETS["models_ms"]) if target else None,
                    headline=target,
                )
            )
        naive = "naive as-of + same filter+sort, median"
        rows.append(
            r(
                " vs naive append-everything, median",
                q["ms"]["median"],
                "ms",
                q["naive_ms"]["median"],
                naive,
            )
        )
        rows.append(
            r(
                ": of which `catalog_as_of` (macro + .pl() + cast)",
                q["as_of_ms"]["median"],
                "ms",
                q["ms"]["median"],
                "full call, median",
            )
        )
    c = result["changes"]
    r = prefixed(f"changes over {c['window_days']} days")
    naive = f"naive lag over snapshot rows, median of {c['naive_ms']['count']}"
    rows += [
        r(
            f", median (~{c['rows']['median']:.0f} rows)",
            c["ms"]["median"],
            "ms",
            c["floor_ms"]["median"],
            "read versions in window, median",
        ),
        r(", p95", c["ms"]["p95"], "ms", c["floor_ms"]["p95"], "read versions in window, p95"),
        r(" vs naive lag diff, median", c["ms"]["median"], "ms", c["naive_ms"]["median"], naive),
    ]
    cli = result["cli"]
    if cli is None:
        return rows
    median = cli["cli"]["s"]["median"]
    rows += [
        row(
            f"cold `modelwatch models --format json --type llm`, median "
            f"({cli['cli']['s']['count']} runs)",
            median,
            "s",
            cli["python_pass"]["s"]["median"],
            "python -c pass",
            f"<= {TARGETS['cli_s']:g} s",
            m.at_most(median, TARGETS["cli_s"]),
            headline=True,
        ),
        row(
            "cold CLI vs importing duckdb+polars",
            median,
            "s",
            cli["import_duckdb_polars"]["s"]["median"],
            "python -c 'import duckdb, polars'",
        ),
        row(
            "cold CLI vs importing pipeline.cli",
            median,
            "s",
            cli["import_cli"]["s"]["median"],
            "python -c 'import pipeline.cli'",
        ),
        row("cold CLI, p95", cli["cli"]["s"]["p95"], "s"),
    ]
    if "on_path" in cli:
        path = cli["on_path"]
        rows.append(
            row(
                f"cold CLI via {path['command']} (PATH), median",
                path["s"]["median"],
                "s",
                median,
                "console script",
            )
        )
    return rows


def run(params: dict[str, Any], workdir: Path, log: Log) -> Result:
    """Build (or reuse) the synthetic year and measure the queries and the CLI against their
    baselines; `met` is judged on the median."""
    p = {"seed": 0, "naive_changes_repeats": 10, **params}
    shape = ("models", "days", "polls_per_day", "changes_per_day", "seed")
    config = {k: p[k] for k in shape} | {"polls": p["days"] * p["polls_per_day"]}
    config["build_version"] = BUILD_VERSION
    log(f"  query: {config['polls']:,} polls of {config['models']:,} models (cached when built)")
    cache = Path(p.get("cache") or workdir)
    store_path, naive_path, build = ensure_built(cache, config, rebuild=p.get("rebuild", False))
    rng = random.Random(p["seed"])
    data: dict[str, Any] = {"config": {**config, **p}, "targets": TARGETS, "build": build}
    naive = duckdb.connect(str(naive_path), read_only=True)
    try:
        with Store.open(store_path) as store:
            year = "SELECT min(fetched_at), max(fetched_at) FROM fetch_log WHERE source = ?"
            first, last = store.execute(year, [SOURCE])[0]
            instants = _instants(rng, first, last, p["repeats"])
            data["models"] = {
                name: measure_models(store, naive, instants, combo)
                for name, combo in COMBOS.items()
            }
            window = _instants(rng, min(first + CHANGES_WINDOW, last), last, p["changes_repeats"])
            data["changes"] = measure_changes(store, naive, window, p["naive_changes_repeats"])
    finally:
        naive.close()
    # the CLI opens the store itself: ours is closed above (DuckDB allows one writer)
    data["cli"] = measure_cli(store_path, p["cli_runs"]) if p["cli_runs"] > 0 else None
    return Result("ok", _rows(data), data)
