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
    mo.md(f"# Price trends in `{p.source}`\n\n{p.label} (UTC). Prices in USD per 1M tokens.")
    return


@app.cell
def _(p, store):
    from pipeline.report import charts, frames

    feed = frames.change_feed(store, p)
    movers = frames.movers(feed)
    steps = frames.price_steps(store, p, movers)
    return charts, frames, movers, steps


@app.cell
def _(charts, mo, movers, steps):
    mo.vstack(
        [
            mo.md(f"## Step charts: the {len(movers)} models whose input price moved most often"),
            charts.chart_price_steps(steps) if steps.height else mo.md("No price moves."),
            mo.ui.table(steps),
        ]
    )
    return


@app.cell
def _(frames, p, store):
    medians = frames.median_prices(store, p)
    return (medians,)


@app.cell
def _(charts, medians, mo):
    mo.vstack(
        [
            mo.md("## Median input price per type"),
            charts.chart_median_prices(medians),
            mo.ui.table(medians),
        ]
    )
    return


@app.cell
def _(frames, p, store):
    cheapest_tools = frames.cheapest_over_time(store, p, type="llm", features="tools")
    return (cheapest_tools,)


@app.cell
def _(cheapest_tools, mo):
    mo.vstack(
        [mo.md("## Cheapest LLM with tools, snapshot by snapshot"), mo.ui.table(cheapest_tools)]
    )
    return


if __name__ == "__main__":  # headless: the results as text on stdout
    from pipeline.report.frames import print_headless

    _, results = app.run()
    print_headless(results, ["movers", "steps", "medians", "cheapest_tools"])
