"""pandera schemas of the normalised record, built from `schemas.record.FIELDS`.

`CatalogSchema` states every rule per column and gives precise failure messages.
Running it costs one polars collect per check (~6 ms whatever the size), so
`failure_reasons` screens a snapshot with the same rules as one polars expression
(`_ROW_OK`, well under a millisecond) and runs `CatalogSchema` only on the rows it flags.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandera.polars as pa
import polars as pl

from schemas.record import COUNT_COLUMNS, FIELDS, PRICE_COLUMNS
from schemas.rules import NOT_NULL as _NOT_NULL

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

_DTYPES = {f.name: f.dtype for f in FIELDS}


def failure_reasons(frame: pl.DataFrame) -> Iterator[tuple[int, str]]:
    """(row index, reason) for every row-level failure of `CatalogSchema`."""
    if any(frame.schema.get(name) != dtype for name, dtype in _DTYPES.items()):
        CatalogSchema.validate(frame, lazy=True)  # a dtype is a bug, not bad data: it raises
    rows = frame.with_row_index().filter(~_ROW_OK).get_column("index").to_list()
    if not rows:
        return
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
