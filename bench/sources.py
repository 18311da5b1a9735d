"""Replay benchmark of real histories: the OpenRouter and LiteLLM folders of the shared data
(400 snapshots each), issue 7's "Measure".

For each history it measures, in one run:

    store   `pipeline.ingest`-style replay (`Store.ingest`, kind = the source, mass removals
            accepted: a recorded history is trusted) into a fresh DuckDB file, in a child
            process so its peak RSS (`resource.getrusage`) is its own: total seconds, ms per
            snapshot, the file's bytes after CHECKPOINT, model versions, peak RSS after 100
            and after 400 snapshots
    naive   every normalised row of every snapshot appended to one DuckDB table
    git     the same payloads committed one by one (`git fast-import`), then
            `git gc --aggressive`: the pack's bytes (`bench.ingest.measure_git`)

`python -m bench.sources [--limit N] [--root DIR]` prints a markdown table and writes
`bench/results/sources.json` and `sources.md`. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from bench.ingest import (
    _fresh,
    _jsonable,
    _ms,
    _ratio,
    _stats,
    append_rows,
    db_bytes,
    machine,
    measure_git,
)
from pipeline.ingest import ingest, read_payload
from pipeline.normalise import normalise_items
from pipeline.sources import get_source
from pipeline.store import Store
from pipeline.timeutil import time_from_filename

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = ("openrouter", "litellm")
RSS_CHECKPOINTS = (100, 400)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


class History:
    """Recorded payloads read lazily, oldest first: (fetch time, body) per snapshot."""

    def __init__(self, directory: Path, limit: int | None = None) -> None:
        files = sorted(directory.glob("*.json.gz")) + sorted(directory.glob("*Z_*.json"))
        dated = sorted((time_from_filename(p.name), p) for p in files)
        self.files = dated[:limit] if limit is not None else dated

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[tuple[datetime, bytes]]:
        for fetched_at, path in self.files:
            yield fetched_at, read_payload(path)


def _rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _hwm_kib() -> int | None:
    """This process image's own peak RSS (`VmHWM`, Linux): a cross-check of ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def measure_store(source: str, directory: str, limit: int | None, path: str) -> dict[str, Any]:
    """Replay a history into a fresh DuckDB file (run in a child process: its RSS alone)."""
    db = _fresh(Path(path))
    history = History(Path(directory), limit)
    rss: dict[str, int] = {"start": _rss_kib()}
    hwm: dict[str, int | None] = {"start": _hwm_kib()}
    times: dict[str, list[float]] = {}
    all_ms: list[float] = []
    quarantined = 0
    started = time.perf_counter()
    with Store.open(db) as store:
        for index, (fetched_at, body) in enumerate(history, start=1):
            t0 = time.perf_counter()
            result = ingest(
                store,
                body,
                source=source,
                kind=source,
                fetched_at=fetched_at,
                url=f"file:{index}",
                accept_mass_removal=True,
            )
            elapsed = _ms(t0)
            all_ms.append(elapsed)
            times.setdefault(result.outcome, []).append(elapsed)
            quarantined += result.quarantined
            if index in RSS_CHECKPOINTS:
                rss[f"after_{index}"] = _rss_kib()
                hwm[f"after_{index}"] = _hwm_kib()
        seconds = time.perf_counter() - started
        summary = store.summary()
    rss["final"] = _rss_kib()
    hwm["final"] = _hwm_kib()
    return {
        "snapshots": len(all_ms),
        "seconds": seconds,
        "ms": _stats(all_ms),
        "first_ms": all_ms[0] if all_ms else None,
        "ms_by_outcome": {k: _stats(v) for k, v in sorted(times.items())},
        "outcomes": {k: len(v) for k, v in sorted(times.items())},
        "quarantined_rows": quarantined,
        "peak_rss_kib": rss,
        "vm_hwm_kib": hwm,
        "summary": _jsonable(summary),
        **db_bytes(db),
    }


