"""All the benches' formatting: the machine line, the rows and their table, each bench's
markdown, the summary, and the files they are written to.

A row is a dict `{figure, value, unit, baseline, baseline_name, ratio, target, met,
headline}` (the summary adds `bench`); `table` renders a list of them as markdown.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import ratio

# distributions whose versions describe a run (absent ones are reported as None)
VERSIONS = ("duckdb", "polars", "pandera", "pyarrow", "uvicorn", "starlette", "httpx", "dlt")
NOTE = (
    "Each ratio is against a baseline measured in the same run on the same data "
    "(value / baseline); `met` is judged on the median. Times are reported, never asserted."
)


# -- the machine ---------------------------------------------------------------------------
def version(distribution: str) -> str | None:
    """The installed version of a distribution, without importing it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first(path: str, prefix: str) -> str | None:
    """The rest of the first line of a /proc file starting with `prefix` (Linux)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run([git, *args], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def revision() -> str | None:
    """The checked-out commit, `+dirty` when the work tree has uncommitted changes."""
    repo = str(Path(__file__).resolve().parents[1])
    head = _git("-C", repo, "rev-parse", "--short", "HEAD")
    dirty = _git("-C", repo, "status", "--porcelain", "--untracked-files=no")
    return None if head is None else head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """The machine and the versions a run depends on; the load average is read now."""
    memory = _first("/proc/meminfo", "MemTotal")
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or None,
        "cpus": os.cpu_count(),
        "memory_bytes": int(memory.split()[0]) * 1024 if memory else None,
        "python": sys.version.split()[0],
        **{name: version(name) for name in VERSIONS},
        "git": _git("--version"),
        "load_average": load,
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line: CPU, cores, memory, Python and library versions, git, load average."""
    memory, load = m.get("memory_bytes"), m.get("load_average")
    parts = [
        f"{m.get('cpu') or 'unknown CPU'} ({m.get('machine')}), {m.get('cpus')} cores",
        f"{memory / 2**30:,.1f} GiB memory" if memory else "memory unknown",
        m.get("platform"),
        f"Python {m.get('python')}",
        ", ".join(f"{name} {m[name]}" for name in VERSIONS if m.get(name)),
        m.get("git") or "git unavailable",
        ("load average " + " / ".join(f"{x:.2f}" for x in load) + " (1/5/15 min) at start")
        if load
        else "load average unknown",
    ]
    return "Machine: " + "; ".join(str(p) for p in parts if p) + "."


# -- rows and tables -----------------------------------------------------------------------
def row(
    figure: str,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    met: bool | None = None,
    *,
    headline: bool = False,
    why: str = "",
) -> dict[str, Any]:
    """One figure against its baseline (measured in the same run), its target and verdict;
    `headline` rows also go into the summary; `why` says what keeps a missed target
    missed (the summary lists it)."""
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio(value, baseline),
        "target": target,
        "met": met,
        "headline": headline,
        "why": why,
    }


def prefixed(prefix: str) -> Callable[..., dict[str, Any]]:
    """`row`, with every figure's name starting with `prefix`."""
    return lambda figure, *args, **kwargs: row(prefix + figure, *args, **kwargs)


def number(value: float | None, unit: str) -> str:
    """A value in its unit: bytes as KiB/MiB/GiB, seconds to the ms, rates as integers."""
    if value is None:
        return "n/a"
    if unit == "B":
        if value < 1024**2:
            return f"{value / 1024:,.1f} KiB"
        return f"{value / 1024**2:,.2f} MiB" if value < 1024**3 else f"{value / 1024**3:,.2f} GiB"
    if unit == "s":
        return f"{value:,.3f} s"
    if unit in ("req/s", "us/req", "rows", "answers"):
        return f"{value:,.0f} {unit}"
    if unit == "us/call":
        return f"{value:,.1f} us"
    return f"{value:,.2f} {unit}"


def table(rows: list[dict[str, Any]], *, bench_column: bool = False) -> str:
    """Markdown: [bench |] figure | value | baseline (its name) | ratio | target | met."""
    lines = [
        ("| bench " if bench_column else "")
        + "| figure | value | baseline | ratio | target | met |",
        ("|---" if bench_column else "") + "|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        baseline = f"{number(r['baseline'], r['unit'])} ({r['baseline_name']})"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            (f"| {r['bench']} " if bench_column else "")
            + f"| {r['figure']} | {number(r['value'], r['unit'])} "
            + f"| {baseline if r['baseline_name'] else ''} "
            + f"| {'n/a' if r['ratio'] is None else format(r['ratio'], ',.2f') + 'x'} "
            + f"| {r['target']} | {met} |"
        )
    return "\n".join(lines)


