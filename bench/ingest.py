"""The ingest benchmark: store time per poll and store bytes, against same-run baselines.

For each history (a synthetic catalog and, optionally, the bundled AiHubMix history) it
measures, in one process:

    store       `Store.ingest` of every poll into a fresh DuckDB file: ms per changed poll
                (outcome `new`), ms per unchanged poll, and the file's bytes after CHECKPOINT
    json floor  `json.loads` of every payload: the least any ingest of the body can cost
    naive       every row of every snapshot appended to one DuckDB table (parse, normalise,
                insert): ms per snapshot and the file's bytes
    git         each distinct payload committed as `catalog.json`, then
                `git gc --aggressive --prune=now`: the bytes of the pack

Times are reported, never asserted: each figure comes with its baseline from the same run
and the ratio between them, so a slow machine slows both.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from bench import report
from bench.report import ms as _ms
from bench.report import ratio as _ratio
from bench.report import stats as _stats
from bench.synthetic import catalog_history
from pipeline.ingest import ingest, payload_files, read_payload
from pipeline.normalise import normalise_items
from pipeline.store import Store

SOURCE = "aihubmix"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "aihubmix-modelsdev"
TARGETS = {"changed_ms": 20.0, "unchanged_ms": 5.0, "store_vs_git_bytes": 1.0}

History = Sequence[tuple[datetime, bytes]]


# -- small helpers -----------------------------------------------------------------------


def db_bytes(path: Path) -> dict[str, int]:
    """Bytes of a closed DuckDB file (plus any WAL) after a CHECKPOINT, and bytes in use."""
    con = duckdb.connect(str(path))
    try:
        con.execute("FORCE CHECKPOINT")
        block_size, used, free = con.execute(
            "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size()"
        ).fetchall()[0]
    finally:
        con.close()
    wal = Path(f"{path}.wal")
    total = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {
        "bytes": total,
        "used_bytes": int(block_size) * int(used),
        "free_bytes": int(block_size) * int(free),
        "block_size": int(block_size),
    }


def _table_blocks(path: Path) -> dict[str, dict[str, int]]:
    """Rows and storage blocks of each table of a DuckDB file: where the bytes go."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() ORDER BY table_name"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
            blocks = con.execute(  # segment blocks plus overflow blocks (long strings, blobs)
                "SELECT count(DISTINCT b) FROM ("
                " SELECT block_id AS b FROM pragma_storage_info($t) WHERE block_id >= 0"
                " UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info($t))",
                {"t": table},
            ).fetchall()[0][0]
            out[table] = {"rows": int(rows), "blocks": int(blocks)}
        return out
    finally:
        con.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _fresh(path: Path) -> Path:
    for p in (path, Path(f"{path}.wal")):
        if p.exists():
            p.unlink()
    return path


# -- measurements ------------------------------------------------------------------------
def measure_store(
    history: History, path: Path, *, accept_mass_removal: bool = False
) -> dict[str, Any]:
    """Ingest every poll into a fresh DuckDB file, timing each `ingest` call."""
    _fresh(path)
    times: dict[str, list[float]] = {}
    all_ms: list[float] = []
    initial_ms = None
    started = time.perf_counter()
    with Store.open(path) as store:
        for index, (fetched_at, body) in enumerate(history):
            t0 = time.perf_counter()
            result = ingest(
                store,
                body,
                source=SOURCE,
                fetched_at=fetched_at,
                accept_mass_removal=accept_mass_removal,
            )
            elapsed = _ms(t0)
            all_ms.append(elapsed)
            if index == 0:
                initial_ms = elapsed  # the first load: every model is new
            else:
                times.setdefault(result.outcome, []).append(elapsed)
        summary = store.summary()
    total_s = time.perf_counter() - started
    size = db_bytes(path)
    return {
        "initial_ms": initial_ms,
        "changed_ms": _stats(times.get("new", [])),
        "unchanged_ms": _stats(times.get("unchanged", [])),
        "all_ms": _stats(all_ms),
        "outcomes": {k: len(v) for k, v in sorted(times.items())},
        "seconds": total_s,
        **size,
        "tables": _table_blocks(path),
        "summary": _jsonable(summary),
    }


