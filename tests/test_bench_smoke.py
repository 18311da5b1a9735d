"""Smoke test of `python -m bench`: every bench runs once on tiny sizes, through the
harness, and writes its files and the summary. Slow (about 30 s): `pytest -m slow`.

No test asserts a time: only that the figures are real, positive numbers, that every
headline row has a baseline, a target and a verdict, and that the files have their keys.
dlt is optional (reported as not installed); wrk is optional (the serve bench then uses
its own client and says so).
"""

from __future__ import annotations

import json
import shutil
import socket
from datetime import datetime
from pathlib import Path

import pytest

from bench import __main__ as harness
from bench import dlt_baseline, measure, serve
from bench.synthetic import catalog_history
from tests.conftest import DATA, positive

pytestmark = pytest.mark.slow

TINY: dict[str, dict] = {
    "ingest": {"synthetic": [{"models": 30, "polls": 20}], "bundled": True},
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
    "serve": {"models": 20, "duration": 0.3, "connections": 2, "max_requests": 100, "rounds": 1},
    "sources": {"limit": 3, "root": str(DATA)},
    "dlt": {"models": 30, "snapshots": 2},
    "memory": {"source": "auto", "root": str(DATA), "models": 30, "snapshots": [2, 4]},
    "always_on": {
        "models": 20,
        "threads": 2,
        "duration": 0.3,
        "max_requests": 300,
        "snapshots": 3,
        "max_seconds": 10.0,
        "hold": 4.0,
        "root": str(DATA),
    },
}
ROW_KEYS = {"figure", "value", "unit", "baseline", "baseline_name", "ratio", "target", "met"}
WRK_SAMPLE = """\
  Latency Distribution
     50%   10.83ms
     99%  804.00us
  14145 requests in 5.01s, 6.28GB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2823.35
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    summary = harness.run_all(TINY, out=out, workdir=work, preset="tiny", log=lambda m: None)
    return summary, out


def bench(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_summary_has_the_expected_keys(run: tuple[dict, Path]) -> None:
    summary, out = run
    written = json.loads((out / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary, default=str))
    assert {"generated_at", "preset", "revision", "machine", "config", "benches"} <= set(written)
    assert {"headline", "met", "elapsed_seconds"} <= set(written)
    machine = {"cpu", "cpus", "memory_bytes", "python", "duckdb", "polars", "git", "load_average"}
    assert machine <= set(written["machine"])
    assert list(written["benches"]) == list(harness.BENCHES)
    text = (out / "summary.md").read_text()
    assert "| bench | figure | value | baseline | ratio | target | met |" in text
    assert "Machine: " in text


def test_every_bench_ran_or_says_why_not(run: tuple[dict, Path]) -> None:
    summary, out = run
    benches = summary["benches"]
    assert not {k: v["reason"] for k, v in benches.items() if v["status"] == "error"}
    for name in ("ingest", "query", "serve", "sources", "memory", "always_on"):
        assert benches[name]["status"] == "ok", name
        assert benches[name]["files"] == [f"{name}.md", f"{name}.json"], name
        assert bench(out, name)["rows"], name
    if dlt_baseline.installed() is None:
        assert benches["dlt"] == {**benches["dlt"], "status": "not installed"}
        assert benches["dlt"]["reason"] == dlt_baseline.NOT_INSTALLED
    else:
        assert benches["dlt"]["status"] == "ok"
        assert bench(out, "dlt")["same_history"] is True  # dlt and the store keep one history
    if shutil.which("wrk") is None:  # measured with the bench's own client, and it says so
        assert "wrk is not on PATH" in benches["serve"]["reason"]
        assert bench(out, "serve")["generator"] == "httpx"


def test_headline_figures_are_ratios_against_baselines_with_targets(run: tuple[dict, Path]) -> None:
    summary, _ = run
    rows = summary["headline"]
    assert all(ROW_KEYS | {"bench"} <= set(r) for r in rows)
    assert {"ingest", "query", "serve", "sources", "memory", "always_on"} <= {
        r["bench"] for r in rows
    }
    targets = " ".join(r["target"] for r in rows)
    for target in (
        "<= 10x JSON floor",
        "<= 5 ms",
        "<= 1x git pack",
        "<= 20 ms",
        "<= 0.6 s",
        ">= 0.8x static",
        "<= 1.1x the 2-snapshot peak",
        ">= 0.5x without a writer",
        "<= 1.1x the hold",
    ):
        assert target in targets, target
    for r in rows:
        if r["baseline_name"] == "git unavailable":
            continue  # no git on PATH: reported, not measured
        assert positive(r["value"]) and positive(r["baseline"]), r["figure"]
        assert positive(r["ratio"]) and r["baseline_name"], r["figure"]
        assert isinstance(r["met"], bool) or not r["target"], r["figure"]
    tally = summary["met"]
    assert tally["met"] + tally["not_met"] == tally["targets"] > 0


def test_every_figure_is_a_real_positive_number(run: tuple[dict, Path]) -> None:
    summary, out = run
    for name, b in summary["benches"].items():
        for r in bench(out, name)["rows"] if b["status"] == "ok" else ():
            assert set(r) >= ROW_KEYS, (name, r)
            if r["figure"].startswith("bundled") and "unchanged" in r["figure"]:
                continue  # the bundled history has no unchanged poll
            if "failed answers" in r["figure"]:
                continue  # a count whose target is 0
            assert positive(r["value"]), (name, r["figure"], r["value"])
            assert r["baseline"] is None or positive(r["baseline"]), (name, r["figure"])


def test_bench_details(run: tuple[dict, Path]) -> None:
    _, out = run
    ingest = bench(out, "ingest")["runs"][0]["synthetic"]
    assert ingest["polls"] == 20 and ingest["store"]["outcomes"]["new"] > 0
    query = bench(out, "query")
    assert all(q["agrees_with_naive"] for q in query["models"].values())
    assert query["cli"]["cli"]["models_printed"] > 0
    assert query["build"]["store"]["summary"]["fetches"] == 3 * 24  # changed + bulk-logged
    served = bench(out, "serve")
    assert served["body"]["same_bytes_as_static"] and served["body"]["revalidated_status"] == 304
    assert set(served["scenarios"]) == {name for name, *_ in serve.SCENARIOS}
    assert all(s["errors"] == 0 and 0 < s["requests"] <= 100 for s in served["scenarios"].values())
    with socket.socket() as sock, pytest.raises(OSError):  # the server was stopped
        sock.settimeout(1.0)
        sock.connect(("127.0.0.1", served["server"]["port"]))
    sources = bench(out, "sources")["sources"]
    assert [s["snapshots"] for s in sources.values()] == [3, 3]
    assert sources["openrouter"]["store"]["quarantined_rows"] == 3  # openrouter/auto
    [real, synthetic] = bench(out, "memory")["histories"]  # each replay in its own child
    assert synthetic["source"] == "synthetic" and real["source"] in ("openrouter", "litellm")
    for r in synthetic["runs"].values():
        assert r["peak_rss_bytes"] > r["largest_payload_bytes"] > 0
    always = bench(out, "always_on")
    assert always["serving"]["replay"]["returncode"] == 0 and always["serving"]["snapshots"] == 3
    for load in (always["serving"]["alone"], always["serving"]["writer"]):
        assert 0 < load["requests"] <= 300 and load["failures"] == 0
    assert always["spool"]["applied"] == ["new"]


def test_helpers_without_a_full_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = serve.parse_wrk(WRK_SAMPLE)
    assert (parsed["requests"], parsed["seconds"]) == (14145, pytest.approx(5.01))
    assert parsed["p50_ms"] == pytest.approx(10.83) and parsed["p99_ms"] == pytest.approx(0.804)
    assert (parsed["non_2xx_3xx"], parsed["socket_errors"]) == (3, 3)
    first = list(catalog_history(n_models=30, polls=20, seed=3))
    assert first == list(catalog_history(n_models=30, polls=20, seed=3))
    assert 1 < len({b for _, b in first}) < len(first)  # some polls changed, some repeated
    assert isinstance(first[0][0], datetime)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    git = measure.git_pack(first[:3], tmp_path / "repo")
    assert git["available"] is False and "git" in git["reason"]
    assert harness._only("ingest, dlt") == ["ingest", "dlt"]
    with pytest.raises(Exception, match="unknown bench nope"):
        harness._only("ingest,nope")
    assert harness._setting("serve.load=httpx") == ("serve", "load", "httpx")
    assert harness._setting('ingest.synthetic=[{"models": 5}]')[2] == [{"models": 5}]