def measure_naive(source: str, history: History, path: Path) -> dict[str, Any]:
    """Baseline: parse, normalise and append every row of every snapshot to one table."""
    spec = get_source(source)
    _fresh(path)
    times: list[float] = []
    rows = 0
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    try:
        for index, (fetched_at, body) in enumerate(history):
            t0 = time.perf_counter()
            frame = normalise_items(
                spec.parse(body), source=source
            ).frame.with_columns(pl.lit(fetched_at, dtype=pl.Datetime("us")).alias("fetched_at"))
            append_rows(con, frame, create=index == 0)
            times.append(_ms(t0))
            rows += frame.height
    finally:
        con.close()
    return {
        "seconds": time.perf_counter() - started,
        "ms": _stats(times),
        "rows": rows,
        **db_bytes(path),
    }


def _store_in_child(
    source: str, directory: Path, limit: int | None, path: Path, isolate: bool
) -> dict[str, Any]:
    if not isolate:
        return measure_store(source, str(directory), limit, str(path))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_store, source, str(directory), limit, str(path)).result()


def measure_source(
    source: str,
    directory: Path,
    workdir: Path,
    *,
    limit: int | None = None,
    isolate: bool = True,
    store: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of one history; `store` holds its replay's figures if already measured."""
    history = History(directory, limit)
    if not len(history):
        return {"available": False, "reason": f"no payloads in {directory}"}
    if store is None:
        path = workdir / f"{source}-store.duckdb"
        store = _store_in_child(source, directory, limit, path, isolate)
    sizes = [path.stat().st_size for _, path in history.files]
    raw_bytes = sum(len(body) for _, body in history)
    naive = measure_naive(source, history, workdir / f"{source}-naive.duckdb")
    git = measure_git(history, workdir / f"{source}-git")  # type: ignore[arg-type]
    git_bytes = git.get("pack_bytes") if git.get("available") else None
    versions = store["summary"]["versions"]
    return {
        "available": True,
        "folder": str(directory),
        "snapshots": len(history),
        "first": history.files[0][0].isoformat(),
        "last": history.files[-1][0].isoformat(),
        "payload_bytes": {
            "raw_total": raw_bytes,
            "gzip_total": sum(sizes),
            "raw_mean": raw_bytes / len(history),
        },
        "store": store,
        "naive": naive,
        "git": git,
        "ratios": {
            "store_vs_naive_bytes": _ratio(store["bytes"], naive["bytes"]),
            "store_vs_git_bytes": _ratio(store["bytes"], git_bytes),
            "raw_archive_vs_git_bytes": _ratio(store["summary"]["raw_stored_bytes"], git_bytes),
            "store_vs_naive_seconds": _ratio(store["seconds"], naive["seconds"]),
            "rows_per_version": _ratio(naive["rows"], versions),
        },
    }


def run(
    *,
    workdir: Path,
    limit: int | None = None,
    root: Path = SHARED_DATA,
    sources: tuple[str, ...] = SOURCES,
    isolate: bool = True,
) -> dict[str, Any]:
    """Measure each source's history under `root` (skipped, with a reason, if absent)."""
    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {"root": str(root), "limit": limit, "sources": list(sources)},
        "sources": {},
    }
    found = {s: Path(root) / s for s in sources if (Path(root) / s).is_dir()}
    # Every replay runs first, while this process is small: Linux keeps ru_maxrss across
    # exec, so a child's peak RSS would count this process's own if it had grown.
    stores = {
        source: _store_in_child(
            source, directory, limit, workdir / f"{source}-store.duckdb", isolate
        )
        for source, directory in found.items()
        if len(History(directory, limit))
    }
    for source in sources:
        if source not in found:
            reason = f"{Path(root) / source} does not exist"
            result["sources"][source] = {"available": False, "reason": reason}
            continue
        result["sources"][source] = measure_source(
            source, found[source], workdir, limit=limit, isolate=isolate, store=stores.get(source)
        )
    git = next((s["git"] for s in result["sources"].values() if s.get("available")), {})
    result["machine"]["git"] = git.get("version") if git.get("available") else None
    result["elapsed_seconds"] = time.perf_counter() - started
    return result


# -- the report --------------------------------------------------------------------------
def _bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1024:,.0f} KiB" if value < 1024**2 else f"{value / 1024**2:,.2f} MiB"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}x"


