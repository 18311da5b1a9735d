import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    from pipeline.report import notebook_period

    store, p = notebook_period(mo)
    return mo, p, store


@app.cell
def _(mo, p):
    mo.md(f"# Capabilities in `{p.source}`\n\n{p.label} (UTC).")
    return


@app.cell
def _(p, store):
    from pipeline.report import charts, frames

    features = frames.coverage(store, p, "features")
    modalities = frames.coverage(store, p, "input_modalities")
    return charts, features, modalities


@app.cell
def _(charts, features, mo, modalities):
    mo.vstack(
        [
            mo.md("## Feature coverage over time"),
            charts.chart_coverage(features, "feature"),
            mo.md("## Input modality coverage over time"),
            charts.chart_coverage(modalities, "input modality"),
        ]
    )
    return


@app.cell
def _(p, store):
    import polars as pl

    from pipeline import query

    now = query.models(store, source=p.source, as_of=p.until)
    context = now.select(
        pl.col("context_length").min().alias("min"),
        pl.col("context_length").median().alias("median"),
        pl.col("context_length").max().alias("max"),
        pl.col("context_length").is_null().sum().alias("unknown"),
    )
    return context, now


@app.cell
def _(context, mo, now):
    import altair as alt

    histogram = (
        alt.Chart(now.drop_nulls("context_length"), title="Context length distribution")
        .mark_bar()
        .encode(
            alt.X("context_length:Q", bin=alt.Bin(maxbins=20), title="context length (tokens)"),
            alt.Y("count():Q", title="models"),
        )
    )
    mo.vstack([mo.md("## Context length now"), mo.ui.table(context), histogram])
    return


@app.cell
def _(p, store):
    from pipeline.report.charts import chart_frontier
    from pipeline.report.frames import frontier

    points = frontier(store, p)
    return chart_frontier, points


@app.cell
def _(chart_frontier, mo, points):
    mo.vstack(
        [
            mo.md("## Cost-effectiveness: input price vs context, start vs end"),
            chart_frontier(points),
        ]
    )
    return


if __name__ == "__main__":  # headless: the results as text on stdout
    from pipeline.report.frames import print_headless

    _, results = app.run()
    print_headless(results, ["features", "modalities", "context", "points"])
