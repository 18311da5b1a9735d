"""`python -m bench`: every benchmark in one run, and one table of the headline figures.

    python -m bench [--quick] [--only ingest,query,serve,sources,dlt,memory] [--out DIR]
                    [--workdir DIR]

runs, in this order (each in turn, on the same machine; a bench that fails or cannot run is
reported, and the others still run):

    ingest   `bench.ingest` on the synthetic 1,000-model catalog x 1,000 polls (and the
             bundled AiHubMix history), then 10,000 models x 200 polls
    query    `bench.query`: as-of queries on a synthetic year, and the CLI's cold start
    serve    `bench.serve`: the served body against static bytes, requests/s
    sources  `bench.sources` (when it exists and the shared data folders are present): the
             full OpenRouter and LiteLLM histories
    dlt      `bench.dlt_baseline`: dlt's scd2 merge on the same snapshots (when dlt is
             installed: pip install "dlt[duckdb]")
    memory   peak RSS of replaying 1, 100 and 400 snapshots, each in a fresh child
             process: of the largest shared history (when present) and of a synthetic
             1,000-model one whose catalog keeps its size

and writes `<out>/summary.md` and `summary.json` (the headline figures, each with its
target and whether it is met, and the machine), beside each bench's own `<name>.md` and
`<name>.json`. `--quick` runs small sizes (a minute or two). Times are never asserted.

`python -m bench ingest|query|serve|sources|dlt [options]` runs one benchmark with its own
options (`python -m bench ingest --models 500 --polls 200`).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from pipeline.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
BENCHES = ("ingest", "query", "serve", "sources", "dlt", "memory")

# headline targets the harness applies itself (the benches' own: ingest.TARGETS,
# query.TARGETS, serve.TARGET_RATIO, dlt_baseline.TARGET_RATIO)
REPLAY_VS_JSON_FLOOR = 10.0  # ms per snapshot / json.loads of the payload, at most
RSS_GROWTH = 1.1  # peak RSS after 400 snapshots / after 100, at most

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "ingest": {
            "synthetic": [{"models": 1000, "polls": 1000}, {"models": 10000, "polls": 200}],
            "bundled": True,
        },
        "query": {
            "models": 1000,
            "days": 365,
            "polls_per_day": 288,
            "changes_per_day": 3,
            "repeats": 200,
            "changes_repeats": 50,
            "naive_changes_repeats": 10,
            "cli_runs": 10,
        },
        "serve": {
            "models": 1000,
            "duration": 5.0,
            "connections": 32,
            "max_requests": 200_000,
            "rounds": 3,
        },
        "sources": {"limit": None},
        "dlt": {"models": 1000, "snapshots": 30},
        "memory": {"source": "auto", "models": 1000, "snapshots": [100, 400]},
    },
    "quick": {
        "ingest": {
            "synthetic": [{"models": 200, "polls": 200}, {"models": 2000, "polls": 20}],
            "bundled": True,
        },
        "query": {
            "models": 200,
            "days": 30,
            "polls_per_day": 96,
            "changes_per_day": 3,
            "repeats": 50,
            "changes_repeats": 10,
            "naive_changes_repeats": 3,
            "cli_runs": 3,
        },
        "serve": {
            "models": 1000,
            "duration": 1.0,
            "connections": 16,
            "max_requests": 50_000,
            "rounds": 1,
        },
        "sources": {"limit": 30},
        "dlt": {"models": 1000, "snapshots": 5},
        "memory": {"source": "auto", "models": 200, "snapshots": [25, 100]},
    },
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Context:
    out: Path
    workdir: Path
    query_cache: Path
    log: Callable[[str], None] = _log
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one bench gives the summary: its status, headline rows and files."""

    status: str  # ok | skipped | not installed | error
    rows: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    result: dict[str, Any] | None = None
    text: str = ""
    files: list[str] = field(default_factory=list)


def _headline(
    bench: str,
    figure: str,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    met: bool | None = None,
) -> dict[str, Any]:
    return report.row(figure, value, unit, baseline, baseline_name, target, met, bench=bench)


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