def _grid(head: list[str], rows: list[list[Any]]) -> str:
    """A plain markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def write(out: Path, name: str, data: dict[str, Any], text: str) -> list[str]:
    """`<out>/<name>.md` (the markdown) and `<out>/<name>.json` (the data); their names."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(text if text.endswith("\n") else text + "\n")
    return [f"{name}.md", f"{name}.json"]


# -- each bench's markdown: (its title, paragraphs before its table, paragraphs after) -----
Parts = tuple[list[str], list[str]]


def _ingest(d: dict[str, Any]) -> Parts:
    before, after = [], []
    for r in d["runs"]:
        c, s = r["config"], r["synthetic"]
        before.append(
            f"Synthetic: {c['models']:,} models x {c['polls']:,} polls (5 min apart), "
            f"~{c['change_rate']:.0%} of models changing on {c['changed_poll_share']:.0%} of "
            f"polls, seed {c['seed']}: {s['distinct_payloads']} distinct payloads, "
            f"{s['payload_bytes']['mean'] / 1024:,.0f} KiB each on average."
        )
        label = {"synthetic": f"synthetic {c['models']:,} x {c['polls']:,}", "bundled": "bundled"}
        for name, h in ((label[k], v) for k, v in r.items() if k in label):
            st = h["store"]
            tables = ", ".join(
                f"{t} {v['rows']:,} rows / {v['blocks']} blocks" for t, v in st["tables"].items()
            )
            after.append(
                f"- {name} ({h['polls']} polls): file {number(st['bytes'], 'B')}, in use "
                f"{number(st['used_bytes'], 'B')} ({st['block_size'] // 1024} KiB blocks); raw "
                f"archive {number(st['summary']['raw_stored_bytes'], 'B')}; {tables}"
            )
    return before, ["Where each store's bytes go:\n\n" + "\n".join(after)]


def _query(d: dict[str, Any]) -> Parts:
    c, build = d["config"], d["build"]
    s, st = build["store"]["summary"], build["store"]
    built = "reused from the cache" if build["cached"] else "built in this run"
    agree = ", ".join(f"{k}: {v['agrees_with_naive']}" for k, v in d["models"].items())
    return [
        f"Synthetic: {c['models']} models, {c['days']} days x {c['polls_per_day']} polls/day "
        f"({c['polls']:,} polls), ~{c['changes_per_day']} changed polls/day of 1-5 models, "
        f"seed {c['seed']}: {s['snapshots']:,} snapshots, {s['versions']:,} model versions, "
        f"{s['fetches']:,} fetch_log rows. Store {built} ({st['seconds']:.0f} s: "
        f"{st['ingested_polls']} polls through `ingest` at {st['ingest_ms']['median']:.0f} ms "
        f"median, the unchanged ones bulk-inserted in {st['bulk_insert_seconds']:.2f} s); store "
        f"file {number(st['bytes'], 'B')}, naive table {build['naive']['rows']:,} rows / "
        f"{number(build['naive']['bytes'], 'B')}. {c['repeats']} random as-of instants, "
        f"{c['changes_repeats']} random 90-day windows."
    ], [f"Store and naive results agree: {agree}."]


