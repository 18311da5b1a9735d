"""Smoke test of the real-history replay benchmark on 3 bundled snapshots per source.
No timing asserts: it runs, its figures are consistent, and it writes its report."""

from __future__ import annotations

import json

import pytest

from bench import sources as bench_sources
from tests.conftest import DATA
from tests.conftest import positive as _positive


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return bench_sources.run(workdir=tmp_path_factory.mktemp("bench-sources"), limit=3, root=DATA)


def test_each_history_is_measured_against_its_baselines(result):
    assert list(result["sources"]) == ["openrouter", "litellm"]
    for name, measured in result["sources"].items():
        assert measured["available"] is True and measured["snapshots"] == 3, name
        store, naive = measured["store"], measured["naive"]
        assert store["snapshots"] == 3 and sum(store["outcomes"].values()) == 3
        assert store["summary"]["snapshots"] == 3
        # versions grow with changes, the naive table with every snapshot
        assert store["summary"]["versions"] < naive["rows"]
        assert _positive(measured["ratios"]["rows_per_version"])
        for value in (
            store["seconds"],
            store["bytes"],
            naive["seconds"],
            naive["bytes"],
            store["ms"]["median"],
            store["peak_rss_kib"]["final"],
        ):
            assert _positive(value), name
        # fewer than 100 snapshots: only the final RSS is taken
        assert set(store["peak_rss_kib"]) == {"start", "final"}
        git = measured["git"]
        if git["available"]:
            assert git["commits"] == 3 and _positive(git["pack_bytes"])
    assert result["sources"]["openrouter"]["store"]["quarantined_rows"] == 3  # openrouter/auto
    json.dumps(result)


def test_markdown_report_and_missing_folders(result, tmp_path):
    text = bench_sources.markdown(result)
    assert text.startswith("# Replay of real histories (issue 7)\n")
    assert "| peak RSS after 400 snapshots | n/a | n/a |" in text
    missing = bench_sources.run(workdir=tmp_path, root=tmp_path / "nowhere", isolate=False)
    assert {k: v["available"] for k, v in missing["sources"].items()} == {
        "openrouter": False,
        "litellm": False,
    }
    assert "No history was found" in bench_sources.markdown(missing)