# -- ingest ------------------------------------------------------------------------------
def ingest_config_line(result: dict[str, Any]) -> str:
    c = result["config"]
    s = result["synthetic"]
    text = (
        f"Synthetic: {c['models']:,} models x {c['polls']:,} polls (5 min apart), "
        f"~{c['change_rate']:.0%} of models changing on {c['changed_poll_share']:.0%} of "
        f"polls, seed {c['seed']}: {s['distinct_payloads']} distinct payloads, "
        f"{s['payload_bytes']['mean'] / 1024:,.0f} KiB each on average."
    )
    if "bundled" in result:
        b = result["bundled"]
        text += (
            f" Bundled: {b['polls']} recorded AiHubMix payloads "
            f"({b['payload_bytes']['mean'] / 1024:,.1f} KiB on average)."
        )
    return text + f" Run took {result['elapsed_seconds']:.0f} s."


def ingest_breakdown(result: dict[str, Any]) -> str:
    lines = []
    for key in ("synthetic", "bundled"):
        if key not in result:
            continue
        store = result[key]["store"]
        block = store["block_size"]
        parts = ", ".join(
            f"{t} {v['rows']:,} rows / {v['blocks']} blocks" for t, v in store["tables"].items()
        )
        summary = store["summary"]
        lines.append(
            f"- {key} store: file {report.number(store['bytes'], 'B')}, in use "
            f"{report.number(store['used_bytes'], 'B')} ({block // 1024} KiB blocks; the rest "
            f"are free blocks left by checkpoints); raw archive {summary['raw_payloads']} "
            f"bodies, {report.number(summary['raw_stored_bytes'], 'B')} stored for "
            f"{report.number(summary['raw_bytes'], 'B')}; {summary['versions']} model "
            f"versions. Tables: {parts}."
        )
    return "\n".join(lines)


def ingest_markdown(result: dict[str, Any], title: str = "# Ingest benchmark") -> str:
    return (
        "\n\n".join(
            [
                title,
                ingest_config_line(result),
                report.table(result["rows"]),
                report.machine_line(result["machine"]),
                "Where the store's bytes go:\n\n" + ingest_breakdown(result),
                "Ratios are against baselines measured in the same run; times are never asserted. "
                "`met` applies to the median.",
            ]
        )
        + "\n"
    )


def ingest_headline(result: dict[str, Any]) -> list[dict[str, Any]]:
    from bench.ingest import TARGETS

    c = result["config"]
    rows = []
    for key in ("synthetic", "bundled"):
        if key not in result:
            continue
        h = result[key]
        label = (
            f"synthetic {c['models']:,} models x {c['polls']:,} polls"
            if key == "synthetic"
            else f"bundled AiHubMix ({h['polls']} payloads)"
        )
        store, floor = h["store"], h["json_floor"]["ms"]
        changed = store["changed_ms"]
        row = _headline(
            "ingest",
            f"{label}: replay, ms per changed poll (median of {changed['count']})",
            changed["median"],
            "ms",
            floor["median"],
            "json.loads of the payload",
            f"<= {REPLAY_VS_JSON_FLOOR:g}x JSON floor",
        )
        row["met"] = _at_most(row["ratio"], REPLAY_VS_JSON_FLOOR)
        rows.append(row)
        unchanged = store["unchanged_ms"]
        if unchanged["count"]:
            rows.append(
                _headline(
                    "ingest",
                    f"{label}: unchanged poll, ms (median of {unchanged['count']})",
                    unchanged["median"],
                    "ms",
                    floor["median"],
                    "json.loads of the payload",
                    f"<= {TARGETS['unchanged_ms']:g} ms",
                    _at_most(unchanged["median"], TARGETS["unchanged_ms"]),
                )
            )
        git = h["git"]
        pack = git.get("pack_bytes") if git.get("available") else None
        rows.append(
            _headline(
                "ingest",
                f"{label}: store size (history + raw archive + fetch log)",
                store["bytes"],
                "B",
                pack,
                "git gc --aggressive pack" if pack is not None else "git unavailable",
                "<= 1x git pack",
                h["met"]["store_vs_git_bytes"],
            )
        )
    return rows


