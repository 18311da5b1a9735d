"""Smoke test of the query benchmark: it runs on a tiny year, and its figures are sane.

No timing asserts: only that every figure is there, positive and finite.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import positive as _positive

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `bench` is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import query as bench_query  # noqa: E402

SMALL = {"models": 30, "days": 3, "polls_per_day": 24, "changes_per_day": 3}


@pytest.fixture(scope="module")
def run_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, float, Path]:
    workdir = tmp_path_factory.mktemp("bench-query")
    started = time.perf_counter()
    result = bench_query.run(
        workdir=workdir, repeats=20, changes_repeats=5, naive_changes_repeats=2, cli_runs=2, **SMALL
    )
    return result, time.perf_counter() - started, workdir


def test_result_has_the_expected_keys(run_result: tuple[dict, float, Path]) -> None:
    result, _, _ = run_result
    assert {
        "machine",
        "config",
        "targets",
        "build",
        "models",
        "changes",
        "cli",
        "figures",
        "baselines",
        "ratios",
        "met",
        "rows",
        "elapsed_seconds",
    } <= set(result)
    assert set(result["models"]) == set(bench_query.COMBOS)
    assert {
        "models_ms_median",
        "models_ms_p95",
        "changes_ms_median",
        "changes_ms_p95",
        "changes_rows_median",
        "cli_s_median",
    } == set(result["figures"])
    assert {
        "models_vs_floor",
        "models_vs_naive",
        "changes_vs_floor",
        "changes_vs_naive",
        "cli_vs_python_pass",
        "cli_vs_import_duckdb_polars",
    } == set(result["ratios"])
    assert set(result["met"]) == {"models_ms", "cli_s"}
    assert all(isinstance(v, bool) for v in result["met"].values())
    assert {"figure", "value", "baseline", "ratio", "target", "met"} <= set(result["rows"][0])
    json.dumps(result)  # what `python -m bench.query` writes to query.json
    assert "| figure |" in bench_query.markdown(result)


def test_figures_are_positive_and_finite(run_result: tuple[dict, float, Path]) -> None:
    result, _, _ = run_result
    for group in ("figures", "baselines", "ratios"):
        bad = {k: v for k, v in result[group].items() if not _positive(v)}
        assert not bad, f"{group}: {bad}"
    for name, m in result["models"].items():
        assert m["ms"]["count"] == 20, name
        assert m["agrees_with_naive"], name  # store and append-everything give one answer
        for key in ("ms", "as_of_ms", "floor_ms", "naive_ms"):
            assert _positive(m[key]["median"]) and _positive(m[key]["p95"]), (name, key)
    assert result["cli"]["cli"]["models_printed"] > 0


def test_the_year_is_built_and_cached(run_result: tuple[dict, float, Path]) -> None:
    result, _, workdir = run_result
    summary = result["build"]["store"]["summary"]
    polls = SMALL["days"] * SMALL["polls_per_day"]
    assert summary["fetches"] == polls  # changed polls ingested + unchanged ones bulk-logged
    assert 1 < summary["snapshots"] < polls
    assert summary["outcomes"]["unchanged"] > summary["snapshots"]
    assert result["build"]["cached"] is False
    store_path, _, meta_path = bench_query._paths(workdir, result["build"]["config"])
    assert store_path.exists() and meta_path.exists()
    again = bench_query.ensure_built(workdir, result["build"]["config"])
    assert again[2]["cached"] is True


def test_runs_quickly(run_result: tuple[dict, float, Path]) -> None:
    _, seconds, _ = run_result
    assert seconds < 20, f"the smoke run took {seconds:.1f} s"