def _rss(store: dict[str, Any], key: str) -> str:
    value = store["peak_rss_kib"].get(key)
    return "n/a" if value is None else f"{value / 1024:,.0f} MiB"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Replay of real histories (issue 7)",
        "",
        "| figure | " + " | ".join(result["sources"]) + " |",
        "|---|" + "---:|" * len(result["sources"]),
    ]
    available = {k: v for k, v in result["sources"].items() if v.get("available")}

    def row(name: str, fn: Any) -> None:
        cells = [fn(s) if s.get("available") else s["reason"] for s in result["sources"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("snapshots", lambda s: f"{s['snapshots']} ({s['first'][:10]} .. {s['last'][:10]})")
    row(
        "payloads, raw / gzip",
        lambda s: (
            f"{_bytes(s['payload_bytes']['raw_total'])} / "
            f"{_bytes(s['payload_bytes']['gzip_total'])}"
        ),
    )
    row("store: replay time", lambda s: f"{s['store']['seconds']:,.1f} s")
    row(
        "store: ms per snapshot, median / mean / p95",
        lambda s: " / ".join(f"{s['store']['ms'][k]:,.0f}" for k in ("median", "mean", "p95")),
    )
    row("store: ms first snapshot", lambda s: f"{s['store']['first_ms']:,.0f}")
    row(
        "store: outcomes",
        lambda s: ", ".join(f"{k} {v}" for k, v in s["store"]["outcomes"].items()),
    )
    row("store: database size", lambda s: _bytes(s["store"]["bytes"]))
    row(
        "store: raw archive (of which)", lambda s: _bytes(s["store"]["summary"]["raw_stored_bytes"])
    )
    row(
        "naive append: time",
        lambda s: (
            f"{s['naive']['seconds']:,.1f} s "
            f"({_x(s['ratios']['store_vs_naive_seconds'])} store/naive)"
        ),
    )
    row(
        "naive append: database size",
        lambda s: (
            f"{_bytes(s['naive']['bytes'])} ({_x(s['ratios']['store_vs_naive_bytes'])} store/naive)"
        ),
    )
    row(
        "git gc --aggressive pack",
        lambda s: (
            f"{_bytes(s['git']['pack_bytes'])} ({_x(s['ratios']['store_vs_git_bytes'])} "
            f"store/git; raw archive {_x(s['ratios']['raw_archive_vs_git_bytes'])})"
            if s["git"].get("available")
            else s["git"].get("reason", "n/a")
        ),
    )
    row("model versions stored", lambda s: f"{s['store']['summary']['versions']:,}")
    row(
        "rows of all snapshots (naive)",
        lambda s: f"{s['naive']['rows']:,} ({_x(s['ratios']['rows_per_version'])} versions)",
    )
    row("rows quarantined (all snapshots)", lambda s: f"{s['store']['quarantined_rows']:,}")
    row("peak RSS after 100 snapshots", lambda s: _rss(s["store"], "after_100"))
    row("peak RSS after 400 snapshots", lambda s: _rss(s["store"], "after_400"))
    row("peak RSS at the end", lambda s: _rss(s["store"], "final"))
    row(
        "VmHWM at the end (cross-check)",
        lambda s: (
            "n/a"
            if s["store"]["vm_hwm_kib"].get("final") is None
            else f"{s['store']['vm_hwm_kib']['final'] / 1024:,.0f} MiB"
        ),
    )
    m = result["machine"]
    lines += [
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, duckdb "
        f"{m['duckdb']}, polars {m['polars']}, {m.get('git') or 'git unavailable'}. "
        f"Run took {result['elapsed_seconds']:,.0f} s.",
        "",
        "The store replays with `accept_mass_removal` (a recorded history is trusted); its "
        "RSS is measured in a child process, so each figure is that replay's own. Ratios "
        "are against baselines measured in the same run.",
    ]
    if not available:
        lines += ["", "No history was found: nothing was measured."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sources", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=SHARED_DATA,
        help="folder holding openrouter/ and litellm/ histories",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N snapshots only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the databases and git repos go (default: a temp folder)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-sources-") as tmp:
        result = run(workdir=args.workdir or Path(tmp), limit=args.limit, root=args.root)
    text = markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sources.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "sources.md").write_text(text)
    print(f"wrote {args.out / 'sources.json'} and {args.out / 'sources.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
