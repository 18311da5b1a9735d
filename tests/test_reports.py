"""Notebooks and the HTML report: they run headless on the bundled history, and the
numbers they show equal the query helpers' answers computed here independently."""

import importlib
import json
import re
import xml.dom.minidom
from datetime import datetime

import polars as pl
import pytest

from pipeline import query
from pipeline.ingest import ingest
from pipeline.report import build_report
from pipeline.store import Store
from tests.conftest import ROOT, run_cli

SINCE, UNTIL = datetime(2025, 12, 1), datetime(2026, 5, 1)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory, bundled):
    path = tmp_path_factory.mktemp("reports") / "catalog.duckdb"
    with Store.open(path) as store:
        for at, payload in bundled:
            ingest(store, payload, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    return path


def run_notebook(name, monkeypatch, db, since=SINCE, until=UNTIL):
    monkeypatch.setenv("MODELWATCH_DB", str(db))
    monkeypatch.setenv("MODELWATCH_SINCE", since.isoformat())
    monkeypatch.setenv("MODELWATCH_UNTIL", until.isoformat())
    module = importlib.import_module(f"notebooks.{name}")
    _, defs = module.app.run()
    return defs


def test_changes_notebook(monkeypatch, history_db):
    defs = run_notebook("changes", monkeypatch, history_db)
    try:
        with Store.open(history_db, read_only=True) as store:
            feed = query.changes(store, since=SINCE, until=UNTIL)
            prices = store.frame(
                "SELECT model_id, price, old_price, new_price, direction FROM price_changes "
                "WHERE changed_at > $a AND changed_at <= $b ORDER BY changed_at, model_id, price",
                {"a": SINCE, "b": UNTIL},
            )
    finally:
        defs["store"].close()
    kinds = feed.filter(pl.col("field").is_null())["kind"].to_list()
    summary = defs["summary"]
    assert (summary["added"], summary["removed"], summary["returned"]) == (
        kinds.count("added"),
        kinds.count("removed"),
        kinds.count("returned"),
    )
    assert summary["price_changes"] == prices.height > 0
    assert summary["price_cuts"] == prices.filter(pl.col("direction") == "cut").height
    shown = (
        defs["prices"]
        .sort(["changed_at", "model_id", "price"])
        .select("model_id", "price", "old", "new", "direction")
    )
    assert shown.rows() == prices.rows()


def test_price_trends_notebook(monkeypatch, history_db):
    defs = run_notebook("price_trends", monkeypatch, history_db)
    defs["store"].close()
    with Store.open(history_db, read_only=True) as store:
        snaps = store.frame(
            "SELECT observed_at FROM snapshots WHERE observed_at BETWEEN $a AND $b ORDER BY 1",
            {"a": SINCE, "b": UNTIL},
        )["observed_at"].to_list()
        cheapest = []
        for at in snaps:
            rows = [
                r
                for r in store.catalog_as_of("aihubmix", at).to_dicts()
                if "llm" in r["types"] and "tools" in r["features"] and r["input_price"] is not None
            ]
            best = min(rows, key=lambda r: (r["input_price"], r["position"]))
            cheapest.append((at, best["model_id"], best["input_price"]))
        last = store.catalog_as_of("aihubmix", snaps[-1])
    assert defs["cheapest_tools"].rows() == cheapest
    medians = defs["medians"].filter(pl.col("observed_at") == snaps[-1], pl.col("type") == "llm")
    llm = last.filter(pl.col("types").list.contains("llm"))["input_price"].drop_nulls()
    assert medians["median_input_price"].to_list() == [llm.median()]
    assert defs["steps"]["model_id"].unique().sort().to_list() == sorted(defs["movers"])


def test_capabilities_notebook(monkeypatch, history_db):
    defs = run_notebook("capabilities", monkeypatch, history_db)
    defs["store"].close()
    with Store.open(history_db, read_only=True) as store:
        now = store.catalog_as_of("aihubmix", UNTIL)
    lengths = now["context_length"].drop_nulls()
    assert defs["context"].row(0) == (
        lengths.min(),
        lengths.median(),
        lengths.max(),
        now["context_length"].null_count(),
    )
    features = defs["features"]
    last = features.filter(pl.col("observed_at") == features["observed_at"].max())
    counted = {}
    for row in now.iter_rows(named=True):
        for f in row["features"]:
            counted[f] = counted.get(f, 0) + 1
    assert dict(zip(last["value"], last["models"], strict=True)) == counted
    assert set(defs["points"]["when"].unique()) == {"start: 2025-12-01", "end: 2026-05-01"}


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", page, re.S)


def test_report_is_self_contained_with_well_formed_charts(history_db):
    with Store.open(history_db, read_only=True) as store:
        page = build_report(store, since=SINCE, until=UNTIL)
    charts = svgs(page)
    assert len(charts) == 6
    for chart in charts:
        xml.dom.minidom.parseString(chart)  # raises if not well-formed
        assert "<text" in chart  # axes and titles are drawn
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/", "")
    assert "Median input price per type" in page and "valid from (UTC)" in page


def test_hostile_catalog_text_is_escaped(tmp_path):
    evil_id = 'x" onerror="alert(1)'
    body = json.dumps(
        {
            "data": [
                {
                    "model_id": evil_id,
                    "desc": "<script>alert('desc')</script><img src=x onerror=alert(2)>",
                    "pricing": {"input": 1.0, "output": 2.0},
                    "context_length": 1000,
                    "types": "llm",
                },
                {"model_id": "<b>bold</b>", "pricing": {"input": 3.0}, "context_length": 2000},
            ]
        }
    ).encode()
    changed = json.dumps(
        {
            "data": [
                {
                    "model_id": evil_id,
                    "desc": "<script>alert('desc')</script>",
                    "pricing": {"input": 0.5, "output": 2.0},
                    "context_length": 1000,
                    "types": "llm",
                },
            ]
        }
    ).encode()
    with Store.open(tmp_path / "evil.duckdb") as store:
        ingest(store, body, source="aihubmix", fetched_at=datetime(2026, 1, 1))
        ingest(
            store,
            changed,
            source="aihubmix",
            fetched_at=datetime(2026, 1, 2),
            accept_mass_removal=True,
        )
        page = build_report(store, until=datetime(2026, 1, 3))
    assert "<script" not in page
    assert "<img" not in page and "<b>bold</b>" not in page
    assert 'onerror="alert(1)' not in page
    assert "&lt;script&gt;alert(&#x27;desc&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    for chart in svgs(page):
        xml.dom.minidom.parseString(chart)


def test_report_command(history_db, tmp_path):
    out = tmp_path / "r.html"
    done = run_cli("report", "--db", str(history_db), "--since", "2026-01-01", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert "What changed in aihubmix" in out.read_text()
    bad = run_cli(
        "report", "--db", str(history_db), "--since", "2026-05-01", "--until", "2026-01-01"
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: --since 2026-05-01T00:00:00Z is not before the period")


def test_the_period_ends_at_the_last_snapshot_and_long_tables_say_how_to_see_the_rest(
    history_db, bundled
):
    with Store.open(history_db, read_only=True) as store:
        page = build_report(store)
    last = bundled[-1][0]
    assert f"the first snapshot .. {last:%Y-%m-%dT%H:%M:%S}Z" in page

    from pipeline.report.html import html_table

    cut = html_table(pl.DataFrame({"a": range(5)}), limit=2, rest="modelwatch changes --x")
    assert cut.count("<tr>") == 3  # the header and two rows
    assert "… and 3 more rows, not shown here: <code>modelwatch changes --x</code>" in cut


def test_the_notebooks_run_headless_and_print_their_results(history_db, tmp_path):
    import subprocess
    import sys

    for name, heading in (
        ("changes", "## summary"),
        ("price_trends", "## medians"),
        ("capabilities", "## features"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                f"notebooks/{name}.py",
                "--db",
                str(history_db),
                "--since",
                "2026-01-01",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("# aihubmix: 2026-01-01T00:00:00Z .. "), done.stdout[:200]
        assert heading in done.stdout
