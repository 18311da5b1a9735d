"""Charts of the report: altair specs rendered to static SVG with vl-convert, so the
report needs no JavaScript and no network; SVG text is XML-escaped by the renderer."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

WIDTH, HEIGHT = 720, 300  # chart size in pixels
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # not text: the renderer aborts on a NUL


def printable(frame: pl.DataFrame) -> pl.DataFrame:
    """Catalog text with control characters shown as U+FFFD, as a browser would: the
    chart renderer (Rust) aborts the whole process on a NUL byte in a label."""
    return frame.with_columns(
        pl.col(c).str.replace_all(CONTROL, "\ufffd")
        for c, dtype in frame.schema.items()
        if dtype == pl.String
    )


def _chart(frame: pl.DataFrame, title: str) -> Any:
    """A chart of this report's size over `frame`, its text made printable (a NUL byte
    in a chart's text aborts vl-convert), titled `title` (which may come from a catalog)."""
    import altair as alt

    return alt.Chart(
        printable(frame), title=re.sub(CONTROL, "\ufffd", title), width=WIDTH, height=HEIGHT
    )


def _utc(field: str, title: str) -> Any:
    import altair as alt

    return alt.X(
        f"{field}:T",
        title=title,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format="%Y-%m-%d", labelAngle=-30),
    )


def chart_price_steps(steps: pl.DataFrame) -> Any:
    import altair as alt

    return (
        _chart(steps, "Input price of the most-changed models (USD per 1M)")
        .mark_line(interpolate="step-after", point=True)
        .encode(
            _utc("valid_from", "valid from (UTC)"),
            alt.Y("input_price:Q", title="input USD per 1M tokens"),
            alt.Color("model_id:N", title="model"),
        )
    )


def chart_median_prices(medians: pl.DataFrame) -> Any:
    import altair as alt

    return (
        _chart(medians, "Median input price per type (USD per 1M)")
        .mark_line(interpolate="step-after")
        .encode(
            _utc("observed_at", "snapshot (UTC)"),
            alt.Y("median_input_price:Q", title="median input USD per 1M tokens"),
            alt.Color("type:N", title="type"),
        )
    )


def chart_coverage(cover: pl.DataFrame, what: str) -> Any:
    import altair as alt

    return (
        _chart(cover, f"Models per {what}")
        .mark_line(interpolate="step-after")
        .encode(
            _utc("observed_at", "snapshot (UTC)"),
            alt.Y("models:Q", title="models"),
            alt.Color("value:N", title=what),
        )
    )


def chart_price_change_bars(prices: pl.DataFrame) -> Any:
    import altair as alt

    data = (
        prices.filter(pl.col("pct_change").is_not_null())
        .with_columns((pl.col("model_id") + " · " + pl.col("price")).alias("what"))
        .sort(pl.col("pct_change").abs(), descending=True)
        .unique("what", keep="first", maintain_order=True)
        .head(30)
    )
    return (
        alt.Chart(  # no fixed height: a bar per change
            printable(data),
            title="Largest price changes in the period (%, symlog scale)",
            width=WIDTH,
        )
        .mark_bar()
        .encode(
            alt.X("pct_change:Q", title="change (%)", scale=alt.Scale(type="symlog")),
            alt.Y("what:N", title=None, sort="x"),
            alt.Color(
                "direction:N",
                title="direction",
                scale=alt.Scale(domain=["cut", "rise"], range=["#2a9d8f", "#e76f51"]),
            ),
        )
    )


def chart_frontier(points: pl.DataFrame) -> Any:
    import altair as alt

    return (
        _chart(points, "Input price vs context length")
        .mark_point(filled=True)
        .encode(
            alt.X(
                "context_length:Q",
                title="context length (tokens)",
                scale=alt.Scale(type="log"),
                # 4k, 128k, 1M: full numbers on a log axis run into each other
                axis=alt.Axis(format="~s", labelOverlap="greedy"),
            ),
            alt.Y("input_price:Q", title="input USD per 1M tokens", scale=alt.Scale(type="symlog")),
            alt.Color("when:N", title="catalog"),
            tooltip=["model_id:N"],
        )
    )


def chart_model_prices(steps: pl.DataFrame, title: str) -> Any:
    """One model's prices over time (a served model page): `steps` holds `at`, `price`
    (which one), `usd`, `run` (a stretch without a gap: a removal breaks the line) and
    `seq` (drawing order: a version's end comes before the next one's start)."""
    import altair as alt

    return (
        _chart(steps, title)
        .mark_line(interpolate="step-after", point=True)
        .encode(
            _utc("at", "valid from (UTC)"),
            alt.Y("usd:Q", title="USD per 1M tokens"),
            alt.Color("price:N", title="price"),
            alt.Detail("run:N"),
            alt.Order("seq:Q"),
        )
    )


_TEXT = re.compile(r">([^<]*)<")


def svg(chart: Any) -> str:
    """Render an altair chart to static SVG (no JavaScript, no network).

    vl-convert already XML-escapes text; quotes in text nodes are escaped too, so no
    catalog string can even look like an attribute, and the result must parse as XML.
    """
    import xml.dom.minidom

    import vl_convert

    drawn = vl_convert.vegalite_to_svg(chart.to_json())
    drawn = _TEXT.sub(
        lambda m: ">" + m.group(1).replace('"', "&quot;").replace("'", "&#x27;") + "<", drawn
    )
    document = xml.dom.minidom.parseString(drawn)
    if document.getElementsByTagName("script") or document.getElementsByTagName("foreignObject"):
        raise ValueError("a rendered chart holds active content")
    return drawn
