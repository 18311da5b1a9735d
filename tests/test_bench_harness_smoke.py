"""Smoke test of `python -m bench`: every bench runs on tiny sizes and the summary is written.

No timing asserts. dlt is optional (reported as not installed), and the shared histories
may be absent (the sources bench is then skipped): neither fails the run.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `bench` is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import __main__ as harness  # noqa: E402
from bench import dlt_baseline  # noqa: E402

TINY: dict[str, dict] = {
    "ingest": {
        "synthetic": [{"models": 30, "polls": 20}, {"models": 60, "polls": 6}],
        "bundled": True,
    },
    "query": {
        "models": 30,
        "days": 3,
        "polls_per_day": 24,
        "changes_per_day": 3,
        "repeats": 10,
        "changes_repeats": 3,
        "naive_changes_repeats": 1,
        "cli_runs": 1,
    },
    "serve": {
        "models": 20,
        "duration": 0.3,
        "connections": 2,
        "max_requests": 100,
        "rounds": 1,
        "use_wrk": False,
        "misses": False,
        "asgi": False,
    },
    "sources": {"limit": 3},
    "dlt": {"models": 30, "snapshots": 2},
    "memory": {"source": "synthetic", "models": 30, "snapshots": [3, 6]},
}
ROW_KEYS = {
    "bench",
    "figure",
    "value",
    "unit",
    "baseline",
    "baseline_name",
    "ratio",
    "target",
    "met",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench-out")
    summary = harness.run_all(
        TINY,
        out=out,
        workdir=tmp_path_factory.mktemp("bench-work"),
        preset="tiny",
        log=lambda message: None,
    )
    return summary, out


def test_summary_is_written_with_the_expected_keys(run: tuple[dict, Path]) -> None:
    summary, out = run
    assert json.loads((out / "summary.json").read_text()) == json.loads(
        json.dumps(summary, default=str)
    )
    assert {
        "generated_at",
        "preset",
        "revision",
        "machine",
        "config",
        "benches",
        "headline",
        "met",
        "elapsed_seconds",
    } <= set(summary)
    assert {
        "cpu",
        "cpus",
        "memory_bytes",
        "python",
        "duckdb",
        "polars",
        "pandera",
        "git",
        "load_average",
    } <= set(summary["machine"])
    assert list(summary["benches"]) == list(harness.BENCHES)
    text = (out / "summary.md").read_text()
    assert "| bench | figure | value | baseline | ratio | target | met |" in text
    assert "Machine: " in text


def test_every_bench_ran_or_says_why_not(run: tuple[dict, Path]) -> None:
    summary, out = run
    benches = summary["benches"]
    errors = {k: v["reason"] for k, v in benches.items() if v["status"] == "error"}
    assert not errors
    for name in ("ingest", "query", "serve", "memory"):
        assert benches[name]["status"] == "ok", name
        assert (out / f"{name}.md").exists() and (out / f"{name}.json").exists(), name
    if dlt_baseline.installed() is None:
        assert benches["dlt"]["status"] == "not installed"
        assert benches["dlt"]["reason"] == dlt_baseline.NOT_INSTALLED
    else:
        assert benches["dlt"]["status"] == "ok"
        dlt = json.loads((out / "dlt.json").read_text())
        assert dlt["same_history"] is True  # dlt and the store keep the same versions
    assert benches["sources"]["status"] in ("ok", "skipped")


def test_headline_rows_have_targets_and_verdicts(run: tuple[dict, Path]) -> None:
    summary, _ = run
    rows = summary["headline"]
    assert all(set(r) >= ROW_KEYS for r in rows)
    by_bench = {r["bench"] for r in rows}
    assert {"ingest", "query", "serve", "memory"} <= by_bench
    targets = " ".join(r["target"] for r in rows)
    for target in (
        "<= 10x JSON floor",
        "<= 5 ms",
        "<= 1x git pack",
        "<= 20 ms",
        "<= 0.6 s",
        ">= 0.8x static",
        "<= 1.1x the 3-snapshot peak",
    ):
        assert target in targets, target
    for r in rows:
        if r["target"] and r["value"] is not None and r["baseline"] is not None:
            assert isinstance(r["met"], bool), r["figure"]
        if r["value"] is not None:
            assert math.isfinite(r["value"]) and r["value"] > 0, r["figure"]
    tally = summary["met"]
    assert tally["met"] + tally["not_met"] == tally["targets"] > 0


def test_memory_rows_come_from_child_processes(run: tuple[dict, Path]) -> None:
    _, out = run
    memory = json.loads((out / "memory.json").read_text())
    [history] = memory["histories"]  # `source: synthetic`: no shared history
    assert history["source"] == "synthetic"
    assert [r["snapshots"] for r in history["runs"].values()] == [1, 3, 6]
    for r in history["runs"].values():
        assert r["peak_rss_bytes"] > r["largest_payload_bytes"] > 0
        assert r["models_now"] > 0


def test_only_and_unknown_names() -> None:
    assert harness._only("ingest, dlt") == ["ingest", "dlt"]
    with pytest.raises(Exception, match="unknown bench nope"):
        harness._only("ingest,nope")
