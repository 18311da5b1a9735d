"""Bearer tokens of the served legacy routes: created once, stored only as SHA-256.

A token's scope is a list of model ids, or a group; a group is a source name, and
`default` is the source the server mirrors (what anonymous callers see).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from pipeline.errors import BadInput
from pipeline.store import Store
from pipeline.timeutil import utcnow

TOKEN_PREFIX = "mw-"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_\-]{8,200}$")


@dataclass(frozen=True)
class TokenScope:
    """What one caller may list: a group (a source name, or `default`), or model ids."""

    group: str | None = "default"
    models: tuple[str, ...] | None = None
    token: str | None = None  # the token's name, for logs; never the token itself


ANONYMOUS = TokenScope()


class Unauthorized(Exception):
    """The credentials are malformed or unknown (a 401); the message says which."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(
    store: Store, name: str, *, models: list[str] | None = None, group: str | None = None
) -> str:
    """Create a token for `models` or `group`; return it (the only time it is seen)."""
    if (models is None) == (group is None):
        raise BadInput("give either --models or --group")
    if not name.strip():
        raise BadInput("token name must not be empty")
    if models is not None:
        models = [m.strip() for m in models if m.strip()]
        if not models:
            raise BadInput("--models lists no model")
    if store.token_named(name):
        raise BadInput(f"a token named {name!r} exists already")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(name, token_hash(token), models=models, group=group, created_at=utcnow())
    return token


def list_tokens(store: Store) -> list[dict[str, Any]]:
    return store.tokens()


def scope_of(store: Store, authorization: str | None) -> TokenScope:
    """The scope of a request's credentials; `Unauthorized` when they are bad."""
    if authorization is None:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.match(token):
        raise Unauthorized("Malformed Authorization header; expected 'Bearer <token>'.")
    found = store.token_by_hash(token_hash(token))
    if found is None:
        raise Unauthorized("Incorrect API key provided.")
    name, models, group = found
    if models is not None:
        return TokenScope(group=None, models=tuple(models), token=name)
    return TokenScope(group=group, token=name)
