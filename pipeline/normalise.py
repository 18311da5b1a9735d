"""Payload -> normalised record frame + quarantine (SPEC 2).

Type problems (a boolean price, a list where a string belongs) are found while parsing,
because the typed frame can no longer show them; value rules (non-empty id, no negative
price or count) are the pandera schema's job (`schemas.catalog`). Duplicate ids are
resolved here, first occurrence kept, since pandera's `unique` flags every copy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from schemas.record import (
    ALIASES,
    COUNT_COLUMNS,
    KNOWN_VALUES,
    LIST_COLUMNS,
    PRICE_KEYS,
    frame_from_rows,
    row_hash,
)
from schemas.rules import row_ok, verdict_key

# upstream field -> record column, for fields that are not prices
_UPSTREAM = {
    "desc": "description",
    "types": "types",
    "features": "features",
    "input_modalities": "input_modalities",
    "max_output": "max_output",
    "context_length": "context_length",
}
_KNOWN_KEYS = frozenset({"model_id", "pricing", *_UPSTREAM})
_DIGITS = re.compile(r"-?[0-9]+", re.ASCII)


# a flagged row's checked values -> pandera's reasons for them: a row that fails the same
# way again (its other fields changed) skips pandera; bounded, cleared when full
_VERDICTS: dict[tuple[Any, ...], tuple[str, ...]] = {}
_VERDICTS_KEPT = 10_000


@dataclass
class QuarantinedRow:
    position: int
    model_id: str | None
    reason: str
    raw: str  # the upstream item as JSON


@dataclass
class Normalised:
    """A snapshot after normalising: the valid rows, what was set aside, what was new."""

    rows: list[dict[str, Any]]  # valid records (COLUMNS), in upstream order
    hashes: list[str]  # row_hash of each valid row
    quarantine: list[QuarantinedRow]
    unknown_values: dict[str, list[str]] = field(default_factory=dict)
    # model_id -> (upstream item, record, row_hash, its own faults): lets the next
    # snapshot skip re-normalising and re-validating items that did not change
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [r["model_id"] for r in self.rows]

    @property
    def frame(self) -> pl.DataFrame:
        """Every valid row as a frame (COLUMNS + row_hash)."""
        return frame_from_rows(self.rows).with_columns(
            pl.Series("row_hash", self.hashes, dtype=pl.String)
        )


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _list(value: Any, name: str, reasons: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        reasons.append(
            f"{name} must be a comma-separated string or a list of strings, got {value!r}"[:200]
        )
        return []
    aliases = ALIASES[name]
    cleaned = {aliases.get(p, p) for p in (s.strip().lower() for s in parts) if p}
    return sorted(cleaned)


# Counts are stored as BIGINT: a larger one is quarantined, not clamped or overflowed.
INT64_MAX = 2**63 - 1
# Numeric strings longer than this are not converted (int() refuses past 4300 digits).
_MAX_NUMBER_TEXT = 100


def _shown(value: Any) -> str:
    """A value as quoted in a reason: its repr, cut to one short line (a number may have
    hundreds of digits)."""
    text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} characters)"


def _number(value: Any, name: str, reasons: list[str]) -> float | None:
    """A JSON number or numeric string; booleans, other text and numbers beyond a float
    (1e400, 10**400) are invalid."""
    if value is None:
        return None
    if isinstance(value, bool):
        reasons.append(f"{name} must be a number, got boolean {value!r}")
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            if len(value) > _MAX_NUMBER_TEXT:
                reasons.append(f"{name} must be a number, got text {_shown(value)}")
                return None
            number = float(value.strip())
        else:
            reasons.append(f"{name} must be a number, got {type(value).__name__}")
            return None
    except ValueError:
        reasons.append(f"{name} must be a number, got {_shown(value)}")
        return None
    except OverflowError:  # an int too large for a float
        number = math.inf
    if math.isnan(number) or math.isinf(number):
        reasons.append(f"{name} must be a finite number, got {_shown(value)}")
        return None
    return number


def _count(value: Any, name: str, reasons: list[str]) -> int | None:
    """A whole number of at most INT64_MAX; 0 means unknown."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value  # exact: no detour through float
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()) and len(value) <= 100:
        count = int(value.strip())
    else:
        number = _number(value, name, reasons)
        if number is None:
            return None
        if number != int(number):
            reasons.append(f"{name} must be a whole number, got {_shown(value)}")
            return None
        count = int(number)
    if count > INT64_MAX:
        reasons.append(f"{name} must be at most {INT64_MAX}, got {_shown(value)}")
        return None
    if count < -INT64_MAX:  # negative counts are the schema's to report; this one cannot be held
        reasons.append(f"{name} must not be negative, got {_shown(value)}")
        return None
    return count or None  # 0 means unknown


