"""The normalised record's row rules in plain Python, without pandera (which costs half
a second to import): `row_ok` screens a snapshot's new rows, and `verdict_key` says
which flagged rows fail the same way, so pandera's reasons (`schemas.catalog`) are asked
once per way of failing. A property test keeps `row_ok` equal to `catalog._ROW_OK`."""

from __future__ import annotations

from schemas.record import COUNT_COLUMNS, PRICE_COLUMNS

NOT_NULL = frozenset(
    {"source", "model_id", "description", "types", "features", "input_modalities", "position"}
)
_NOT_NULL_COLUMNS = tuple(sorted(NOT_NULL))


def row_ok(row: dict[str, object]) -> bool:
    """`catalog._ROW_OK` for one record dict: a poll's few new rows are screened in
    microseconds, where a frame costs ~3 ms."""
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


_OK = "ok"


def _failing(value: object, ok: bool) -> object:
    if ok:
        return _OK
    return ("float", repr(value)) if isinstance(value, float) else value  # NaN equals NaN here


def verdict_key(row: dict[str, object]) -> tuple[object, ...]:
    """What the row rules report of one record: the columns that fail and their failing
    values, nothing else. Rows with equal keys get equal reasons, whatever their other
    values (OpenRouter: every model priced -1 fails the one way)."""
    model_id = row.get("model_id")
    key: list[object] = [_failing(model_id, bool(model_id))]
    for column in COUNT_COLUMNS:
        value = row.get(column)
        key.append(_failing(value, value is None or value > 0))  # type: ignore[operator]
    for column in PRICE_COLUMNS:
        value = row.get(column)
        key.append(_failing(value, value is None or value >= 0))  # type: ignore[operator]
    key.extend(row.get(c) is None for c in _NOT_NULL_COLUMNS)
    return tuple(key)
