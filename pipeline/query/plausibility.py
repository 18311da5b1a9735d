"""Plausibility (issue 16): a price that moves by more than a factor in one step.

A step of more than `factor` either way (10x by default) is usually a units mix-up
(per 1K vs per 1M tokens, cents vs dollars), so the change feed, the pages and the
alerts mark it "check this". It is a flag, not a hold: the change is stored as seen.
"""

from __future__ import annotations

import polars as pl

from pipeline.config import DEFAULT_PLAUSIBILITY_FACTOR
from schemas.record import PRICE_COLUMNS

DEFAULT_FACTOR = DEFAULT_PLAUSIBILITY_FACTOR
CHECK_THIS = "check this"


def implausible(old: float | None, new: float | None, factor: float = DEFAULT_FACTOR) -> bool:
    """True when a price moved from `old` to `new` by more than `factor` either way.
    A price that appears, disappears or becomes free is not a units mix-up."""
    if old is None or new is None or old <= 0 or new <= 0:
        return False
    return new / old > factor or old / new > factor


def flag_implausible(changes: pl.DataFrame, factor: float = DEFAULT_FACTOR) -> pl.DataFrame:
    """`changes` (rows of `model_changes`: kind, field, pct_change) with a boolean
    `check` column: a price changed by more than `factor` either way in one step."""
    ratio = 1 + pl.col("pct_change") / 100  # new / old; pct_change is null when old is 0
    # pct_change is rounded (and -90% is 0.0999...98 in floats): a step of exactly
    # `factor` either way is not "more than" it
    slack = 1e-6
    flagged = (
        (pl.col("kind") == "changed")
        & pl.col("field").is_in(list(PRICE_COLUMNS))
        & (ratio > 0)
        & ((ratio > factor * (1 + slack)) | (ratio * factor < 1 - slack))
    )
    return changes.with_columns(flagged.fill_null(False).alias("check"))
