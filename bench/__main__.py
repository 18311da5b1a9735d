"""`python -m bench [--models N] [--polls N] [--out DIR]`: run the ingest benchmark.

Prints a markdown table (figure, value, baseline, ratio, target, met) and a line about the
machine, and writes `results.json` and `results.md` to `--out` (default `bench/results/`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.ingest import profile_store, run

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "B":
        return f"{value / 1024:,.1f} KiB" if value < 1024**2 else f"{value / 1024**2:,.2f} MiB"
    return f"{value:,.2f} {unit}"


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | value | baseline | ratio | target | met |",
             "|---|---:|---|---:|---|---|"]
    for r in rows:
        baseline = (f"{_number(r['baseline'], r['unit'])} ({r['baseline_name']})"
                    if r["baseline_name"] else "")
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['figure']} | {_number(r['value'], r['unit'])} | {baseline} "
                     f"| {ratio} | {r['target']} | {_met(r['met'])} |")
    return "\n".join(lines)


def machine_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (f"Machine: {m['platform']} ({m['machine']}), {m['cpus']} CPUs, "
            f"Python {m['python']}, duckdb {m['duckdb']}, polars {m['polars']}, "
            f"{m.get('git') or 'git unavailable'}")


def config_line(result: dict[str, Any]) -> str:
    c = result["config"]
    s = result["synthetic"]
    text = (f"Synthetic: {c['models']} models x {c['polls']} polls (5 min apart), "
            f"~{c['change_rate']:.0%} of models changing on {c['changed_poll_share']:.0%} of "
            f"polls, seed {c['seed']}: {s['distinct_payloads']} distinct payloads, "
            f"{s['payload_bytes']['mean'] / 1024:,.0f} KiB each on average.")
    if "bundled" in result:
        b = result["bundled"]
        text += (f" Bundled: {b['polls']} recorded AiHubMix payloads "
                 f"({b['payload_bytes']['mean'] / 1024:,.1f} KiB on average).")
    return text + f" Run took {result['elapsed_seconds']:.0f} s."


def breakdown(result: dict[str, Any]) -> str:
    lines = []
    for key in ("synthetic", "bundled"):
        if key not in result:
            continue
        store = result[key]["store"]
        block = store["block_size"]
        parts = ", ".join(f"{t} {v['rows']:,} rows / {v['blocks']} blocks"
                          for t, v in store["tables"].items())
        summary = store["summary"]
        lines.append(
            f"- {key} store: file {_number(store['bytes'], 'B')}, in use "
            f"{_number(store['used_bytes'], 'B')} ({block // 1024} KiB blocks; the rest are "
            f"free blocks left by checkpoints); raw archive {summary['raw_payloads']} bodies, "
            f"{_number(summary['raw_stored_bytes'], 'B')} stored for "
            f"{_number(summary['raw_bytes'], 'B')}; {summary['versions']} model versions. "
            f"Tables: {parts}.")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    return "\n\n".join([
        "# Ingest benchmark",
        config_line(result),
        table(result["rows"]),
        machine_line(result),
        "Where the store's bytes go:\n\n" + breakdown(result),
        "Ratios are against baselines measured in the same run; times are never asserted. "
        "`met` applies to the median.",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000, help="synthetic catalog size")
    parser.add_argument("--polls", type=int, default=1000, help="synthetic polls")
    parser.add_argument("--change-rate", type=float, default=0.01,
                        help="share of models changing on a changed poll")
    parser.add_argument("--changed-poll-share", type=float, default=0.3,
                        help="share of polls that change anything")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bundled", action="store_true",
                        help="skip the bundled AiHubMix history")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the databases and git repos go (default: a temp folder)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the store's changed polls (a separate pass)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        result = run(models=args.models, polls=args.polls, workdir=workdir,
                     bundled=not args.no_bundled, change_rate=args.change_rate,
                     changed_poll_share=args.changed_poll_share, seed=args.seed)
        text = markdown(result)
        if args.profile:
            from bench.synthetic import catalog_history

            history = list(catalog_history(args.models, args.polls, args.change_rate,
                                           args.changed_poll_share, args.seed))
            profile = profile_store(history, workdir / "profile-store.duckdb")
            text += "\n## cProfile of the store's changed polls\n\n```\n" + profile + "```\n"

    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "results.md").write_text(text)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
