"""What the benches measure with: timings, store files, and the baselines every bench
compares against in the same run (the `json.loads` floor, a naive append-everything table,
a `git gc --aggressive` pack of the same payloads)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline.normalise import normalise_items
from pipeline.sources import get_source

History = Iterable[tuple[datetime, bytes]]


def ms(start: float) -> float:
    """Milliseconds since a `time.perf_counter()` reading."""
    return (time.perf_counter() - start) * 1000


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """`fn(*args, **kwargs)` and the milliseconds it took."""
    t0 = time.perf_counter()
    return fn(*args, **kwargs), ms(t0)


async def timed_async(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """`await fn(*args, **kwargs)` and the milliseconds it took."""
    t0 = time.perf_counter()
    return await fn(*args, **kwargs), ms(t0)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "median": statistics.median(values) if values else None,
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values) if values else None,
        "min": min(values) if values else None,
    }


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# -- store files ---------------------------------------------------------------------------
def fresh(path: Path) -> Path:
    """`path` with no database (nor WAL) left from a previous run."""
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)
    return path


def db_bytes(path: Path) -> dict[str, int]:
    """Bytes of a closed DuckDB file (plus any WAL) after a CHECKPOINT, and bytes in use."""
    con = duckdb.connect(str(path))
    try:
        con.execute("FORCE CHECKPOINT")
        block, used, free = con.execute(
            "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size()"
        ).fetchall()[0]
    finally:
        con.close()
    wal = Path(f"{path}.wal")
    total = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {
        "bytes": total,
        "used_bytes": int(block) * int(used),
        "free_bytes": int(block) * int(free),
        "block_size": int(block),
    }


def table_blocks(path: Path) -> dict[str, dict[str, int]]:
    """Rows and storage blocks of each table of a DuckDB file: where the bytes go."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
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


# -- baselines -----------------------------------------------------------------------------
def json_floor(history: History) -> dict[str, Any]:
    """`json.loads` of every payload: the least any ingest of the body can cost."""
    times = []
    for _, body in history:
        t0 = time.perf_counter()
        json.loads(body)
        times.append(ms(t0))
    return {"ms": stats(times)}


def naive_append(history: History, path: Path, source: str) -> dict[str, Any]:
    """Every normalised row of every snapshot appended to one table (parse, normalise,
    insert): ms per snapshot, rows, and the file's bytes."""
    parse = get_source(source).parse
    times: list[float] = []
    rows = 0
    started = time.perf_counter()
    con = duckdb.connect(str(fresh(path)))
    try:
        for index, (fetched_at, body) in enumerate(history):
            t0 = time.perf_counter()
            frame = normalise_items(parse(body), source=source).frame.with_columns(
                pl.lit(fetched_at, dtype=pl.Datetime("us")).alias("fetched_at")
            )
            con.register("_snapshot", frame)
            if index == 0:
                con.execute("CREATE TABLE snapshot_rows AS SELECT * FROM _snapshot LIMIT 0")
            con.execute("INSERT INTO snapshot_rows SELECT * FROM _snapshot")
            con.unregister("_snapshot")
            times.append(ms(t0))
            rows += frame.height
    finally:
        con.close()
    seconds = time.perf_counter() - started
    return {"ms": stats(times), "seconds": seconds, "rows": rows, **db_bytes(path)}


# Every item of every payload as one DuckDB statement: `data` lists, or LiteLLM's object
# of models. Rows stay JSON: what a bulk load can do without any of our guarantees.
_BULK_ITEMS = {
    "openrouter": "unnest(json_extract(json, '$.data[*]'))",
    "litellm": "unnest(json_extract(json, '$.*'))",
}


def bulk_load(history: History, workdir: Path, source: str) -> dict[str, Any]:
    """The naive bulk load: every payload written out as a file (not timed), then one
    `read_json_objects` + `unnest` of all their items into a table: seconds, rows."""
    items = _BULK_ITEMS.get(source)
    if items is None:
        return {"available": False, "reason": f"no bulk load for {source}"}
    folder = workdir / f"{source}-json"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = 0
    for count, (_, body) in enumerate(history, start=1):
        (folder / f"{count:05d}.json").write_bytes(body)
    con = duckdb.connect(str(fresh(workdir / f"{source}-bulk.duckdb")))
    try:
        started = time.perf_counter()
        con.execute(
            f"CREATE TABLE items AS SELECT filename, {items} AS item FROM read_json_objects("
            f"'{folder}/*.json', filename = true, maximum_object_size = 1073741824)"
        )
        seconds = time.perf_counter() - started
        rows = con.execute("SELECT count(*) FROM items").fetchall()[0][0]
    finally:
        con.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {"available": True, "seconds": seconds, "rows": int(rows), "files": count}


def backfill_repo(repo: Path, db: Path, source: str) -> dict[str, Any]:
    """`modelwatch backfill` of the repository `git_pack` built (`catalog.json`, one
    commit per distinct payload): seconds and commits."""
    from pipeline.backfill import backfill
    from pipeline.store import Store

    started = time.perf_counter()
    with Store.open(fresh(db)) as store:
        results = backfill(
            store, repo, path="catalog.json", source=source, kind=source, accept_mass_removal=True
        )
    return {"seconds": time.perf_counter() - started, "commits": len(results), **db_bytes(db)}


def git_pack(history: History, repo: Path) -> dict[str, Any]:
    """Each distinct payload committed as `catalog.json` (`git fast-import`), then
    `git gc --aggressive --prune=now`: the pack's bytes. No git is a result, not an error."""
    git = shutil.which("git")
    if git is None:
        return {"available": False, "reason": "git not found on PATH"}
    # no user or system config: gc settings would change the pack
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    env |= {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)

    def git_run(*args: str) -> str:
        done = subprocess.run(
            [git, "-C", str(repo), *args], check=True, env=env, capture_output=True
        )
        return done.stdout.decode().strip()

    commits = 0
    try:
        git_run("init", "-q")
        version = git_run("--version")
        started = time.perf_counter()
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                [git, "-C", str(repo), "fast-import", "--quiet"],
                stdin=subprocess.PIPE,
                stderr=errors,
                env=env,
            )
            assert proc.stdin is not None
            previous: bytes | None = None
            try:
                for fetched_at, body in history:
                    if body == previous:
                        continue  # an unchanged poll: nothing to commit
                    previous, commits = body, commits + 1
                    epoch = int(fetched_at.replace(tzinfo=UTC).timestamp())
                    message = f"poll {fetched_at.isoformat()}\n".encode()
                    proc.stdin.write(
                        b"commit refs/heads/main\n"
                        b"committer bench <bench@example.invalid> %d +0000\n"
                        b"data %d\n%s\nM 100644 inline catalog.json\ndata %d\n%s\n"
                        % (epoch, len(message), message, len(body), body)
                    )
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                proc.wait()
            if proc.returncode != 0:
                errors.seek(0)
                raise subprocess.CalledProcessError(
                    proc.returncode, "fast-import", b"", errors.read()
                )
        import_s = time.perf_counter() - started
        git_run("symbolic-ref", "HEAD", "refs/heads/main")
        started = time.perf_counter()
        git_run("gc", "--aggressive", "--prune=now", "-q")
        gc_s = time.perf_counter() - started
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or b""
        reason = f"{type(exc).__name__}: {exc} {detail.decode('utf-8', 'replace').strip()}"
        return {"available": False, "reason": reason.strip()[:500]}
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
