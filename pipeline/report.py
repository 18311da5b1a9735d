"""What changed, as tables and charts: the pieces the notebooks show, and the
self-contained HTML report (`modelwatch report`).

Every number comes from `pipeline.query` (no SQL of its own beyond reading those
helpers' frames). Charts are altair specs rendered to static SVG with vl-convert, so the
report needs no JavaScript and no network. Catalog text is untrusted: everything put
into HTML goes through `html.escape`, and SVG text is XML-escaped by the renderer.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import query
from pipeline.errors import BadInput
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow

CAPABILITY_FIELDS = ("types", "features", "input_modalities", "context_length", "max_output")
TOP_MOVERS = 8
WIDTH, HEIGHT = 720, 300  # chart size in pixels


@dataclass(frozen=True)
class Period:
    source: str
    since: datetime | None
    until: datetime

    @property
    def label(self) -> str:
        start = iso(self.since) if self.since else "the first snapshot"
        return f"{start} .. {iso(self.until.replace(microsecond=0))}"


def period(store: Store, *, source: str = "aihubmix", since: datetime | None = None,
           until: datetime | None = None) -> Period:
    if since and until and since >= until:
        raise BadInput(f"--since {iso(since)} is not before --until {iso(until)}")
    return Period(source=source, since=since, until=until or utcnow())


# -- notebook parameters ----------------------------------------------------------------

def notebook_parameters(mo: Any) -> dict[str, str | None]:
    """`--db --source --since --until` of a notebook run (`python notebooks/x.py --db ..`,
    or `marimo run x.py -- --db ..`), else MODELWATCH_DB/SOURCE/SINCE/UNTIL, else defaults.
    """
    import os

    from pipeline.store import DEFAULT_DB

    args = mo.cli_args() if mo is not None else {}

    def pick(name: str, default: str | None = None) -> str | None:
        value = args.get(name) or os.environ.get(f"MODELWATCH_{name.upper()}")
        return str(value) if value else default

    return {"db": pick("db", str(DEFAULT_DB)), "source": pick("source", "aihubmix"),
            "since": pick("since"), "until": pick("until")}


def notebook_period(mo: Any) -> tuple[Store, Period]:
    """A read-only store and the period a notebook reports on."""
    from pipeline.timeutil import parse_time

    params = notebook_parameters(mo)
    store = Store.open(params["db"], read_only=True)
    p = period(
        store,
        source=params["source"] or "aihubmix",
        since=parse_time(params["since"], name="since") if params["since"] else None,
        until=parse_time(params["until"], name="until") if params["until"] else None,
    )
    return store, p


# -- frames -----------------------------------------------------------------------------

def change_feed(store: Store, p: Period) -> pl.DataFrame:
    return query.changes(store, since=p.since, until=p.until, source=p.source)


def change_summary(feed: pl.DataFrame) -> dict[str, int]:
    """Counts of models added, removed, returned, changed; price cuts and rises."""
    kinds = feed.filter(pl.col("field").is_null()).group_by("kind").len()
    counts = dict(zip(kinds["kind"].to_list(), kinds["len"].to_list(), strict=True))
    prices = price_changes(feed)
    return {
        "added": counts.get("added", 0),
        "removed": counts.get("removed", 0),
        "returned": counts.get("returned", 0),
        "changed_models": feed.filter(pl.col("kind") == "changed")["model_id"].n_unique(),
        "price_changes": prices.height,
        "price_cuts": prices.filter(pl.col("direction") == "cut").height,
        "price_rises": prices.filter(pl.col("direction") == "rise").height,
    }


def price_changes(feed: pl.DataFrame) -> pl.DataFrame:
    """Every price change: old -> new, %, direction."""
    prices = feed.filter(pl.col("kind") == "changed", pl.col("field").str.ends_with("_price"))
    return prices.select(
        "changed_at", "model_id", pl.col("field").alias("price"),
        pl.col("old_number").alias("old"), pl.col("new_number").alias("new"), "pct_change",
        pl.when(pl.col("new_number") < pl.col("old_number")).then(pl.lit("cut"))
        .when(pl.col("new_number") > pl.col("old_number")).then(pl.lit("rise"))
        .when(pl.col("old_number").is_null()).then(pl.lit("priced"))
        .otherwise(pl.lit("unpriced")).alias("direction"),
    )


def capability_changes(feed: pl.DataFrame) -> pl.DataFrame:
    return feed.filter(pl.col("kind") == "changed", pl.col("field").is_in(list(CAPABILITY_FIELDS))
                       ).select("changed_at", "model_id", "field", "old_value", "new_value")


def membership(feed: pl.DataFrame) -> pl.DataFrame:
    """Models added, removed or returned in the period."""
    return feed.filter(pl.col("field").is_null()).select("changed_at", "model_id", "kind")


def movers(feed: pl.DataFrame, n: int = TOP_MOVERS) -> list[str]:
    """The models whose input price changed most often in the period."""
    prices = price_changes(feed).filter(pl.col("price") == "input_price")
    top = prices.group_by("model_id").len().sort(["len", "model_id"], descending=[True, False])
    return top.head(n)["model_id"].to_list()


def price_steps(store: Store, p: Period, model_ids: list[str]) -> pl.DataFrame:
    """Input/output price steps of chosen models, clipped to the period."""
    frames = []
    for model_id in model_ids:
        steps = query.price_history(store, model_id, source=p.source)
        frames.append(steps.select("model_id", "valid_from", "valid_to", "input_price",
                                   "output_price"))
    if not frames:
        return pl.DataFrame(schema={"model_id": pl.String, "valid_from": pl.Datetime("us"),
                                    "valid_to": pl.Datetime("us"), "input_price": pl.Float64,
                                    "output_price": pl.Float64})
    steps = pl.concat(frames)
    if p.since is not None:
        steps = steps.filter(pl.col("valid_to").is_null() | (pl.col("valid_to") > p.since))
    return steps.filter(pl.col("valid_from") <= p.until)


def in_period(frame: pl.DataFrame, p: Period, column: str = "observed_at") -> pl.DataFrame:
    if p.since is not None:
        frame = frame.filter(pl.col(column) >= p.since)
    return frame.filter(pl.col(column) <= p.until)


def median_prices(store: Store, p: Period) -> pl.DataFrame:
    return in_period(query.median_price_by_type(store, source=p.source), p)


def coverage(store: Store, p: Period, column: str = "features") -> pl.DataFrame:
    return in_period(query.coverage(store, source=p.source, column=column), p)


def cheapest_over_time(store: Store, p: Period, **filters: str) -> pl.DataFrame:
    """The cheapest model (by input price) meeting a filter, at every snapshot."""
    rows = []
    for at in in_period(snapshot_times(store, p.source), p)["observed_at"].to_list():
        found = query.models(store, source=p.source, as_of=at, sort_by="model_ratio", **filters)
        found = found.filter(pl.col("input_price").is_not_null())
        if found.height:
            first = found.row(0, named=True)
            rows.append({"observed_at": at, "model_id": first["model_id"],
                         "input_price": first["input_price"]})
    return pl.DataFrame(rows, schema={"observed_at": pl.Datetime("us"), "model_id": pl.String,
                                      "input_price": pl.Float64})


def snapshot_times(store: Store, source: str) -> pl.DataFrame:
    return store.frame("SELECT observed_at, models FROM snapshots WHERE source = $s "
                       "ORDER BY observed_at", {"s": source})


def frontier(store: Store, p: Period) -> pl.DataFrame:
    """Input price vs context length now and at the start of the period."""
    first = snapshot_times(store, p.source)["observed_at"].min()
    then = p.since or (first if isinstance(first, datetime) else None)
    frames = []
    for label, at in (("start", then), ("end", p.until)):
        if at is None:
            continue
        frame = query.models(store, source=p.source, as_of=at)
        frames.append(frame.filter(pl.col("input_price").is_not_null(),
                                   pl.col("context_length").is_not_null())
                      .select("model_id", "input_price", "context_length",
                              pl.lit(f"{label}: {at:%Y-%m-%d}").alias("when")))
    return pl.concat(frames) if frames else pl.DataFrame()


# -- charts (altair -> SVG) ---------------------------------------------------------------

def _utc(field: str, title: str) -> Any:
    import altair as alt

    return alt.X(f"{field}:T", title=title, scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format="%Y-%m-%d", labelAngle=-30))


def chart_price_steps(steps: pl.DataFrame) -> Any:
    import altair as alt

    return alt.Chart(steps, title="Input price of the most-changed models (USD per 1M)",
                     width=WIDTH, height=HEIGHT).mark_line(
        interpolate="step-after", point=True
    ).encode(_utc("valid_from", "valid from (UTC)"),
             alt.Y("input_price:Q", title="input USD per 1M tokens"),
             alt.Color("model_id:N", title="model"))


def chart_median_prices(medians: pl.DataFrame) -> Any:
    import altair as alt

    return alt.Chart(medians, title="Median input price per type (USD per 1M)",
                     width=WIDTH, height=HEIGHT).mark_line(
        interpolate="step-after"
    ).encode(_utc("observed_at", "snapshot (UTC)"),
             alt.Y("median_input_price:Q", title="median input USD per 1M tokens"),
             alt.Color("type:N", title="type"))


def chart_coverage(cover: pl.DataFrame, what: str) -> Any:
    import altair as alt

    return alt.Chart(cover, title=f"Models per {what}", width=WIDTH,
                     height=HEIGHT).mark_line(interpolate="step-after").encode(
        _utc("observed_at", "snapshot (UTC)"), alt.Y("models:Q", title="models"),
        alt.Color("value:N", title=what))


def chart_price_change_bars(prices: pl.DataFrame) -> Any:
    import altair as alt

    data = (
        prices.filter(pl.col("pct_change").is_not_null())
        .with_columns((pl.col("model_id") + " · " + pl.col("price")).alias("what"))
        .sort(pl.col("pct_change").abs(), descending=True)
        .unique("what", keep="first", maintain_order=True)
        .head(30)
    )
    return alt.Chart(data, title="Largest price changes in the period (%, symlog scale)",
                     width=WIDTH).mark_bar().encode(
        alt.X("pct_change:Q", title="change (%)", scale=alt.Scale(type="symlog")),
        alt.Y("what:N", title=None, sort="x"),
        alt.Color("direction:N", title="direction",
                  scale=alt.Scale(domain=["cut", "rise"], range=["#2a9d8f", "#e76f51"])))


def chart_frontier(points: pl.DataFrame) -> Any:
    import altair as alt

    return alt.Chart(points, title="Input price vs context length", width=WIDTH,
                     height=HEIGHT).mark_point(filled=True).encode(
        alt.X("context_length:Q", title="context length (tokens)", scale=alt.Scale(type="log")),
        alt.Y("input_price:Q", title="input USD per 1M tokens", scale=alt.Scale(type="symlog")),
        alt.Color("when:N", title="catalog"), tooltip=["model_id:N"])


_TEXT = re.compile(r">([^<]*)<")


def svg(chart: Any) -> str:
    """Render an altair chart to static SVG (no JavaScript, no network).

    vl-convert already XML-escapes text; quotes in text nodes are escaped too, so no
    catalog string can even look like an attribute, and the result must parse as XML.
    """
    import xml.dom.minidom

    import vl_convert

    drawn = vl_convert.vegalite_to_svg(chart.to_json())
    drawn = _TEXT.sub(lambda m: ">" + m.group(1).replace('"', "&quot;").replace("'", "&#x27;")
                      + "<", drawn)
    document = xml.dom.minidom.parseString(drawn)
    if document.getElementsByTagName("script") or document.getElementsByTagName("foreignObject"):
        raise ValueError("a rendered chart holds active content")
    return drawn


# -- the HTML report ----------------------------------------------------------------------

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
    return html.escape(str(value))


def html_table(frame: pl.DataFrame, *, limit: int = 200) -> str:
    if frame.height == 0:
        return "<p>None in this period.</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.head(limit).iter_rows():
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cls = ' class="n"' if numeric else (
                f' class="{value}"' if value in ("cut", "rise") else "")
            cells.append(f"<td{cls}>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>… and {frame.height - limit} more.</p>" if frame.height > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def build_report(store: Store, *, source: str = "aihubmix", since: datetime | None = None,
                 until: datetime | None = None) -> str:
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
        "<div class=cards>" + "".join(
            f"<div class=card><b>{_e(v)}</b>{_e(k.replace('_', ' '))}</div>" for k, v in cards
        ) + "</div>",
    ]
    parts += ["<h2>Charts</h2>"] + [
        f'<div class=chart id="chart-{name}">{svg(chart)}</div>' for name, chart in charts]
    parts += [
        "<h2>Price changes</h2>", html_table(prices),
        "<h2>Models added, removed, returned</h2>", html_table(membership(feed)),
        "<h2>Capability changes</h2>", html_table(capability_changes(feed)),
    ]
    parts.append("<h2>Catalog at the end of the period</h2>")
    parts.append(html_table(now.select(
        "model_id", pl.col("description").str.slice(0, 160).alias("description"),
        pl.col("types").list.join(","), "input_price", "output_price", "context_length")))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(store: Store, out: Path, **kwargs: Any) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(store, **kwargs), encoding="utf-8")
    return out

