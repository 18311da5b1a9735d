"""Bearer tokens of the served legacy routes, and who may see which catalog.

Tokens are created once and stored only as SHA-256. A token's scope is a list of model
ids, or a group; a group is a source name, and `default` is the source the server
mirrors (`modelwatch serve --source`, aihubmix unless told otherwise).

A source fetched with a bearer token is *private* (`Store.private_sources`): the
upstream answered for that token, so its list is not ours to publish. What each caller
sees:

- `/api/v1/models` is anonymous and lists only public sources. A private source,
  asked for by name or as the server's default, gets the same 400 as a source with no
  history, and the "stored sources" an error lists are the public ones only.
- Anonymous `/v1/models` lists the default source's current catalog: exactly the ids
  anonymous `/api/v1/models` lists, never more. When the default source is private it
  lists nothing: it answers 401 (a token is required), naming no source.
- A token scoped to model ids sees those of its ids that are in the default source's
  public catalog: a view of what anonymous callers see, never more (so it can be no
  wider than the anonymous list, and sees nothing when the default source is private).
- A token of group `default` sees the default source when it is public. A token of
  group `<source>` sees that source, public or private: the only way to a private one.
- Whatever a caller may not see is answered as if it did not exist (an empty list,
  or 404 for one model); a response that depends on the token is `private` with
  `Vary: Authorization`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from pipeline.errors import BadInput
from pipeline.store import Store
from pipeline.timeutil import utcnow

TOKEN_PREFIX = "mw-"
DEFAULT_GROUP = "default"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


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
        known = {m for _, m in store.model_ids()}
        unknown = [m for m in models if m not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadInput(f"--models: {unknown[0]!r} was never in a stored catalog{hint}")
    if group is not None and group != DEFAULT_GROUP and group not in store.sources():
        accepted = ", ".join([DEFAULT_GROUP, *store.sources()])
        raise BadInput(f"--group {group!r} is not a stored source; accepted: {accepted}")
    if store.token_named(name):
        raise BadInput(f"a token named {name!r} exists already")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(name, token_hash(token), models=models, group=group, created_at=utcnow())
    return token


def list_tokens(store: Store) -> list[dict[str, Any]]:
    return store.tokens()


def revoke_token(store: Store, name: str) -> None:
    """Delete a token: its holder gets 401 from the next request on."""
    if not store.token_named(name):
        names = ", ".join(t["name"] for t in store.tokens()) or "none"
        raise BadInput(f"no token named {name!r}; tokens: {names}")
    store.remove_token(name)


def scope_of(store: Store, authorization: str | None) -> TokenScope:
    """The scope of a request's credentials; `Unauthorized` when they are bad."""
    if authorization is None:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("Malformed Authorization header; expected 'Bearer <token>'.")
    if not _TOKEN_SHAPE.match(token):  # no token of ours looks like this: unknown
        raise Unauthorized("Incorrect API key provided.")
    found = store.token_by_hash(token_hash(token))
    if found is None:
        raise Unauthorized("Incorrect API key provided.")
    name, models, group = found
    if models is not None:
        return TokenScope(group=None, models=tuple(models), token=name)
    return TokenScope(group=group, token=name)


def public_sources(store: Store) -> list[str]:
    """The stored sources anyone may see, sorted: every one not fetched with a token."""
    private = store.private_sources()
    return [s for s in store.sources() if s not in private]


def unknown_source(requested: str | None, public: list[str]) -> str:
    """The 400 message for a source with no public history: it names the caller's own
    spelling (never the server's default) and the public sources only."""
    stored = ", ".join(public) or "none yet"
    what = f"source {requested!r}" if requested is not None else "the default source"
    return f"{what} has no history here; stored sources: {stored}"


def visible_source(store: Store, scope: TokenScope, default_source: str) -> str | None:
    """The source whose catalog `scope` may list on `/v1/models`; None when none."""
    if scope.group is not None and scope.group != DEFAULT_GROUP:
        return scope.group  # a group token: its own source, private or not
    return None if default_source in store.private_sources() else default_source
