"""What the adapters share: reading JSON, the `{"data": [...]}` envelope, `extra`
fields, and per-token prices as per-1M. Imported by every adapter, importing none."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from pipeline.errors import PayloadRejected, upstream_message

PER_TOKEN_UNIT = "USD per 1M tokens (converted from USD per token)"

# output modality -> type (shared with models.dev); unlisted values are kept as they are
OUTPUT_TYPES = {
    "text": "llm",
    "image": "image_generation",
    "audio": "tts",
    "video": "video",
    "embedding": "embedding",
    "embeddings": "embedding",
}


# Limits on what a body may hold (SPEC 5): deeper nesting or a longer number literal
# rejects the whole body. A catalog is a few levels deep; 10**400 (401 characters) is
# still read, so that the normaliser can quarantine its row and say why.
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 1000


class _NumberTooLong(Exception):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _NumberTooLong(literal)
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _NumberTooLong(literal)
    return float(literal)


# One translation of the body answers two questions before it is read. Digits become
# "0"; what may precede a number's digits (`:[,`, whitespace and `-`) becomes "1", anything
# else "x"; then substring searches, 20x faster than a regex:
# - A number literal holds at most 4 characters that are not digits (-.e+), so one longer
#   than MAX_NUMBER_CHARS has a run of digits over a third of that: only a body with
#   such a run (in a string, say) pays for the checked parse, which applies the exact rule.
# - orjson reads a body 1.5-2.5x faster than json.loads and gives the same objects, except
#   that an integer past 64 bits comes back as a float: a body with no integer literal of
#   19 digits (2**63 has 19) has none. An integer literal follows `:[,`, whitespace or
#   nothing, then maybe a `-`: all "1" here, so one search finds it; digits after anything
#   else are in a string or a float (OpenRouter's "0.0000000208333333333333"), and a
#   `-` in a string only sends a body to json.loads for nothing. What orjson refuses (NaN,
#   a BOM, a lone surrogate, 1e400, UTF-16) json.loads reads: both accept the same bodies
#   (property test).
_MARKS = bytes(48 if 48 <= b <= 57 else 49 if chr(b) in ":[, \t\n\r-" else 120 for b in range(256))
_LONG_RUN = b"0" * (MAX_NUMBER_CHARS // 3)
_WIDE_RUN = b"0" * 19


def _screen(body: bytes) -> tuple[bool, bool]:
    """(may hold a number literal over MAX_NUMBER_CHARS, may hold an integer of 19
    digits or more)."""
    marked = body.translate(_MARKS)
    wide = marked.lstrip(b"1").startswith(_WIDE_RUN) or b"1" + _WIDE_RUN in marked
    return _LONG_RUN in marked, wide


_UNREAD = object()


def parse_json(body: bytes, *, deep: bool = True) -> Any:
    """A JSON body, or PayloadRejected (one line) when it is not JSON, nests deeper than
    `MAX_DEPTH` or holds a number literal longer than `MAX_NUMBER_CHARS` characters.
    With `deep=False` the depth is left to the caller: `convert_all(..., doc=doc)`."""
    checked, wide = _screen(body)
    doc: Any = _UNREAD
    if not checked and not wide:
        with suppress(orjson.JSONDecodeError):
            doc = orjson.loads(body)
    try:
        if doc is _UNREAD:
            doc = (
                json.loads(body, parse_int=_int, parse_float=_float)
                if checked
                else json.loads(body)
            )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        start = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise PayloadRejected(f"body is not JSON ({exc.__class__.__name__}): {start!r}") from None
    except RecursionError:
        raise PayloadRejected(_too_deep()) from None
    except _NumberTooLong as exc:
        shown = exc.literal[:20] + "…"
        raise PayloadRejected(
            f"body holds a number of {len(exc.literal)} characters ({shown}); "
            f"at most {MAX_NUMBER_CHARS} are read"
        ) from None
    except ValueError as exc:  # e.g. an int past Python's own digit limit, if lowered
        raise PayloadRejected(f"body holds an unreadable value ({str(exc)[:100]})") from None
    if deep:
        check_depth(doc)
    return doc


def check_depth(doc: Any, skip: frozenset[int] | set[int] = frozenset()) -> None:
    """PayloadRejected when `doc` nests deeper than `MAX_DEPTH`, not looking inside the
    objects whose `id` is in `skip` (entries equal to ones already checked)."""
    if _deeper_than(doc, MAX_DEPTH, skip):
        raise PayloadRejected(_too_deep())


class ItemMemo:
    """The last body's conversions, by upstream key: an upstream entry equal to the one
    seen before under the same key reuses its converted item (the very object, which the
    normaliser's own cache then recognises by identity), and its depth is not walked
    again. Only the latest accepted body's entries are kept."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[Any, Any]] = {}

    @property
    def entries(self) -> dict[Any, tuple[Any, Any]]:
        """key -> (the last body's args for it, the item made from them)."""
        return self._entries

    def keep(self, entries: dict[Any, tuple[Any, Any]]) -> None:
        self._entries = entries


def by_id(models: list[Any]) -> Iterable[tuple[Any, tuple[Any]]]:
    """`convert_all` entries of a `{"data": [{"id": ...}, ...]}` list, keyed by `id`."""
    return ((m.get("id") if isinstance(m, dict) else None, (m,)) for m in models)


def convert_all(
    entries: Iterable[tuple[Any, tuple[Any, ...]]],
    convert: Callable[..., Any],
    memo: ItemMemo | None,
    doc: Any = None,
) -> list[Any]:
    """`convert(*args)` of each `(key, args)` entry, through `memo` when there is one.

    `doc` (read with `parse_json(deep=False)`) is checked for depth here, without
    walking into an entry (`args[-1]`) equal to one of the last body's: those were
    walked before. A body that fails the check leaves the memo as it was."""
    if memo is None:
        every = list(entries)
        if doc is not None:
            check_depth(doc)
        return [convert(*args) for _, args in every]
    last = memo.entries
    keys: list[Any] = []
    listed: list[tuple[Any, ...]] = []
    items: list[Any] = []
    missed: list[int] = []  # positions of entries converted now
    walked: set[int] = set()  # ids of entries equal to the last body's: walked before
    for key, args in entries:  # one pass: 1,700 LiteLLM entries per body
        hit = last.get(key)
        if hit is not None and hit[0] == args:
            items.append(hit[1])
            walked.add(id(args[-1]))
        else:
            missed.append(len(items))
            items.append(None)
        keys.append(key)
        listed.append(args)
    if doc is not None:
        check_depth(doc, walked)
    for i in missed:
        items[i] = convert(*listed[i])
    # a key listed twice keeps its last entry
    memo.keep(dict(zip(keys, zip(listed, items, strict=True), strict=True)))
    return items


def _too_deep() -> str:
    return f"body is nested deeper than {MAX_DEPTH} levels"


def _deeper_than(doc: Any, limit: int, skip: frozenset[int] | set[int] = frozenset()) -> bool:
    """Whether lists and objects nest more than `limit` levels: one level at a time, with
    no recursion (json.loads makes only dicts and lists, so `type(...) is` suffices).
    Objects whose `id` is in `skip` are not looked into."""
    level = [doc] if isinstance(doc, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            below += [c for c in values if type(c) is dict or type(c) is list]
        if skip:
            below = [c for c in below if id(c) not in skip]
        level = below
    return False


def catalog_list(doc: Any) -> list[Any]:
    """The `data` list of a `{"data": [...], "success": ...}` envelope (AiHubMix, new-api,
    OpenRouter); anything else is rejected whole, quoting the upstream's message."""
    if not isinstance(doc, dict):
        raise PayloadRejected(f"body is a JSON {type(doc).__name__}, not an object")
    if doc.get("success") is False:
        message = upstream_message(doc) or ""
        raise PayloadRejected(f"upstream answered success:false: {message!r}")
    if not isinstance(doc.get("data"), list):
        keys = ", ".join(sorted(map(str, doc))) or "none"
        raise PayloadRejected(f"body has no 'data' list (keys: {keys})")
    return doc["data"]


# keys of an AiHubMix-shaped item: an upstream field of the same name must not pose as one
ITEM_KEYS = frozenset(
    {
        "model_id",
        "desc",
        "types",
        "features",
        "input_modalities",
        "max_output",
        "context_length",
        "pricing",
    }
)


def extra_fields(obj: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """Every field of `obj` but `drop`, for `extra`; a field named like an AiHubMix item
    key (e.g. an upstream `pricing`) is kept as `upstream_<name>` so it cannot pose as one."""
    dropped = set(drop)
    return {
        (f"upstream_{k}" if k in ITEM_KEYS else k): v for k, v in obj.items() if k not in dropped
    }


def per_million(value: Any) -> Any:
    """USD per token (number or numeric string) -> USD per 1M tokens, decimal-exact.

    Anything that is not a finite number (text, a boolean, a list, NaN) is returned as it
    came, so the normaliser quarantines the row and says why; None stays None (unknown)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return value
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return value
        if not number.is_finite():
            return value
    else:
        return value
    return float(number * 1_000_000)


def strings(value: Any) -> list[str] | None:
    """`value` if it is a list of strings, else None."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def types_from_outputs(outputs: Any) -> Any:
    """Output modalities -> types (`text` -> llm, `image` -> image_generation, ...)."""
    listed = strings(outputs)
    if listed is None:
        return outputs  # not a list of strings: the normaliser quarantines it
    return [OUTPUT_TYPES.get(v.strip().lower(), v) for v in listed]