def _serve(d: dict[str, Any]) -> Parts:
    c, body, db = d["config"], d["body"], d["db"]
    if d["generator"] == "wrk":
        load = f"{d['wrk']} (`wrk -t{min(c['wrk_threads'], c['connections'])} -c{c['connections']}"
        load += f" -d{max(1, round(c['duration']))}s --latency`)"
    else:
        load = (
            f"the bench's own async httpx loop ({c['connections']} clients of one keep-alive "
            f"connection each, {c['duration']:g} s or {c['max_requests']:,} requests, whichever "
            "comes first, after one untimed request each)"
        )
    cells = (("rps", ",.0f", ""), ("p50_ms", ".2f", " ms"), ("p99_ms", ".2f", " ms"))
    cells += (("server_cpu_us_per_request", ",.0f", " us"), ("server_cpu_share", ".0%", ""))
    cells += (("client_cpu_share", ".0%", ""),)
    scenarios = [
        [f"{name} `{s['path']}`", f"{s['requests']:,}", s["errors"]]
        + ["n/a" if s[k] is None else format(s[k], fmt) + unit for k, fmt, unit in cells]
        for name, s in d["scenarios"].items()
    ]
    head = ["scenario", "requests", "errors", "req/s", "p50", "p99", "server CPU/req"]
    after = [
        _grid(head + ["server CPU", "client CPU"], scenarios),
        f"Load: {load}, {c['rounds']} round(s) per scenario (medians), on the same machine as "
        f"the server ({d['wrk_note']}). uvicorn loop {d['uvicorn_loop']}, http "
        f"{d['uvicorn_http']}. Server CPU is user+system time of the server process (/proc) "
        "per answered request; CPU shares are of one CPU over the load's wall time.",
    ]
    if "asgi" in d:
        after.append(
            f"`[ASGI, no socket]` rows call the apps in process with a fake receive/send "
            f"({d['asgi']['calls']:,} calls each): the handlers' own cost, through the bench's "
            "`Mount` and without it (as `modelwatch serve` runs the app)."
        )
    return [
        f"Synthetic store: {db['models']} models x {db['polls']} polls (built in "
        f"{db['seconds']:.1f} s). `GET /api/v1/models` answers {body['models']} models in "
        f"{body['bytes'] / 1024:,.1f} KiB; `/static` holds the same bytes and headers (checked: "
        f"{body['same_bytes_as_static']}), served by the same uvicorn process."
    ], after


def _sources(d: dict[str, Any]) -> Parts:
    rows = []
    for name, s in d["sources"].items():
        if not s.get("available"):
            rows.append([name, s["reason"], "", "", "", ""])
            continue
        st, p = s["store"], s["payload_bytes"]
        rows.append(
            [
                name,
                f"{s['snapshots']} ({s['first'][:10]} .. {s['last'][:10]})",
                f"{number(p['raw_total'], 'B')} / {number(p['file_total'], 'B')}",
                ", ".join(f"{k} {v}" for k, v in st["outcomes"].items()),
                f"{st['quarantined_rows']:,}",
                f"{st['seconds']:,.1f} s",
            ]
        )
    head = ["history", "snapshots", "payloads raw / files", "outcomes", "quarantined", "replay"]
    return [], [
        _grid(head, rows),
        "The store replays with `accept_mass_removal` (a recorded history is trusted), in a "
        "fresh child process, so its peak RSS is its own (see memory.py).",
    ]


def _dlt(d: dict[str, Any]) -> Parts:
    c, dl = d["config"], d["dlt"]
    return [
        f"The first load and {d['snapshots'] - 1} changed polls of the synthetic {c['models']}"
        f"-model catalog (seed {c['seed']}, {d['payload_bytes_mean'] / 1024:,.0f} KiB per "
        f"payload), loaded by dlt {dl['version']} (`merge`/`scd2` into DuckDB, "
        '`primary_key="model_id"`, `boundary_timestamp` = poll time) and by `ingest`, in the '
        f"same run. Both keep the same history: {d['same_history']} ({dl['versions']:,} "
        f"versions, {dl['models_now']:,} models now)."
    ], [
        "dlt's time is `pipeline.run` alone (extract, normalise, load into DuckDB): the rows "
        "are parsed and normalised beforehand, untimed; modelwatch's includes parsing, "
        "normalising, the raw archive and the fetch log."
    ]


def _memory(d: dict[str, Any]) -> Parts:
    kib = lambda v: number(v * 1024, "B") if v else "n/a"  # noqa: E731
    rows = [
        [
            h["label"],
            r["snapshots"],
            number(r["peak_rss_bytes"], "B"),
            kib(r["vm_hwm_kib"]["final"]),
            kib(r["vm_rss_kib"]),
            number(r["largest_payload_bytes"], "B"),
            f"{r['summary']['models_now']:,}",
            f"{r['summary']['versions']:,}",
            number(r["bytes"], "B"),
            f"{r['seconds']:,.1f} s",
        ]
        for h in d["histories"]
        for r in h["runs"].values()
    ]
    head = ["history", "snapshots", "peak RSS (ru_maxrss)", "VmHWM", "RSS at the end"]
    head += ["largest payload", "models now", "versions", "store file", "replay"]
    return [
        "Each replay runs in a fresh child process, into a fresh store, started by a launcher "
        "that imports nothing, so the child's `ru_maxrss` (`RUSAGE_CHILDREN` of the launcher) "
        "is its own; `VmHWM` is the child's own reading of the same peak. A real history's "
        "catalog and payloads grow with it; the synthetic catalog keeps its size (about 1% of "
        "its models change per snapshot), so only the history's length grows."
    ], [_grid(head, rows)]


