"""pandera schemas of the normalised record, built from `schemas.record.FIELDS`.

`CatalogSchema` states every rule per column and gives precise failure messages.
Running it costs one polars collect per check, so `failure_reasons` screens a whole
snapshot with `QuickSchema` (dtypes plus one row-wise rule, ~3 ms for 1,000 rows) and
runs `CatalogSchema` only on the rows that screen flags.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandera.polars as pa
import polars as pl

from schemas.record import COUNT_COLUMNS, FIELDS, PRICE_COLUMNS

_NOT_NULL = frozenset(
    {"source", "model_id", "description", "types", "features", "input_modalities", "position"}
)
_CHECKS: dict[str, list[pa.Check]] = {
    "model_id": [pa.Check.str_length(min_value=1, error="model_id is empty")],
    **{c: [pa.Check.gt(0, error=f"{c} must be positive")] for c in COUNT_COLUMNS},
    **{c: [pa.Check.ge(0, error=f"{c} must not be negative")] for c in PRICE_COLUMNS},
}

CatalogSchema = pa.DataFrameSchema(
    {
        f.name: pa.Column(f.dtype, checks=_CHECKS.get(f.name, []), nullable=f.name not in _NOT_NULL)
        for f in FIELDS
    },
    name="normalised_catalog",
    strict=False,
)

# The same value rules as one row-wise expression: true where a row passes them all.
_ROW_OK = pl.all_horizontal(
    *(pl.col(c).is_not_null() for c in sorted(_NOT_NULL)),
    pl.col("model_id").str.len_chars() > 0,
    *((pl.col(c) > 0).fill_null(True) for c in COUNT_COLUMNS),
    *((pl.col(c) >= 0).fill_null(True) for c in PRICE_COLUMNS),
)

QuickSchema = pa.DataFrameSchema(
    {f.name: pa.Column(f.dtype, nullable=True) for f in FIELDS},
    checks=[pa.Check(lambda data: data.lazyframe.select(_ROW_OK), error="row rules")],
    name="normalised_catalog_screen",
    strict=False,
)


def failure_reasons(frame: pl.DataFrame) -> Iterator[tuple[int, str]]:
    """(row index, reason) for every row-level failure of `CatalogSchema`."""
    try:
        QuickSchema.validate(frame, lazy=True)
        return
    except pa.errors.SchemaErrors as exc:
        flagged = exc.failure_cases.get_column("index")
        if flagged.null_count():  # a frame-level failure (a dtype) is a bug, not bad data
            raise
    rows = sorted(set(flagged.to_list()))
    try:
        CatalogSchema.validate(frame[rows], lazy=True)
    except pa.errors.SchemaErrors as exc:
        for case in exc.failure_cases.iter_rows(named=True):
            column, check, value = case["column"], case["check"], case["failure_case"]
            if check == "not_nullable":
                reason = f"{column} is missing"
            elif " " in check:  # our own error text
                reason = f"{check} (got {value!r})"
            else:
                reason = f"{column}={value} fails {check}"
            yield rows[int(case["index"])], reason