def measure_json_floor(history: History) -> dict[str, Any]:
    """`json.loads` of every payload: ms per payload."""
    times = []
    for _, body in history:
        t0 = time.perf_counter()
        json.loads(body)
        times.append(_ms(t0))
    return {"ms": _stats(times)}


def measure_naive(history: History, path: Path) -> dict[str, Any]:
    """Baseline (a): append every normalised row of every snapshot to one table."""
    _fresh(path)
    times: list[float] = []
    insert_times: list[float] = []
    rows = 0
    con = duckdb.connect(str(path))
    try:
        for index, (fetched_at, body) in enumerate(history):
            t0 = time.perf_counter()
            doc = json.loads(body)
            frame = normalise_items(doc["data"], source=SOURCE).frame.with_columns(
                pl.lit(fetched_at, dtype=pl.Datetime("us")).alias("fetched_at")
            )
            t1 = time.perf_counter()
            append_rows(con, frame, create=index == 0)
            insert_times.append(_ms(t1))
            times.append(_ms(t0))
            rows += frame.height
    finally:
        con.close()
    return {"ms": _stats(times), "insert_ms": _stats(insert_times), "rows": rows, **db_bytes(path)}


def _git_env() -> dict[str, str]:
    # no user or system config: gc settings would change the pack
    env = dict(os.environ)
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
        }
    )
    return env


def append_rows(con: Any, frame: pl.DataFrame, *, create: bool) -> None:
    """The naive loader's one step: every row of a snapshot appended to one table."""
    con.register("_snapshot", frame)
    try:
        if create:
            con.execute("CREATE TABLE snapshot_rows AS SELECT * FROM _snapshot LIMIT 0")
        con.execute("INSERT INTO snapshot_rows SELECT * FROM _snapshot")
    finally:
        con.unregister("_snapshot")


def measure_git(history: History, repo: Path) -> dict[str, Any]:
    """Baseline (b): each distinct payload committed one by one, then `gc --aggressive`."""
    git = shutil.which("git")
    if git is None:
        return {"available": False, "reason": "git not found on PATH"}
    env = _git_env()
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    try:
        subprocess.run([git, "init", "-q", str(repo)], check=True, env=env, capture_output=True)
        version = subprocess.run(
            [git, "--version"], check=True, env=env, capture_output=True, text=True
        ).stdout.strip()
        started = time.perf_counter()
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                [git, "-C", str(repo), "fast-import", "--quiet"],
                stdin=subprocess.PIPE,
                stderr=errors,
                env=env,
            )
            assert proc.stdin is not None
            commits = 0
            previous: bytes | None = None
            try:
                for fetched_at, body in history:
                    if body == previous:
                        continue  # an unchanged poll: nothing to commit
                    previous = body
                    commits += 1
                    epoch = int(fetched_at.replace(tzinfo=UTC).timestamp())
                    message = f"poll {fetched_at.isoformat()}\n".encode()
                    proc.stdin.write(
                        b"commit refs/heads/main\n"
                        b"committer bench <bench@example.invalid> %d +0000\n"
                        b"data %d\n%s\n"
                        b"M 100644 inline catalog.json\ndata %d\n%s\n"
                        % (epoch, len(message), message, len(body), body)
                    )
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                proc.wait()
            if proc.returncode != 0:
                errors.seek(0)
                raise subprocess.CalledProcessError(
                    proc.returncode, "git fast-import", stderr=errors.read()
                )
        import_s = time.perf_counter() - started
        subprocess.run(
            [git, "-C", str(repo), "symbolic-ref", "HEAD", "refs/heads/main"],
            check=True,
            env=env,
            capture_output=True,
        )
        started = time.perf_counter()
        subprocess.run(
            [git, "-C", str(repo), "gc", "--aggressive", "--prune=now", "-q"],
            check=True,
            env=env,
            capture_output=True,
        )
        gc_s = time.perf_counter() - started
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        reason = f"{exc.__class__.__name__}: {exc}" + (f" ({detail.strip()})" if detail else "")
        return {"available": False, "reason": reason[:500]}
    packs = list((repo / ".git" / "objects" / "pack").glob("*.pack"))
    return {
        "available": True,
        "version": version,
        "commits": commits,
        "pack_bytes": sum(p.stat().st_size for p in packs),
        "packs": len(packs),
        "import_seconds": import_s,
        "gc_seconds": gc_s,
    }


