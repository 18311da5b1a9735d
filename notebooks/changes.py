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
    mo.md(f"# What changed in `{p.source}`\n\n{p.label} (UTC). Prices in USD per 1M tokens.")
    return


@app.cell
def _(p, store):
    from pipeline.report import charts, frames

    feed = frames.change_feed(store, p)
    summary = frames.change_summary(feed)
    membership = frames.membership(feed)
    prices = frames.price_changes(feed)
    capabilities = frames.capability_changes(feed)
    return capabilities, charts, feed, membership, prices, summary


@app.cell
def _(mo, summary):
    mo.hstack([mo.stat(value=str(v), label=k.replace("_", " ")) for k, v in summary.items()])
    return


@app.cell
def _(membership, mo):
    mo.vstack([mo.md("## Models added, removed, returned"), mo.ui.table(membership)])
    return


@app.cell
def _(charts, mo, prices):
    mo.vstack(
        [
            mo.md("## Every price change"),
            mo.ui.table(prices),
            charts.chart_price_change_bars(prices) if prices.height else mo.md("None."),
        ]
    )
    return


@app.cell
def _(capabilities, mo):
    mo.vstack(
        [
            mo.md("## Capability changes (types, features, modalities, limits)"),
            mo.ui.table(capabilities),
        ]
    )
    return


if __name__ == "__main__":  # headless: the results as text on stdout
    from pipeline.report.frames import print_headless

    _, results = app.run()
    print_headless(results, ["summary", "membership", "prices", "capabilities"])
