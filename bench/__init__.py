"""Benchmarks: `python -m bench` runs them all; each reports figures against baselines.

The protocol: a bench is a module with `run(params, workdir, log) -> Result`; its rows
(`bench.report.row`) are its table, and those marked `headline` go into the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the full recorded histories, when present
SOURCE = "aihubmix"  # the synthetic catalog's source
Log = Callable[[str], None]


@dataclass
class Result:
    """What one bench hands back: its status, its rows, and everything it measured."""

    status: str  # ok | skipped | not installed
    rows: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # written to <bench>.json
    reason: str = ""  # why it was skipped, or what it could not measure