def _always_on(d: dict[str, Any]) -> Parts:
    c, s, p = d["config"], d["serving"], d["spool"]
    head = ["load", "requests", "failed", "statuses", "other ETag", "req/s", "p50", "p99"]
    loads = [
        [name, f"{x['requests']:,}", x["failures"], x["statuses"], x["other_etag"]]
        + [format(x["rps"] or 0, ",.0f"), f"{x['p50_ms']:.2f} ms", f"{x['p99_ms']:.2f} ms"]
        for name, x in (("no writer", s["alone"]), ("concurrent replay", s["writer"]))
    ]
    replay = s["replay"]
    return [
        f"`modelwatch serve --db` (a child process) serves a synthetic store of "
        f"{s['db']['models']} models; {len(s['urls'])} distinct `GET /api/v1/models` queries, "
        f"each answered once first, loaded by {c['threads']} client threads (one keep-alive "
        f"httpx connection each): {c['duration']:g} s without a writer, then while "
        f"`modelwatch replay` of {s['snapshots']} OpenRouter snapshots writes the same store in "
        f"another process ({replay['seconds']:.1f} s, exit {replay['returncode']}, bounded at "
        f"{c['max_seconds']:g} s). Then a fetch from a local upstream while another process "
        f"holds the store for {c['hold']:g} s: spooled, and applied once the store is free."
    ], [
        _grid(head, loads),
        f"Spool: held {p['hold_s']:.2f} s; fetch -> spooled {p['fetch_to_spooled_s']:.2f} s; "
        f"release -> applied {p['release_to_applied_s']:.3f} s; fetch -> applied "
        f"{p['fetch_to_applied_s']:.2f} s (applied: {', '.join(p['applied']) or 'nothing'}).",
    ]


TITLES = {
    "ingest": "Ingest benchmark",
    "query": "Query benchmark",
    "serve": "Serve benchmark",
    "sources": "Replay of real histories",
    "dlt": "dlt scd2 baseline",
    "memory": "Peak RSS of a replay, by history length",
    "always_on": "Always on: serving beside a writer, and the spool",
}
PARTS: dict[str, Callable[[dict[str, Any]], Parts]] = {
    "ingest": _ingest,
    "query": _query,
    "serve": _serve,
    "sources": _sources,
    "dlt": _dlt,
    "memory": _memory,
    "always_on": _always_on,
}


def markdown(name: str, status: str, rows: list[dict[str, Any]], data: dict[str, Any]) -> str:
    """One bench's page: what was measured, its table, its details, the machine."""
    before, after = PARTS[name](data) if status == "ok" else ([], [])
    parts = [f"# {TITLES[name]}", *before, table(rows) if rows else "", *after]
    parts += [f"{machine_line(data['machine'])} Run took {data['seconds']:.0f} s.", NOTE]
    return "\n\n".join(p for p in parts if p) + "\n"


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
        machine_line(summary["machine"]),
        "",
        table(summary["headline"], bench_column=True),
        "",
        "| bench | status | time | details |",
        "|---|---|---:|---|",
    ]
    for name, b in summary["benches"].items():
        links = ", ".join(f"[{f}]({f})" for f in b["files"] if f.endswith(".md"))
        details = "; ".join(p for p in (b["reason"].split("\n")[0], links) if p)
        lines.append(f"| {name} | {b['status']} | {b['seconds']:,.0f} s | {details} |")
    missed = [r for r in summary["headline"] if r.get("met") is False and r.get("why")]
    if missed:
        lines += ["", "Targets missed, and why (more in docs/notes.md):", ""]
        lines += [f"- {r['figure']}: {r['why']}" for r in missed]
    lines += ["", NOTE + " Peak RSS is measured in fresh child processes (see memory.md)."]
    return "\n".join(lines) + "\n"
