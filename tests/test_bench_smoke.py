"""Smoke test of the ingest benchmark: it runs, and its figures are sane. No timing asserts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ingest
from bench.synthetic import catalog_history
from tests.conftest import positive as _positive


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return ingest.run(models=30, polls=20, workdir=tmp_path_factory.mktemp("bench"), bundled=False)


def test_history_is_deterministic_and_repeats_unchanged_bytes() -> None:
    first = list(catalog_history(n_models=30, polls=20, seed=3))
    assert first == list(catalog_history(n_models=30, polls=20, seed=3))
    assert first != list(catalog_history(n_models=30, polls=20, seed=4))
    times = [t for t, _ in first]
    assert all((b - a).total_seconds() == 300 for a, b in zip(times, times[1:], strict=False))
    bodies = [b for _, b in first]
    assert 1 < len(set(bodies)) < len(bodies)  # some polls changed, some repeated
    doc = json.loads(bodies[-1])
    assert doc["success"] is True and doc["message"] == ""
    item = doc["data"][0]
    assert {
        "model_id",
        "desc",
        "pricing",
        "types",
        "features",
        "input_modalities",
        "max_output",
        "context_length",
    } <= set(item)
    assert "/" in item["model_id"] and 100 <= len(item["desc"]) <= 320


def test_result_has_the_expected_keys(result: dict) -> None:
    assert {"machine", "config", "targets", "synthetic", "rows", "elapsed_seconds"} <= set(result)
    assert "bundled" not in result
    synthetic = result["synthetic"]
    assert {
        "store",
        "json_floor",
        "naive",
        "git",
        "ratios",
        "met",
        "polls",
        "distinct_payloads",
    } <= set(synthetic)
    assert {
        "changed_ms",
        "unchanged_ms",
        "initial_ms",
        "bytes",
        "used_bytes",
        "tables",
        "summary",
        "outcomes",
    } <= set(synthetic["store"])
    assert {"store_vs_git_bytes", "store_vs_naive_bytes", "changed_vs_json_floor_ms"} <= set(
        synthetic["ratios"]
    )
    assert {"figure", "value", "baseline", "ratio", "target", "met"} <= set(result["rows"][0])
    json.dumps(result)  # what `python -m bench` writes to results.json


def test_figures_are_positive_and_finite(result: dict) -> None:
    synthetic = result["synthetic"]
    store = synthetic["store"]
    assert synthetic["polls"] == 20
    assert store["outcomes"].get("new", 0) + store["outcomes"].get("unchanged", 0) == 19
    for stats in (
        store["changed_ms"],
        store["unchanged_ms"],
        synthetic["json_floor"]["ms"],
        synthetic["naive"]["ms"],
    ):
        assert stats["count"] > 0
        assert all(_positive(stats[k]) for k in ("median", "p95", "mean"))
    for value in (
        store["initial_ms"],
        store["bytes"],
        synthetic["naive"]["bytes"],
        synthetic["naive"]["rows"],
    ):
        assert _positive(value)
    for key in ("store_vs_naive_bytes", "changed_vs_json_floor_ms", "unchanged_vs_json_floor_ms"):
        assert _positive(synthetic["ratios"][key])
    git = synthetic["git"]
    if git["available"]:
        assert _positive(git["pack_bytes"]) and git["commits"] >= synthetic["distinct_payloads"]
        assert _positive(synthetic["ratios"]["store_vs_git_bytes"])
        assert isinstance(synthetic["met"]["store_vs_git_bytes"], bool)
    else:
        assert synthetic["ratios"]["store_vs_git_bytes"] is None


def test_missing_git_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    history = list(catalog_history(n_models=5, polls=3))
    git = ingest.measure_git(history, tmp_path / "repo")
    assert git["available"] is False and "git" in git["reason"]