def run_ingest(params: dict[str, Any], ctx: Context) -> Outcome:
    from bench import ingest

    runs = []
    for index, size in enumerate(params["synthetic"]):
        bundled = bool(params.get("bundled")) and index == 0
        ctx.log(
            f"  ingest: synthetic {size['models']:,} x {size['polls']:,}"
            + (" + bundled" if bundled else "")
        )
        runs.append(
            ingest.run(
                models=size["models"],
                polls=size["polls"],
                bundled=bundled,
                workdir=ctx.workdir / f"ingest-{index}",
            )
        )
    text = "\n".join(
        ingest_markdown(
            r,
            f"# Ingest benchmark: {r['config']['models']:,} models x {r['config']['polls']:,} "
            "polls",
        )
        for r in runs
    )
    rows = [row for r in runs for row in ingest_headline(r)]
    return Outcome("ok", rows, result={"runs": runs}, text=text)


def ingest_main(argv: list[str] | None = None) -> int:
    """`python -m bench ingest`: the ingest benchmark alone, with all its options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench ingest", description="The ingest benchmark alone."
    )
    parser.add_argument("--models", type=int, default=1000, help="synthetic catalog size")
    parser.add_argument("--polls", type=int, default=1000, help="synthetic polls")
    parser.add_argument(
        "--change-rate", type=float, default=0.01, help="share of models changing on a changed poll"
    )
    parser.add_argument(
        "--changed-poll-share", type=float, default=0.3, help="share of polls that change anything"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-bundled", action="store_true", help="skip the bundled AiHubMix history"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the databases and git repos go (default: a temp folder)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the store's changed polls (a separate pass)",
    )
    args = parser.parse_args(argv)
    from bench.ingest import profile_store, run

    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        result = run(
            models=args.models,
            polls=args.polls,
            workdir=workdir,
            bundled=not args.no_bundled,
            change_rate=args.change_rate,
            changed_poll_share=args.changed_poll_share,
            seed=args.seed,
        )
        text = ingest_markdown(result)
        if args.profile:
            from bench.synthetic import catalog_history

            history = list(
                catalog_history(
                    args.models, args.polls, args.change_rate, args.changed_poll_share, args.seed
                )
            )
            profile = profile_store(history, workdir / "profile-store.duckdb")
            text += "\n## cProfile of the store's changed polls\n\n```\n" + profile + "```\n"
    print(text)
    json_path, md_path = report.write(args.out, "ingest", result, text)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


# -- query and serve ---------------------------------------------------------------------
def run_query(params: dict[str, Any], ctx: Context) -> Outcome:
    from bench import query

    result = query.run(workdir=ctx.query_cache, **params)
    head = result["models"][query.HEADLINE]
    cli = result["cli"]
    rows = [
        _headline(
            "query",
            f"as-of query `models` [{query.HEADLINE}], ms (median of "
            f"{head['ms']['count']} instants)",
            head["ms"]["median"],
            "ms",
            head["floor_ms"]["median"],
            "polars filter+sort of a ready frame",
            f"<= {query.TARGETS['models_ms']:g} ms",
            result["met"]["models_ms"],
        )
    ]
    if cli is not None:
        rows.append(
            _headline(
                "query",
                f"CLI cold start, `modelwatch models --format json --type llm` "
                f"(median of {cli['cli']['s']['count']})",
                result["figures"]["cli_s_median"],
                "s",
                cli["python_pass"]["s"]["median"],
                "python -c pass",
                f"<= {query.TARGETS['cli_s']:g} s",
                result["met"]["cli_s"],
            )
        )
    return Outcome("ok", rows, result=result, text=query.markdown(result))


def run_serve(params: dict[str, Any], ctx: Context) -> Outcome:
    from bench import serve

    result = serve.run(workdir=ctx.workdir / "serve", **params)
    generator = result["config"]["generators"][0]
    s = result["scenarios"]
    rows = [
        _headline(
            "serve",
            f"served full body ({result['body']['models']:,} models, "
            f"{result['body']['bytes'] / 1024:,.0f} KiB), req/s [{generator}]",
            s["dynamic 200"]["rps"],
            "req/s",
            s["static 200"]["rps"],
            "the same bytes served static",
            f">= {serve.TARGET_RATIO:g}x static",
            result["met"]["dynamic_vs_static_rps"],
        )
    ]
    return Outcome("ok", rows, result=result, text=serve.markdown(result))


# -- sources -----------------------------------------------------------------------------
def _sources_module() -> Any | None:
    if importlib.util.find_spec("bench.sources") is None:
        return None
    import bench.sources

    return bench.sources


def _json_floor(files: list[tuple[datetime, Path]]) -> dict[str, Any]:
    """`json.loads` of each payload (read beforehand, untimed): ms per payload."""
    from bench.ingest import _stats
    from pipeline.ingest import read_payload

    times = []
    for _, path in files:
        body = read_payload(path)
        t0 = time.perf_counter()
        json.loads(body)
        times.append((time.perf_counter() - t0) * 1000)
    return {"ms": _stats(times)}


def run_sources(params: dict[str, Any], ctx: Context) -> Outcome:
    module = _sources_module()
    if module is None:
        return Outcome("skipped", reason="bench/sources.py does not exist")
    root = Path(params.get("root") or module.SHARED_DATA)
    present = [s for s in module.SOURCES if (root / s).is_dir()]
    if not present:
        return Outcome("skipped", reason=f"no shared history under {root}")
    # a fresh process: its replay child's peak RSS then starts from a small parent
    argv = [
        sys.executable,
        "-m",
        "bench.sources",
        "--root",
        str(root),
        "--out",
        str(ctx.out),
        "--workdir",
        str(ctx.workdir / "sources"),
    ]
    if params.get("limit") is not None:
        argv += ["--limit", str(params["limit"])]
    log_path = ctx.workdir / "sources.log"
    with log_path.open("wb") as log:
        proc = subprocess.run(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_env_with_root()
        )
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"python -m bench.sources exited {proc.returncode}:\n{tail}")
    result = json.loads((ctx.out / "sources.json").read_text())
    rows = []
    floors = {}
    for name, s in result["sources"].items():
        if not s.get("available"):
            continue
        files = module.History(Path(s["folder"]), params.get("limit")).files
        floors[name] = _json_floor(files)
        floor = floors[name]["ms"]["median"]
        store = s["store"]
        row = _headline(
            "sources",
            f"{name} ({s['snapshots']} snapshots): replay, ms per snapshot (median)",
            store["ms"]["median"],
            "ms",
            floor,
            "json.loads of the payload",
            f"<= {REPLAY_VS_JSON_FLOOR:g}x JSON floor",
        )
        row["met"] = _at_most(row["ratio"], REPLAY_VS_JSON_FLOOR)
        rows.append(row)
        git = s["git"]
        pack = git.get("pack_bytes") if git.get("available") else None
        row = _headline(
            "sources",
            f"{name}: store size (history + raw archive + fetch log)",
            store["bytes"],
            "B",
            pack,
            "git gc --aggressive pack" if pack is not None else "git unavailable",
            "<= 1x git pack",
        )
        row["met"] = _at_most(row["ratio"], 1.0)
        rows.append(row)
    absent = {k: v.get("reason") for k, v in result["sources"].items() if not v.get("available")}
    return Outcome(
        "ok",
        rows,
        result={"json_floor": floors, "absent": absent},
        files=["sources.md", "sources.json"],
        reason="; ".join(f"{k}: {v}" for k, v in absent.items()),
    )


# -- dlt ---------------------------------------------------------------------------------
def run_dlt(params: dict[str, Any], ctx: Context) -> Outcome:
    from bench import dlt_baseline

    if dlt_baseline.installed() is None:
        ctx.log(dlt_baseline.NOT_INSTALLED)
        return Outcome("not installed", reason=dlt_baseline.NOT_INSTALLED)
    result = dlt_baseline.run(workdir=ctx.workdir / "dlt", **params)
    head = result["rows"][0]
    rows = [
        _headline(
            "dlt",
            head["figure"],
            head["value"],
            head["unit"],
            head["baseline"],
            head["baseline_name"],
            head["target"],
            head["met"],
        )
    ]
    return Outcome("ok", rows, result=result, text=dlt_baseline.markdown(result))


# -- memory ------------------------------------------------------------------------------
# a launcher with nothing imported: its child's peak RSS (RUSAGE_CHILDREN) then starts from
# a few MiB, not from this process's (Linux carries a parent's high-water mark over fork+exec)
_LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True); "
    "sys.exit(code)"
)
_CHILD = "import sys; from bench.__main__ import replay_for_rss; replay_for_rss(sys.argv[1:])"


def _env_with_root() -> dict[str, str]:
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _proc_status_kib(key: str) -> int | None:
    """`VmHWM` (this process's own peak RSS) or `VmRSS` from /proc/self/status, in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def history_files(folder: Path) -> list[tuple[datetime, Path]]:
    """A recorded history's payloads, oldest first: files named by their time (so not
    `index.json`), as `bench.sources` reads them."""
    from pipeline.errors import BadInput
    from pipeline.timeutil import time_from_filename

    files = []
    for path in folder.iterdir():
        if not path.name.endswith((".json", ".json.gz")):
            continue
        try:
            files.append((time_from_filename(path.name), path))
        except BadInput:
            continue
    return sorted(files)


def replay_for_rss(argv: list[str]) -> None:
    """Child process: replay `--snapshots` snapshots into a fresh store and print, as JSON,
    this process's peak RSS and what it held: the largest payload, the current catalog."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--snapshots", type=int, required=True)
    parser.add_argument("--source", default="synthetic")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--models", type=int, default=1000)
    args = parser.parse_args(argv)
    from bench.ingest import _fresh, db_bytes
    from bench.synthetic import catalog_history
    from pipeline.ingest import read_payload
    from pipeline.store import Store

    if args.source == "synthetic":  # every poll changes about 1% of the models
        history: Any = catalog_history(args.models, args.snapshots, 0.01, 1.0, 0)
        source, kind = "aihubmix", None
    else:
        files = history_files(args.folder)[: args.snapshots]
        history = ((at, read_payload(path)) for at, path in files)
        source, kind = args.source, args.source
    largest = replayed = 0
    started = time.perf_counter()
    with Store.open(_fresh(args.db)) as store:
        for fetched_at, body in history:
            largest = max(largest, len(body))
            ingest(
                store,
                body,
                source=source,
                kind=kind,
                fetched_at=fetched_at,
                accept_mass_removal=True,
            )
            replayed += 1
            del body
        summary = store.summary()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "snapshots": replayed,
                "seconds": seconds,
                "vm_hwm_kib": _proc_status_kib("VmHWM"),
                "vm_rss_kib": _proc_status_kib("VmRSS"),
                "largest_payload_bytes": largest,
                "models_now": summary["models_now"],
                "versions": summary["versions"],
                "db_bytes": db_bytes(args.db)["bytes"],
            }
        ),
        flush=True,
    )


def measure_rss(
    snapshots: int, workdir: Path, *, source: str, folder: Path | None, models: int
) -> dict[str, Any]:
    """One replay of `snapshots` snapshots in a fresh child; its peak RSS in bytes."""
    child = [
        sys.executable,
        "-c",
        _CHILD,
        "--db",
        str(workdir / f"rss-{snapshots}.duckdb"),
        "--snapshots",
        str(snapshots),
        "--source",
        source,
        "--models",
        str(models),
    ]
    if folder is not None:
        child += ["--folder", str(folder)]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *child],
        cwd=ROOT,
        env=_env_with_root(),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the replay child exited {proc.returncode}: {proc.stderr[-1500:]}")
    *_, payload, maxrss = proc.stdout.strip().splitlines()
    figures = json.loads(payload)
    figures["ru_maxrss_kib"] = int(maxrss)  # KiB on Linux
    figures["peak_rss_bytes"] = int(maxrss) * 1024
    return figures


def _largest_history(params: dict[str, Any]) -> tuple[str, Path] | None:
    """The shared history with the most bytes (or the one named by `source`), if any."""
    source = params.get("source", "auto")
    if source == "synthetic":
        return None
    module = _sources_module()
    root = Path(
        params.get("root") or (module.SHARED_DATA if module else ROOT.parent / "shared" / "data")
    )
    names = ("openrouter", "litellm") if source == "auto" else (source,)
    sizes = {
        name: sum(p.stat().st_size for _, p in history_files(root / name))
        for name in names
        if (root / name).is_dir()
    }
    if not sizes or max(sizes.values()) == 0:
        return None
    name = max(sizes, key=lambda n: sizes[n])
    return name, root / name


def run_memory(params: dict[str, Any], ctx: Context) -> Outcome:
    """Peak RSS of replaying 1, `small` and `large` snapshots, each in a fresh child: of the
    largest shared history (whose catalog and payloads grow over its two years), and of a
    synthetic one whose catalog keeps its size (so only the history's length grows)."""
    workdir = ctx.workdir / "memory"
    workdir.mkdir(parents=True, exist_ok=True)
    small, large = params["snapshots"]
    histories: list[tuple[str, str, Path | None]] = []
    real = _largest_history(params)
    if real is not None:
        histories.append((f"{real[0]} history", real[0], real[1]))
    histories.append((f"synthetic {params['models']:,} models", "synthetic", None))
    rows: list[dict[str, Any]] = []
    measured = []
    for label, source, folder in histories:
        if folder is not None and len(history_files(folder)) < large:
            ctx.log(f"  memory: {source} has fewer than {large} snapshots")
        runs = {}
        for n in (1, small, large):
            ctx.log(f"  memory: {label}, {n} snapshot(s) in a child process")
            runs[n] = measure_rss(n, workdir, source=source, folder=folder, models=params["models"])
        one, a, b = runs[1], runs[small], runs[large]
        growth = report.ratio(b["peak_rss_bytes"], a["peak_rss_bytes"])
        rows += [
            _headline(
                "memory",
                f"{label}: peak RSS replaying {a['snapshots']} snapshots",
                a["peak_rss_bytes"],
                "B",
                one["peak_rss_bytes"],
                "the first snapshot alone",
            ),
            _headline(
                "memory",
                f"{label}: peak RSS replaying {b['snapshots']} snapshots",
                b["peak_rss_bytes"],
                "B",
                a["peak_rss_bytes"],
                f"{a['snapshots']} snapshots",
                f"<= {RSS_GROWTH:g}x the {small}-snapshot peak",
                _at_most(growth, RSS_GROWTH),
            ),
        ]
        measured.append(
            {
                "label": label,
                "source": source,
                "folder": str(folder) if folder else None,
                "models": params["models"] if folder is None else None,
                "runs": runs,
                "rss_growth": growth,
            }
        )
    lines = [
        "# Peak RSS of a replay, by history length",
        "",
        "Each replay runs in a fresh child process, into a fresh store, started by a "
        "launcher that imports nothing, so the child's `ru_maxrss` (`RUSAGE_CHILDREN` "
        "of the launcher) is its own; `VmHWM` is the child's own reading of the same "
        "peak. A real history's catalog and payloads grow with it; the synthetic "
        "catalog keeps its size (about 1% of its models change per snapshot), so "
        "only the history's length grows.",
        "",
        "| history | snapshots | peak RSS (ru_maxrss) | VmHWM | RSS at the end "
        "| largest payload | models now | versions | store file | replay |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for history in measured:
        for r in history["runs"].values():
            hwm = r["vm_hwm_kib"]
            rss = r["vm_rss_kib"]
            lines.append(
                f"| {history['label']} | {r['snapshots']} "
                f"| {report.number(r['peak_rss_bytes'], 'B')} "
                f"| {report.number(hwm * 1024, 'B') if hwm else 'n/a'} "
                f"| {report.number(rss * 1024, 'B') if rss else 'n/a'} "
                f"| {report.number(r['largest_payload_bytes'], 'B')} | {r['models_now']:,} "
                f"| {r['versions']:,} | {report.number(r['db_bytes'], 'B')} "
                f"| {r['seconds']:,.1f} s |"
            )
    lines += ["", report.machine_line(report.machine())]
    return Outcome("ok", rows, result={"histories": measured}, text="\n".join(lines) + "\n")


RUNNERS: dict[str, Callable[[dict[str, Any], Context], Outcome]] = {
    "ingest": run_ingest,
    "query": run_query,
    "serve": run_serve,
    "sources": run_sources,
    "dlt": run_dlt,
    "memory": run_memory,
}


# -- the whole run -----------------------------------------------------------------------
def run_all(
    plan: dict[str, dict[str, Any]],
    *,
    out: Path,
    workdir: Path,
    only: list[str] | None = None,
    query_cache: Path | None = None,
    preset: str = "custom",
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run the selected benches of `plan` in order; write each bench's files and the
    summary to `out`; return the summary. A failing bench is reported, not raised."""
    started = time.perf_counter()
    machine = report.machine()  # the load average before anything runs
    selected = [b for b in BENCHES if (only is None or b in only) and b in plan]
    out.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        out=out, workdir=workdir, log=log, query_cache=query_cache or workdir / "query-cache"
    )
    benches: dict[str, dict[str, Any]] = {}
    headline: list[dict[str, Any]] = []
    for index, name in enumerate(selected, start=1):
        log(f"[{index}/{len(selected)}] {name} ...")
        t0 = time.perf_counter()
        try:
            outcome = RUNNERS[name](copy.deepcopy(plan[name]), ctx)
        except Exception as exc:  # one bench's failure must not lose the others' figures
            log(traceback.format_exc())
            outcome = Outcome("error", reason=f"{type(exc).__name__}: {exc}"[:2000])
        seconds = time.perf_counter() - t0
        files = list(outcome.files)
        if outcome.result is not None and outcome.text:
            json_path, md_path = report.write(out, name, outcome.result, outcome.text)
            files += [md_path.name, json_path.name]
        benches[name] = {
            "status": outcome.status,
            "reason": outcome.reason,
            "seconds": seconds,
            "files": files,
        }
        headline += outcome.rows
        log(
            f"[{index}/{len(selected)}] {name}: {outcome.status} in {seconds:.0f} s"
            + (f" ({outcome.reason.splitlines()[0]})" if outcome.reason else "")
        )
    summary = {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "preset": preset,
        "revision": report.revision(),
        "machine": machine,
        "config": plan,
        "benches": benches,
        "headline": headline,
        "met": _tally(headline),
        "elapsed_seconds": time.perf_counter() - started,
    }
    report.write(out, "summary", summary, summary_markdown(summary))
    return summary


def _tally(rows: list[dict[str, Any]]) -> dict[str, int]:
    judged = [r["met"] for r in rows if r["met"] is not None]
    return {"targets": len(judged), "met": sum(judged), "not_met": len(judged) - sum(judged)}


def summary_markdown(summary: dict[str, Any]) -> str:
    tally = summary["met"]
    lines = [
        "# modelwatch benchmarks",
        "",
        f"`python -m bench` ({summary['preset']} sizes) at commit "
        f"{summary['revision'] or 'unknown'}, {summary['generated_at']} UTC, "
        f"{summary['elapsed_seconds'] / 60:,.1f} min. Targets met: {tally['met']} of "
        f"{tally['targets']}.",
        "",
        report.machine_line(summary["machine"]),
        "",
        report.table(summary["headline"], bench_column=True),
        "",
        "| bench | status | time | details |",
        "|---|---|---:|---|",
    ]
    for name, b in summary["benches"].items():
        links = ", ".join(f"[{f}]({f})" for f in b["files"] if f.endswith(".md"))
        reason = b["reason"].splitlines()[0] if b["reason"] else ""
        details = "; ".join(p for p in (reason, links) if p)
        lines.append(f"| {name} | {b['status']} | {b['seconds']:,.0f} s | {details} |")
    lines += [
        "",
        "Each ratio is against a baseline measured in the same run on the same data "
        "(value / baseline); `met` is judged on the median. Times are reported, never "
        "asserted. Peak RSS is measured in fresh child processes (see memory.md).",
    ]
    return "\n".join(lines) + "\n"


def _forward(module: str) -> Callable[[list[str]], int]:
    def main(argv: list[str]) -> int:
        return importlib.import_module(module).main(argv)

    return main


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "ingest": ingest_main,
    "query": _forward("bench.query"),
    "serve": _forward("bench.serve"),
    "sources": _forward("bench.sources"),
    "dlt": _forward("bench.dlt_baseline"),
}


def _only(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown bench {', '.join(unknown) or '(none)'}; choose from {', '.join(BENCHES)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog="One bench with its own options: python -m bench "
        "{ingest,query,serve,sources,dlt} --help",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a minute or two")
    parser.add_argument(
        "--only",
        type=_only,
        default=None,
        metavar="NAMES",
        help=f"comma-separated, of: {','.join(BENCHES)}",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the databases, git repos and servers' files go "
        "(default: a temp folder, removed after)",
    )
    args = parser.parse_args(argv)
    preset = "quick" if args.quick else "full"
    from bench.query import DEFAULT_WORKDIR as QUERY_CACHE

    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-all-") as tmp:
        summary = run_all(
            PRESETS[preset],
            out=args.out,
            workdir=args.workdir or Path(tmp),
            only=args.only,
            query_cache=QUERY_CACHE,
            preset=preset,
        )
    print(summary_markdown(summary))
    print(f"wrote {args.out / 'summary.md'} and {args.out / 'summary.json'}", file=sys.stderr)
    return 1 if any(b["status"] == "error" for b in summary["benches"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
