"""The self-contained HTML report (`modelwatch report`): summary, tables, inline SVG.

Catalog text is untrusted: everything put into HTML goes through `html.escape`.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import query
from pipeline.report.charts import (
    CONTROL,
    chart_coverage,
    chart_frontier,
    chart_median_prices,
    chart_price_change_bars,
    chart_price_steps,
    svg,
)
from pipeline.report.frames import (
    capability_changes,
    change_feed,
    change_summary,
    coverage,
    frontier,
    median_prices,
    membership,
    movers,
    period,
    price_changes,
    price_steps,
)
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:72rem;color:#1d2939;padding:0 1rem}
h1{margin-bottom:.2rem}.sub{color:#667085;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.card{border:1px solid #d0d5dd;border-radius:.5rem;padding:.6rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.6rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border-bottom:1px solid #eaecf0;padding:.25rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{margin:1rem 0 2rem;overflow-x:auto}.cut{color:#1f7a6f}.rise{color:#b42318}
"""


def _e(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return html.escape(iso(value) or "")
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    return html.escape(re.sub(CONTROL, "\ufffd", str(value)))


def html_table(frame: pl.DataFrame, *, limit: int = 200, rest: str = "") -> str:
    """A table of at most `limit` rows; `rest` is the command that lists them all."""
    if frame.height == 0:
        return "<p>None in this period.</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.head(limit).iter_rows():
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cls = (
                ' class="n"'
                if numeric
                else (f' class="{value}"' if value in ("cut", "rise") else "")
            )
            cells.append(f"<td{cls}>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p>… and {frame.height - limit} more rows, not shown here"
        + (f": <code>{_e(rest)}</code> lists them all" if rest else "")
        + ".</p>"
        if frame.height > limit
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def build_report(
    store: Store,
    *,
    source: str = "aihubmix",
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """One self-contained HTML page: summary, tables, charts as inline SVG."""
    import altair as alt

    alt.data_transformers.disable_max_rows()
    p = period(store, source=source, since=since, until=until)
    feed = change_feed(store, p)
    summary = change_summary(feed)
    prices = price_changes(feed)
    now = query.models(store, source=source, as_of=p.until)
    charts: list[tuple[str, Any]] = []
    top = movers(feed)
    if top:
        charts.append(("steps", chart_price_steps(price_steps(store, p, top))))
    if prices.filter(pl.col("pct_change").is_not_null()).height:
        charts.append(("changes", chart_price_change_bars(prices.head(60))))
    medians = median_prices(store, p)
    if medians.height:
        charts.append(("medians", chart_median_prices(medians)))
    features = coverage(store, p, "features")
    if features.height:
        charts.append(("features", chart_coverage(features, "feature")))
    modalities = coverage(store, p, "input_modalities")
    if modalities.height:
        charts.append(("modalities", chart_coverage(modalities, "input modality")))
    points = frontier(store, p)
    if points.height:
        charts.append(("frontier", chart_frontier(points)))
    cards = [("models now", now.height), *summary.items()]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>modelwatch: {_e(source)}</title><style>{_CSS}</style></head><body>",
        f"<h1>What changed in {_e(source)}</h1>",
        f"<p class=sub>{_e(p.label)} · generated {_e(utcnow().replace(microsecond=0))} · "
        "prices in USD per 1M tokens</p>",
        "<div class=cards>"
        + "".join(
            f"<div class=card><b>{_e(v)}</b>{_e(k.replace('_', ' '))}</div>" for k, v in cards
        )
        + "</div>",
    ]
    parts += ["<h2>Charts</h2>"] + [
        f'<div class=chart id="chart-{name}">{svg(chart)}</div>' for name, chart in charts
    ]
    window = (f" --since {iso(p.since)}" if p.since else "") + f" --until {iso(p.until)}"
    every_change = f"modelwatch changes --source {source}{window} --format csv"
    parts += [
        "<h2>Price changes</h2>",
        html_table(prices, rest=every_change),
        "<h2>Models added, removed, returned</h2>",
        html_table(membership(feed), rest=every_change),
        "<h2>Capability changes</h2>",
        html_table(capability_changes(feed), rest=every_change),
    ]
    parts.append("<h2>Catalog at the end of the period</h2>")
    parts.append(
        html_table(
            now.select(
                "model_id",
                pl.col("description").str.slice(0, 160).alias("description"),
                pl.col("types").list.join(","),
                "input_price",
                "output_price",
                "context_length",
            ),
            rest=f"modelwatch models --source {source} --as-of {iso(p.until)} --format csv",
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(store: Store, out: Path, **kwargs: Any) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(store, **kwargs), encoding="utf-8")
    return out
