"""Secrets never reach the database, a log, a message or an artifact: `redact` is the
one place that removes a bearer token from what an upstream sent or we are about to say.

An upstream may echo the token in any spelling a JSON body, a URL or a header allows,
so each character of the token is matched in every form it may take:

- literally (the token's own case: matching is case-sensitive);
- as a JSON escape: `\\uXXXX` (hex in either case; a non-BMP character as a surrogate
  pair), `\\/` for `/`, `\\"` and `\\\\` for `"` and `\\`, `\\b \\f \\n \\r \\t`;
- percent-encoded, byte by byte of its UTF-8 form (`%2F` or `%2f`, also `%252F` and a
  JSON-escaped `%`), and `+` for a space.

The forms may mix freely within one occurrence. Bytes are matched as raw UTF-8, so a
body is redacted before anything parses it. The pattern is compiled once per token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import overload

MASK = "[REDACTED]"

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f"}
_SHORT_ESCAPES |= {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# a whole JSON escape sequence: skipped as one unit so a match never starts inside one
_JSON_ESCAPE = r"\\(?:[\"\\/bfnrt]|u[0-9A-Fa-f]{4})"
# first characters that may also be the tail of a JSON escape (`\/`, `\u00e9`, ...)
_ESCAPE_TAIL = set('"\\/bfnrtu0123456789abcdefABCDEF')


def _hex(text: str) -> str:
    """`text` (hex digits) matching either case: `2f` -> `2[Ff]`."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


def _json_escapes(char: str) -> list[str]:
    """The JSON `\\u` spellings of one character (a surrogate pair beyond the BMP)."""
    code = ord(char)
    if code < 0x10000:
        return [r"\\u" + _hex(f"{code:04x}")]
    code -= 0x10000
    high, low = 0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)
    return [r"\\u" + _hex(f"{high:04x}") + r"\\u" + _hex(f"{low:04x}")]


def _json_char(char: str) -> str:
    """One character, literally or JSON-escaped."""
    # escapes before the literal: in JSON a `\\` must be taken whole, never half
    forms = [*_json_escapes(char), re.escape(char)]
    if char in _SHORT_ESCAPES:
        forms.insert(0, re.escape(_SHORT_ESCAPES[char]))
    return "(?:" + "|".join(forms) + ")"


def _hex_digit(digit: str) -> str:
    """One hex digit of a percent escape, either case, each possibly JSON-escaped."""
    cases = {digit.upper(), digit.lower()}
    forms = [re.escape(c) for c in sorted(cases)]
    forms += [esc for c in sorted(cases) for esc in _json_escapes(c)]
    return "(?:" + "|".join(forms) + ")"


_PERCENT = "(?:" + _json_char("%") + "(?:25)?)"  # `%`, `\u0025`, or `%25` (encoded twice)


def _char(char: str) -> str:
    """Every spelling of one token character."""
    percent = "".join(
        _PERCENT + "".join(_hex_digit(d) for d in f"{byte:02X}") for byte in char.encode()
    )
    forms = [_json_char(char), percent]
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


@dataclass(frozen=True)
class _Patterns:
    """The compiled patterns of one token, for text and for raw UTF-8 bytes.

    `plain` finds an occurrence anywhere: a body with none (the usual case) costs one
    search. `aware` also skips whole JSON escapes that do not begin an occurrence, so a
    redaction never splits `\\\\` or `\\u00e9` (the body stays valid JSON); when the
    token's first character could be the tail of an escape, a second, `plain` pass
    catches an occurrence that began inside one (`rescan`)."""

    plain: re.Pattern[str]
    aware: re.Pattern[str]
    plain_bytes: re.Pattern[bytes]
    aware_bytes: re.Pattern[bytes]
    rescan: bool


@lru_cache(maxsize=64)
def _patterns(token: str) -> _Patterns:
    plain = "".join(_char(c) for c in token)
    aware = f"(?P<t>{plain})|{_JSON_ESCAPE}"
    return _Patterns(
        plain=re.compile(plain),
        aware=re.compile(aware),
        plain_bytes=re.compile(plain.encode()),
        aware_bytes=re.compile(aware.encode()),
        rescan=token[0] in _ESCAPE_TAIL,
    )


def _mask_str(match: re.Match[str]) -> str:
    return MASK if match.group("t") is not None else match.group(0)


_MASK_BYTES = MASK.encode()


def _mask_bytes(match: re.Match[bytes]) -> bytes:
    return _MASK_BYTES if match.group("t") is not None else match.group(0)


@overload
def redact(data: bytes, token: str | None) -> bytes: ...
@overload
def redact(data: str, token: str | None) -> str: ...
def redact(data: bytes | str, token: str | None) -> bytes | str:
    """`data` with every occurrence of `token`, in any encoding, replaced by `MASK`."""
    if not token:
        return data
    p = _patterns(token)
    if isinstance(data, bytes):
        if not p.plain_bytes.search(data):
            return data
        out = p.aware_bytes.sub(_mask_bytes, data)
        return p.plain_bytes.sub(_MASK_BYTES, out) if p.rescan else out
    if not p.plain.search(data):
        return data
    result = p.aware.sub(_mask_str, data)
    return p.plain.sub(MASK, result) if p.rescan else result