def profile_store(
    history: History, path: Path, *, top: int = 25, accept_mass_removal: bool = False
) -> str:
    """cProfile of `Store.ingest` over the changed polls only (not the first load)."""
    _fresh(path)
    profiler = cProfile.Profile()
    with Store.open(path) as store:
        previous: bytes | None = None
        for index, (fetched_at, body) in enumerate(history):
            changed = index > 0 and body != previous
            previous = body
            if changed:
                profiler.enable()
            ingest(
                store,
                body,
                source=SOURCE,
                fetched_at=fetched_at,
                accept_mass_removal=accept_mass_removal,
            )
            if changed:
                profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    out.write("\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- one history -------------------------------------------------------------------------
def measure_history(
    name: str, history: History, workdir: Path, *, accept_mass_removal: bool = False
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = [len(body) for _, body in history]
    distinct = len({body for _, body in history})
    store = measure_store(
        history, workdir / f"{name}-store.duckdb", accept_mass_removal=accept_mass_removal
    )
    floor = measure_json_floor(history)
    naive = measure_naive(history, workdir / f"{name}-naive.duckdb")
    git = measure_git(history, workdir / f"{name}-git")

    git_bytes = git.get("pack_bytes") if git.get("available") else None
    changed = store["changed_ms"]["median"]
    unchanged = store["unchanged_ms"]["median"]
    ratios = {
        "store_vs_git_bytes": _ratio(store["bytes"], git_bytes),
        "store_used_vs_git_bytes": _ratio(store["used_bytes"], git_bytes),
        "store_vs_naive_bytes": _ratio(store["bytes"], naive["bytes"]),
        "changed_vs_json_floor_ms": _ratio(changed, floor["ms"]["median"]),
        "unchanged_vs_json_floor_ms": _ratio(unchanged, floor["ms"]["median"]),
        "changed_vs_naive_ms": _ratio(changed, naive["ms"]["median"]),
        "all_polls_vs_naive_ms": _ratio(store["all_ms"]["mean"], naive["ms"]["mean"]),
    }
    met = {
        "changed_ms": None if changed is None else changed <= TARGETS["changed_ms"],
        "unchanged_ms": None if unchanged is None else unchanged <= TARGETS["unchanged_ms"],
        "store_vs_git_bytes": (
            None
            if ratios["store_vs_git_bytes"] is None
            else ratios["store_vs_git_bytes"] <= TARGETS["store_vs_git_bytes"]
        ),
    }
    return {
        "polls": len(history),
        "distinct_payloads": distinct,
        "payload_bytes": {"mean": statistics.fmean(sizes) if sizes else 0, "total": sum(sizes)},
        "store": store,
        "json_floor": floor,
        "naive": naive,
        "git": git,
        "ratios": ratios,
        "met": met,
        "rows": _rows(name, store, floor, naive, git, ratios, met),
    }


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


def _rows(
    name: str,
    store: dict[str, Any],
    floor: dict[str, Any],
    naive: dict[str, Any],
    git: dict[str, Any],
    ratios: dict[str, Any],
    met: dict[str, Any],
) -> list[dict[str, Any]]:
    git_bytes = git.get("pack_bytes") if git.get("available") else None
    git_name = "git gc --aggressive pack" if git_bytes is not None else "git: unavailable"
    floor_ms = floor["ms"]["median"]
    return [
        _row(
            f"{name}: ms per changed poll, median ({store['changed_ms']['count']} polls)",
            store["changed_ms"]["median"],
            "ms",
            floor_ms,
            "json.loads, median",
            f"<= {TARGETS['changed_ms']:g} ms",
            met["changed_ms"],
        ),
        _row(
            f"{name}: ms per changed poll, p95",
            store["changed_ms"]["p95"],
            "ms",
            floor["ms"]["p95"],
            "json.loads, p95",
        ),
        _row(
            f"{name}: ms per changed poll vs naive append",
            store["changed_ms"]["median"],
            "ms",
            naive["ms"]["median"],
            "naive append, median",
        ),
        _row(
            f"{name}: ms per unchanged poll, median ({store['unchanged_ms']['count']} polls)",
            store["unchanged_ms"]["median"],
            "ms",
            floor_ms,
            "json.loads, median",
            f"<= {TARGETS['unchanged_ms']:g} ms",
            met["unchanged_ms"],
        ),
        _row(
            f"{name}: ms per unchanged poll, p95",
            store["unchanged_ms"]["p95"],
            "ms",
            floor["ms"]["p95"],
            "json.loads, p95",
        ),
        _row(f"{name}: ms first load", store["initial_ms"], "ms", floor_ms, "json.loads, median"),
        _row(
            f"{name}: ms per poll, mean of all",
            store["all_ms"]["mean"],
            "ms",
            naive["ms"]["mean"],
            "naive append, mean",
        ),
        _row(
            f"{name}: store bytes vs git",
            store["bytes"],
            "B",
            git_bytes,
            git_name,
            "<= 1x git pack",
            met["store_vs_git_bytes"],
        ),
        _row(f"{name}: store bytes in use vs git", store["used_bytes"], "B", git_bytes, git_name),
        # like for like: both hold every distinct payload, and nothing else
        _row(
            f"{name}: raw payload archive vs git",
            store["summary"]["raw_stored_bytes"],
            "B",
            git_bytes,
            git_name,
            "<= 1x git pack",
            git_bytes is not None and store["summary"]["raw_stored_bytes"] <= git_bytes,
        ),
        _row(
            f"{name}: store bytes vs naive append",
            store["bytes"],
            "B",
            naive["bytes"],
            "naive append file",
        ),
    ]


# -- the whole run -----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return report.machine()


def bundled_history(directory: Path = BUNDLED_DIR) -> list[tuple[datetime, bytes]]:
    return [(at, read_payload(path)) for at, path in payload_files(directory)]


def run(
    *,
    models: int = 1000,
    polls: int = 1000,
    workdir: Path,
    bundled: bool = True,
    change_rate: float = 0.01,
    changed_poll_share: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the benchmark; `workdir` receives the DuckDB files and git repositories."""
    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "models": models,
        "polls": polls,
        "change_rate": change_rate,
        "changed_poll_share": changed_poll_share,
        "seed": seed,
        "bundled": bundled,
    }
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": config,
        "targets": dict(TARGETS),
    }
    synthetic = list(catalog_history(models, polls, change_rate, changed_poll_share, seed))
    result["synthetic"] = measure_history("synthetic", synthetic, workdir)
    del synthetic
    if bundled:
        result["bundled"] = measure_history(
            "bundled", bundled_history(), workdir, accept_mass_removal=True
        )
    git = result["synthetic"]["git"]
    result["machine"]["git"] = git.get("version") if git.get("available") else None
    result["rows"] = [
        row for key in ("synthetic", "bundled") if key in result for row in result[key].pop("rows")
    ]
    result["elapsed_seconds"] = time.perf_counter() - started
    return result
