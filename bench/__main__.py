"""`python -m bench`: every benchmark in one run, and one table of the headline figures.

    python -m bench [--quick] [--only ingest,query,...] [--set BENCH.KEY=VALUE ...]
                    [--out DIR] [--workdir DIR] [--docs]

runs ingest, query, serve, sources, dlt, memory and always_on in turn (`BENCHES`; each module's
docstring says what it measures; a bench that fails or cannot run is reported, and the
others still run), and writes `<out>/summary.md` and `summary.json`: the headline figures,
each against a baseline measured in the same run, with its target and whether it is met,
and the machine; beside each bench's own `<name>.md` and `<name>.json`. `--quick` runs
small sizes (a minute or two). `--set` changes one parameter of the plan, read as JSON when
it parses (`--set ingest.synthetic='[{"models": 500, "polls": 200}]'`, `--set
serve.load=httpx`). Times are never asserted.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import Log, Result, report
from bench.measure import now

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs"
BENCHES = ("ingest", "query", "serve", "sources", "dlt", "memory", "always_on")
MODULES = {"dlt": "dlt_baseline"}  # a bench's module, when not named after it

QUERY = ("models", "days", "polls_per_day", "changes_per_day", "repeats", "changes_repeats")
QUERY += ("naive_changes_repeats", "cli_runs")
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "ingest": {
            "synthetic": [{"models": 1000, "polls": 1000}, {"models": 10000, "polls": 200}],
            "bundled": True,
        },
        "query": dict(zip(QUERY, (1000, 365, 288, 3, 200, 50, 10, 10), strict=True)),
        "serve": {"models": 1000, "duration": 5.0, "connections": 32, "rounds": 3},
        "sources": {"limit": None},
        "dlt": {"models": 1000, "snapshots": 30},
        "memory": {"source": "auto", "models": 1000, "snapshots": [100, 400]},
        "always_on": {"duration": 10.0, "snapshots": None, "max_seconds": 300.0, "hold": 60.0},
    },
    "quick": {
        "ingest": {
            "synthetic": [{"models": 200, "polls": 200}, {"models": 2000, "polls": 20}],
            "bundled": True,
        },
        "query": dict(zip(QUERY, (200, 30, 96, 3, 50, 10, 3, 3), strict=True)),
        "serve": {"models": 1000, "duration": 1.0, "connections": 16, "rounds": 1},
        "sources": {"limit": 30},
        "dlt": {"models": 1000, "snapshots": 5},
        "memory": {"source": "auto", "models": 200, "snapshots": [25, 100]},
        "always_on": {"duration": 2.0, "snapshots": 20, "max_seconds": 15.0, "hold": 5.0},
    },
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_one(name: str, params: dict[str, Any], workdir: Path, log: Log) -> Result:
    """One bench by the protocol; a failure is its result (`error`), not raised."""
    module = importlib.import_module(f"bench.{MODULES.get(name, name)}")
    try:
        return module.run(copy.deepcopy(params), workdir / name, log)
    except Exception as exc:  # one bench's failure must not lose the others' figures
        log(traceback.format_exc())
        return Result("error", reason=f"{type(exc).__name__}: {exc}"[:2000])


def run_all(
    plan: dict[str, dict[str, Any]],
    *,
    out: Path,
    workdir: Path,
    only: list[str] | None = None,
    preset: str = "custom",
    log: Log = _log,
) -> dict[str, Any]:
    """Run the selected benches of `plan` in order; write each bench's files and the
    summary to `out`; return the summary."""
    started = time.perf_counter()
    machine = report.machine()  # the load average before anything runs
    selected = [b for b in BENCHES if (only is None or b in only) and b in plan]
    benches: dict[str, dict[str, Any]] = {}
    headline: list[dict[str, Any]] = []
    for index, name in enumerate(selected, start=1):
        log(f"[{index}/{len(selected)}] {name} ...")
        data = {"generated_at": now(), "machine": report.machine(), "config": plan[name]}
        t0 = time.perf_counter()
        result = run_one(name, plan[name], workdir, log)
        seconds = time.perf_counter() - t0
        data |= {"status": result.status, "reason": result.reason, "seconds": seconds}
        data |= {"rows": result.rows, **result.data}
        text = report.markdown(name, result.status, result.rows, data)
        files = report.write(out, name, data, text)
        benches[name] = {**{k: data[k] for k in ("status", "reason", "seconds")}, "files": files}
        headline += [{"bench": name, **r} for r in result.rows if r["headline"]]
        reason = f" ({result.reason.splitlines()[0]})" if result.reason else ""
        log(f"[{index}/{len(selected)}] {name}: {result.status} in {seconds:.0f} s{reason}")
    judged = [r["met"] for r in headline if r["met"] is not None]
    summary = {
        "generated_at": now(),
        "preset": preset,
        "revision": report.revision(),
        "machine": machine,
        "config": plan,
        "benches": benches,
        "headline": headline,
        "met": {"targets": len(judged), "met": sum(judged), "not_met": judged.count(False)},
        "elapsed_seconds": time.perf_counter() - started,
    }
    report.write(out, "summary", summary, report.summary_markdown(summary))
    return summary


def _only(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown bench {', '.join(unknown) or '(none)'}; choose from {', '.join(BENCHES)}"
        )
    return names


def _setting(text: str) -> tuple[str, str, Any]:
    """`BENCH.KEY=VALUE`: the value as JSON when it parses, else as a string."""
    key, sep, value = text.partition("=")
    bench, dot, param = key.partition(".")
    if not (sep and dot and param) or bench not in BENCHES:
        raise argparse.ArgumentTypeError(f"expected BENCH.KEY=VALUE with BENCH in {BENCHES}")
    try:
        return bench, param, json.loads(value)
    except json.JSONDecodeError:
        return bench, param, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a minute or two")
    parser.add_argument("--only", type=_only, default=None, metavar="NAMES", help=",".join(BENCHES))
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="B.K=V")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the databases, git repos and servers' files go (default: a temp folder)",
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        help="also write the summary to docs/benchmarks-<date>.md (the table the docs cite)",
    )
    args = parser.parse_args(argv)
    preset = "quick" if args.quick else "full"
    plan = copy.deepcopy(PRESETS[preset])
    plan["query"]["cache"] = str(DEFAULT_OUT / "query-work")  # the built year is kept
    for bench, param, value in args.set:
        plan[bench][param] = value
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-") as tmp:
        summary = run_all(
            plan, out=args.out, workdir=args.workdir or Path(tmp), only=args.only, preset=preset
        )
    print(report.summary_markdown(summary))
    print(f"wrote {args.out / 'summary.md'} and {args.out / 'summary.json'}", file=sys.stderr)
    if args.docs:
        docs = DOCS / f"benchmarks-{time.strftime('%Y-%m-%d', time.gmtime())}.md"
        docs.write_text((args.out / "summary.md").read_text())
        print(f"wrote {docs}", file=sys.stderr)
    return 1 if any(b["status"] == "error" for b in summary["benches"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
