"""Parameters shared by the notebooks: database, source, period.

From the command line: `python notebooks/changes.py --db data/catalog.duckdb --source
aihubmix --since 2026-01-01 --until 2026-06-01` (or `marimo run notebooks/changes.py --
--db ...`); when not given, the environment variables MODELWATCH_DB, MODELWATCH_SOURCE,
MODELWATCH_SINCE and MODELWATCH_UNTIL, then the defaults (data/catalog.duckdb, aihubmix,
the whole history).
"""

from __future__ import annotations

import os
from typing import Any

from pipeline.report import Period, period
from pipeline.store import DEFAULT_DB, Store
from pipeline.timeutil import parse_time


def parameters(mo: Any) -> dict[str, str | None]:
    args = mo.cli_args() if mo is not None else {}
    def pick(name: str, default: str | None = None) -> str | None:
        value = args.get(name) or os.environ.get(f"MODELWATCH_{name.upper()}")
        return str(value) if value else default

    return {"db": pick("db", str(DEFAULT_DB)), "source": pick("source", "aihubmix"),
            "since": pick("since"), "until": pick("until")}


def open_period(mo: Any) -> tuple[Store, Period]:
    """A read-only store and the period to report on."""
    params = parameters(mo)
    store = Store.open(params["db"], read_only=True)
    p = period(
        store,
        source=params["source"] or "aihubmix",
        since=parse_time(params["since"], name="since") if params["since"] else None,
        until=parse_time(params["until"], name="until") if params["until"] else None,
    )
    return store, p
