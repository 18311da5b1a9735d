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

_DTYPES = {f.name: f.dtype for f in FIELDS}
# what the row rules read: a flagged row's reasons are a function of these values alone
# (of the other not-null columns, only whether they are null)
_VALUED = ("model_id", *COUNT_COLUMNS, *PRICE_COLUMNS)
_NULL_ONLY = tuple(sorted(_NOT_NULL - set(_VALUED)))


def verdict_key(row: dict[str, object]) -> tuple[object, ...]:
    """What `failure_reasons` reads of one record: equal keys, equal reasons."""
    return (*(row.get(c) for c in _VALUED), *(row.get(c) is None for c in _NULL_ONLY))


_NOT_NULL_COLUMNS = tuple(sorted(_NOT_NULL))


def row_ok(row: dict[str, object]) -> bool:
    """`_ROW_OK` for one record dict, in plain Python: a poll's few new rows are screened
    in microseconds, where a frame costs ~3 ms (a property test keeps the two equal)."""
    if any(row.get(c) is None for c in _NOT_NULL_COLUMNS) or not row["model_id"]:
        return False
    for column in COUNT_COLUMNS:
        value = row.get(column)
        if value is not None and not value > 0:  # type: ignore[operator]
            return False
    for column in PRICE_COLUMNS:
        value = row.get(column)
        if value is not None and not value >= 0:  # type: ignore[operator]
            return False
    return True


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