def normalise_item(item: Any, position: int, *, source: str) -> tuple[dict[str, Any], list[str]]:
    """One upstream item (AiHubMix shape) -> record values and the reasons it is invalid."""
    reasons: list[str] = []
    if not isinstance(item, dict):
        reasons.append(f"row must be a JSON object, got {type(item).__name__}")
        item = {}
    model_id = item.get("model_id")
    if model_id is not None and not isinstance(model_id, str):
        reasons.append(f"model_id must be a string, got {model_id!r}"[:200])
        model_id = None
    desc = item.get("desc")
    if desc is not None and not isinstance(desc, str):
        reasons.append(f"desc must be a string, got {type(desc).__name__}")
        desc = None
    row: dict[str, Any] = {
        "source": source,
        "model_id": model_id,
        "description": desc or "",
    }
    for col in LIST_COLUMNS:
        row[col] = _list(item.get(col), col, reasons)
    for col in COUNT_COLUMNS:
        row[col] = _count(item.get(col), col, reasons)
    for col in PRICE_KEYS.values():
        row[col] = None
    extra = {k: v for k, v in item.items() if k not in _KNOWN_KEYS}
    pricing = item.get("pricing")
    if isinstance(pricing, dict):
        for key, value in pricing.items():
            if key in PRICE_KEYS:
                price = _number(value, f"pricing.{key}", reasons)
                row[PRICE_KEYS[key]] = price
            else:
                extra.setdefault("pricing", {})[key] = value
    elif pricing is not None:
        reasons.append(f"pricing must be an object, got {type(pricing).__name__}")
    row["position"] = position
    row["extra"] = canonical_json(extra) if extra else None
    return row, reasons


CacheEntry = tuple[Any, dict[str, Any], str | None, tuple[str, ...]]


def normalise_items(
    items: list[Any],
    *,
    source: str,
    cache: dict[str, CacheEntry] | None = None,
) -> Normalised:
    """Normalise a catalog's items; invalid rows go to the quarantine with their reasons.

    `cache` is the previous snapshot's `Normalised.cache`: an item equal to the one seen
    before under the same id reuses its record, its digest and its verdict (valid, or the
    reasons it is not), so only new and changed items are normalised and validated.
    """

    cache = cache or {}
    rows: list[dict[str, Any]] = []
    # the item's own faults (not duplication): a cached tuple, or a fresh item's list
    own_reasons: list[Sequence[str]] = []
    hashes: list[str | None] = []
    fresh: list[int] = []
    for position, item in enumerate(items):
        hit = cache.get(item.get("model_id")) if isinstance(item, dict) else None  # type: ignore[arg-type]
        if hit is not None and (hit[0] is item or hit[0] == item):  # `is`: the adapter's memo
            row = hit[1]  # records are never changed once made: shared unless it moved
            rows.append(row if row["position"] == position else {**row, "position": position})
            own_reasons.append(hit[3])
            hashes.append(hit[2])
            continue
        row, reasons = normalise_item(item, position, source=source)
        rows.append(row)
        own_reasons.append(reasons)
        hashes.append(None)
        fresh.append(position)

    flagged = [i for i in fresh if not row_ok(rows[i])]  # the row rules, in Python
    keys = {i: verdict_key(rows[i]) for i in flagged}
    if len(_VERDICTS) > _VERDICTS_KEPT:  # before it is read: what it answers must stay
        _VERDICTS.clear()
    unknown = [i for i in flagged if keys[i] not in _VERDICTS]
    if unknown:  # their reasons, from the pandera schema (~20 ms a call; imported if needed)
        from schemas.catalog import failure_reasons

        found: dict[int, list[str]] = {i: [] for i in unknown}
        for index, reason in failure_reasons(frame_from_rows([rows[i] for i in unknown])):
            found[unknown[index]].append(reason)
        _VERDICTS.update((keys[i], tuple(found[i])) for i in unknown)
    for i in flagged:
        own_reasons[i] = [*own_reasons[i], *_VERDICTS[keys[i]]]

    quarantine = []
    valid_rows: list[dict[str, Any]] = []
    valid_hashes: list[str] = []
    new_cache: dict[str, CacheEntry] = {}
    seen: set[str] = set()
    duplicates: set[int] = set()
    for i, row in enumerate(rows):  # one pass: the first occurrence of an id is kept
        own = own_reasons[i]
        mid = row["model_id"]
        duplicate = mid is not None and mid in seen
        if mid is not None:
            seen.add(mid)
        digest = hashes[i]
        if not own and digest is None:
            digest = row_hash(row)
        if not duplicate and isinstance(mid, str):
            new_cache[mid] = (items[i], row, digest, tuple(own))
        if own or duplicate:
            reasons = [*own]
            if duplicate:
                duplicates.add(i)
                reasons.append(f"duplicate model_id {mid!r} (the first occurrence is kept)")
            quarantine.append(
                QuarantinedRow(
                    position=i,
                    model_id=mid,
                    reason="; ".join(reasons),
                    raw=json.dumps(items[i], ensure_ascii=False, default=str),
                )
            )
            continue
        assert digest is not None
        valid_rows.append(row)
        valid_hashes.append(digest)
    fresh_valid = [rows[i] for i in fresh if not own_reasons[i] and i not in duplicates]
    return Normalised(
        rows=valid_rows,
        hashes=valid_hashes,
        quarantine=quarantine,
        unknown_values=unknown_values(fresh_valid),
        cache=new_cache,
    )


def unknown_values(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Enum values outside SPEC 1's documented sets: kept, and reported."""
    found: dict[str, list[str]] = {}
    for col, known in KNOWN_VALUES.items():
        extra = sorted({v for r in rows for v in r[col]} - set(known))
        if extra:
            found[col] = extra
    return found
