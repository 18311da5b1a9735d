"""SPEC 4's filters and sorts over a catalog frame: one definition for the CLI, the
served API, the reports and the notebooks."""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from pipeline.errors import BadParameter
from schemas.record import KNOWN_FEATURES, KNOWN_MODALITIES, KNOWN_TYPES, TYPE_ALIASES

QUERY_PARAMS = ("type", "modalities", "model", "features", "sort_by", "sort_order")
SORT_BY = ("order", "context_length", "model_ratio", "coding")
SORT_ORDER = ("asc", "desc")
_NON_ALNUM = r"[^\p{L}\p{N}]"


@dataclass(frozen=True)
class Query:
    """The parameters of `/api/v1/models` after SPEC 4's clean-up (empty = absent)."""

    type: str | None = None
    modalities: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    model: str | None = None
    sort_by: str = "order"
    sort_order: str = "asc"


def _blank(value: str | None) -> bool:
    return value is None or value.strip() == ""


def _items(value: str | None) -> tuple[str, ...]:
    if _blank(value):
        return ()
    return tuple(dict.fromkeys(p.strip().lower() for p in str(value).split(",") if p.strip()))


def _accepted(documented: tuple[str, ...], present: set[str]) -> str:
    extra = sorted(present - set(documented))
    return ", ".join(documented) + (f" (also in this catalog: {', '.join(extra)})" if extra else "")


def parse_query(
    frame: pl.DataFrame,
    *,
    type: str | None = None,
    modalities: str | None = None,
    features: str | None = None,
    model: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> Query:
    """Check parameters against SPEC 4 and the catalog being queried; name any bad value."""

    def present(column: str) -> set[str]:
        return set(frame.get_column(column).explode().drop_nulls().unique().to_list())

    kind = None
    if not _blank(type):
        kind = str(type).strip().lower()
        kind = TYPE_ALIASES.get(kind, kind)
        types = present("types")
        if kind not in KNOWN_TYPES and kind not in types:
            raise BadParameter(
                f"type {type!r} is not a known type; accepted: "
                f"{_accepted(KNOWN_TYPES + tuple(TYPE_ALIASES), types)}"
            )
    wanted: dict[str, tuple[str, ...]] = {}
    for name, value, column, known in (
        ("modalities", modalities, "input_modalities", KNOWN_MODALITIES),
        ("features", features, "features", KNOWN_FEATURES),
    ):
        items = _items(value)
        have = present(column)
        bad = [v for v in items if v not in known and v not in have]
        if bad:
            raise BadParameter(
                f"{name} value {bad[0]!r} is not known; accepted: {_accepted(known, have)}"
            )
        wanted[name] = items
    order_key = "order" if _blank(sort_by) else str(sort_by).strip().lower()
    if order_key not in SORT_BY:
        raise BadParameter(f"sort_by {sort_by!r} is not known; accepted: {', '.join(SORT_BY)}")
    direction = "asc" if _blank(sort_order) else str(sort_order).strip().lower()
    if direction not in SORT_ORDER:
        raise BadParameter(
            f"sort_order {sort_order!r} is not known; accepted: {', '.join(SORT_ORDER)}"
        )
    return Query(
        type=kind,
        modalities=wanted["modalities"],
        features=wanted["features"],
        model=None if _blank(model) else str(model).strip(),
        sort_by=order_key,
        sort_order=direction,
    )


def coding_expr() -> pl.Expr:
    """SPEC 4's coding model: tagged `coding`, an id containing `code`, or `coding` in the
    description as a word."""
    tags = pl.col("extra").str.json_path_match("$.tags").fill_null("")
    return (
        pl.col("features").list.contains("coding")
        | tags.str.to_lowercase().str.contains(r"\bcoding\b")
        | pl.col("model_id").str.to_lowercase().str.contains("code", literal=True)
        | pl.col("description").str.contains(r"(?i)\bcoding\b")
    )


def apply_query(frame: pl.DataFrame, query: Query) -> pl.DataFrame:
    """Filter and sort a catalog (in default order) exactly as SPEC 4 says."""
    conditions: list[pl.Expr] = []
    if query.type:
        conditions.append(pl.col("types").list.contains(query.type))
    conditions += [pl.col("input_modalities").list.contains(m) for m in query.modalities]
    conditions += [pl.col("features").list.contains(f) for f in query.features]
    if query.model:
        needle = query.model.lower()
        ids = pl.col("model_id").str.to_lowercase()
        match = ids.str.contains(needle, literal=True)
        squeezed = re.sub(r"[\W_]", "", needle)
        if squeezed:
            match = match | ids.str.replace_all(_NON_ALNUM, "").str.contains(squeezed, literal=True)
        conditions.append(match)
    if conditions:
        frame = frame.filter(pl.all_horizontal(conditions))
    frame = frame.sort("position")
    descending = query.sort_order == "desc"
    if query.sort_by == "coding":
        return frame.sort(coding_expr(), descending=True, maintain_order=True)
    if query.sort_by == "context_length":
        key = pl.col("context_length")
    elif query.sort_by == "model_ratio":
        key = pl.col("input_price") / 2
    else:
        return frame.sort("position", descending=descending)
    # unknown values last in both directions; ties keep default order
    return frame.sort(
        [key.is_null(), key, pl.col("position")],
        descending=[False, descending, False],
        maintain_order=True,
    )
