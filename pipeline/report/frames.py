"""The frames a report shows: the period, the change feed and what it sums up to,
price steps, medians, coverage. Every number comes from `pipeline.query` or a named
read of the store; the notebooks call these too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pipeline import query
from pipeline.errors import BadInput
from pipeline.store import Store
from pipeline.timeutil import iso, utcnow

CAPABILITY_FIELDS = ("types", "features", "input_modalities", "context_length", "max_output")
TOP_MOVERS = 8


@dataclass(frozen=True)
class Period:
    source: str
    since: datetime | None
    until: datetime

    @property
    def label(self) -> str:
        start = iso(self.since) if self.since else "the first snapshot"
        return f"{start} .. {iso(self.until.replace(microsecond=0))}"


def period(
    store: Store,
    *,
    source: str = "aihubmix",
    since: datetime | None = None,
    until: datetime | None = None,
) -> Period:
    """The period a report covers; it ends at `until`, else at the source's last
    snapshot (the history says nothing about later: "now" would be a claim it cannot make)."""
    if until is None:
        last = store.snapshot_times(source)["observed_at"].max()
        until = last if isinstance(last, datetime) else utcnow()
    if since and since >= until:
        raise BadInput(f"--since {iso(since)} is not before the period's end {iso(until)}")
    return Period(source=source, since=since, until=until)


# -- notebook parameters ----------------------------------------------------------------


def notebook_parameters(mo: Any) -> dict[str, str | None]:
    """`--db --source --since --until` of a notebook run (`python notebooks/x.py --db ..`,
    or `marimo run x.py -- --db ..`), else MODELWATCH_DB/SOURCE/SINCE/UNTIL, else defaults.
    """
    import os

    from pipeline.config import resolve_db

    args = mo.cli_args() if mo is not None else {}

    def pick(name: str, default: str | None = None) -> str | None:
        value = args.get(name) or os.environ.get(f"MODELWATCH_{name.upper()}")
        return str(value) if value else default

    return {
        "db": str(resolve_db(pick("db"))),
        "source": pick("source", "aihubmix"),
        "since": pick("since"),
        "until": pick("until"),
    }


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


def print_headless(defs: Any, names: list[str]) -> None:
    """What a notebook shows, as text on stdout, when it runs as a plain script
    (`python notebooks/changes.py --db ...`): the period, then each named result."""
    p = defs["p"]
    print(f"# {p.source}: {p.label}")
    with pl.Config(tbl_rows=40, tbl_cols=10, fmt_str_lengths=50, tbl_width_chars=160):
        for name in names:
            value = defs[name]
            print(f"\n## {name.replace('_', ' ')}")
            if isinstance(value, dict):
                print("\n".join(f"{k.replace('_', ' ')}: {v}" for k, v in value.items()))
            elif isinstance(value, pl.DataFrame) and value.height > 40:
                print(value)
                print(f"({value.height} rows; `modelwatch changes --format csv` has them all)")
            else:
                print(value)


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
        "changed_at",
        "model_id",
        pl.col("field").alias("price"),
        pl.col("old_number").alias("old"),
        pl.col("new_number").alias("new"),
        "pct_change",
        pl.when(pl.col("new_number") < pl.col("old_number"))
        .then(pl.lit("cut"))
        .when(pl.col("new_number") > pl.col("old_number"))
        .then(pl.lit("rise"))
        .when(pl.col("old_number").is_null())
        .then(pl.lit("priced"))
        .otherwise(pl.lit("unpriced"))
        .alias("direction"),
    )


def capability_changes(feed: pl.DataFrame) -> pl.DataFrame:
    return feed.filter(
        pl.col("kind") == "changed", pl.col("field").is_in(list(CAPABILITY_FIELDS))
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
        frames.append(
            steps.select("model_id", "valid_from", "valid_to", "input_price", "output_price")
        )
    if not frames:
        return pl.DataFrame(
            schema={
                "model_id": pl.String,
                "valid_from": pl.Datetime("us"),
                "valid_to": pl.Datetime("us"),
                "input_price": pl.Float64,
                "output_price": pl.Float64,
            }
        )
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
            rows.append(
                {
                    "observed_at": at,
                    "model_id": first["model_id"],
                    "input_price": first["input_price"],
                }
            )
    return pl.DataFrame(
        rows,
        schema={"observed_at": pl.Datetime("us"), "model_id": pl.String, "input_price": pl.Float64},
    )


def snapshot_times(store: Store, source: str) -> pl.DataFrame:
    return store.snapshot_times(source)


def frontier(store: Store, p: Period) -> pl.DataFrame:
    """Input price vs context length now and at the start of the period."""
    first = snapshot_times(store, p.source)["observed_at"].min()
    then = p.since or (first if isinstance(first, datetime) else None)
    frames = []
    for label, at in (("start", then), ("end", p.until)):
        if at is None:
            continue
        frame = query.models(store, source=p.source, as_of=at)
        frames.append(
            frame.filter(
                pl.col("input_price").is_not_null(), pl.col("context_length").is_not_null()
            ).select(
                "model_id",
                "input_price",
                "context_length",
                pl.lit(f"{label}: {at:%Y-%m-%d}").alias("when"),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame()
