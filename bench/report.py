"""What every benchmark prints: the machine it ran on, its table of figures, and its files.

A row is a dict `{figure, value, unit, baseline, baseline_name, ratio, target, met}` (the
harness's summary adds `bench`); `table` renders a list of them as markdown, `write` saves a
result as `<name>.json` and its markdown as `<name>.md`.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# distributions whose versions describe a run (absent ones are reported as None)
VERSIONS = ("duckdb", "polars", "pandera", "pyarrow")


def version(distribution: str) -> str | None:
    """The installed version of a distribution, without importing it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """`model name` of the first CPU in /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_bytes() -> int | None:
    """Total memory, from /proc/meminfo (Linux) or sysconf."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def git_version() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        return subprocess.run(
            [git, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def revision(repo: Path | None = None) -> str | None:
    """The checked-out commit, `+dirty` when the work tree has uncommitted changes."""
    git = shutil.which("git")
    repo = repo or Path(__file__).resolve().parents[1]
    if git is None:
        return None
    try:
        head = subprocess.run(
            [git, "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            [git, "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """The machine and the versions a run depends on; the load average is read now."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "python": sys.version.split()[0],
        **{name: version(name) for name in VERSIONS},
        "git": git_version(),
        "load_average": load_average(),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line: CPU, cores, memory, Python and library versions, git, load average."""
    memory = m.get("memory_bytes")
    load = m.get("load_average")
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


# -- measurements --------------------------------------------------------------------------
def ms(start: float) -> float:
    """Milliseconds since a `time.perf_counter()` reading."""
    return (time.perf_counter() - start) * 1000


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


# -- tables ------------------------------------------------------------------------------
def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def row(
    figure: str,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    met: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio(value, baseline),
        "target": target,
        "met": met,
        **extra,
    }


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
    if unit in ("req/s", "us/req", "rows"):
        return f"{value:,.0f} {unit}"
    if unit == "us/call":
        return f"{value:,.1f} us"
    if unit == "x":
        return f"{value:,.2f}x"
    return f"{value:,.2f} {unit}"


def met_cell(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def table(rows: list[dict[str, Any]], *, bench_column: bool = False) -> str:
    """Markdown: figure | value | baseline (its name) | ratio | target | met."""
    head = "| bench " if bench_column else ""
    align = "|---" if bench_column else ""
    lines = [
        f"{head}| figure | value | baseline | ratio | target | met |",
        f"{align}|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        baseline = (
            f"{number(r['baseline'], r['unit'])} ({r['baseline_name']})"
            if r["baseline_name"]
            else ""
        )
        ratio_ = "n/a" if r["ratio"] is None else f"{r['ratio']:,.2f}x"
        first = f"| {r.get('bench', '')} " if bench_column else ""
        lines.append(
            f"{first}| {r['figure']} | {number(r['value'], r['unit'])} | {baseline} "
            f"| {ratio_} | {r['target']} | {met_cell(r['met'])} |"
        )
    return "\n".join(lines)


def write(out: Path, name: str, result: dict[str, Any], text: str) -> tuple[Path, Path]:
    """`<out>/<name>.json` (the whole result) and `<out>/<name>.md` (its markdown)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    md_path.write_text(text if text.endswith("\n") else text + "\n")
    return json_path, md_path
