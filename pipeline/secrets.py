"""Secrets never reach the database, a log, a message or an artifact: `redact` is the
one place that removes a bearer token from what an upstream sent or we are about to say."""

from __future__ import annotations

from typing import overload

MASK = "[REDACTED]"


@overload
def redact(data: bytes, token: str | None) -> bytes: ...
@overload
def redact(data: str, token: str | None) -> str: ...
def redact(data: bytes | str, token: str | None) -> bytes | str:
    """`data` with every occurrence of `token` replaced by `MASK`."""
    if not token:
        return data
    if isinstance(data, bytes):
        return data.replace(token.encode(), MASK.encode())
    return data.replace(token, MASK)
