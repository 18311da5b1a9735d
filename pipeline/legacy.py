"""The legacy OpenAI-style routes (one-api lineage) and their bearer tokens.

A token is shown once when created; only its SHA-256 is stored. A token's scope is a
list of model ids, or a group. A group is a source name; `default` is the source the
server mirrors, which is also what anonymous callers see.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import BadInput
from pipeline.store import Store
from pipeline.timeutil import utcnow

TOKEN_PREFIX = "mw-"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_\-]{8,200}$")


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
    if store.con.execute("SELECT 1 FROM tokens WHERE name = ?", [name]).fetchall():
        raise BadInput(f"a token named {name!r} exists already")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.con.execute(
        "INSERT INTO tokens VALUES (?, ?, ?, ?, ?)",
        [name, token_hash(token), models, group, utcnow()],
    )
    return token


def list_tokens(store: Store) -> list[dict[str, Any]]:
    rows = store.con.execute(
        "SELECT name, models, grp, created_at FROM tokens ORDER BY name"
    ).fetchall()
    return [{"name": n, "models": m, "group": g, "created_at": c} for n, m, g, c in rows]


def token_scope(store: Store, authorization: str | None) -> Any:
    """The scope of a request's credentials, or a 401 answer in the OpenAI error shape."""
    from pipeline.serve import _Answer, openai_error

    if authorization is None:
        return _Answer(200, json.dumps({"group": "default"}).encode())
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.match(token):
        message = "Malformed Authorization header; expected 'Bearer <token>'."
        return _Answer(401, openai_error(message, code="invalid_api_key"))
    rows = store.con.execute(
        "SELECT name, models, grp FROM tokens WHERE token_sha256 = ?", [token_hash(token)]
    ).fetchall()
    if not rows:
        return _Answer(401, openai_error("Incorrect API key provided.", code="invalid_api_key"))
    name, models, group = rows[0]
    scope = {"token": name, "models": models} if models is not None else {"group": group}
    return _Answer(200, json.dumps(scope).encode())


def _permission(model_id: str, created: int) -> dict[str, Any]:
    return {
        "id": "modelperm-" + hashlib.blake2b(model_id.encode(), digest_size=12).hexdigest(),
        "object": "model_permission",
        "created": created,
        "allow_create_engine": True,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


def legacy_object(row: dict[str, Any], first_seen: datetime | None) -> dict[str, Any]:
    """One model in the `/v1/models` shape."""
    extra = json.loads(row["extra"]) if row.get("extra") else {}
    created = extra.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        created = int(first_seen.replace(tzinfo=UTC).timestamp()) if first_seen else 0
    owner = extra.get("owned_by") or extra.get("developer_id") or row["source"]
    return {
        "id": row["model_id"],
        "object": "model",
        "created": created,
        "owned_by": str(owner),
        "permission": [_permission(row["model_id"], created)],
        "root": row["model_id"],
        "parent": None,
    }


def legacy_answer(
    store: Store, scope: dict[str, Any], model_id: str | None, *, default_source: str
) -> Any:
    """The `/v1/models` list, or one model, for a scope."""
    from pipeline.serve import _Answer, openai_error

    group = scope.get("group")
    source = default_source if group in (None, "default") else group
    frame = store.catalog_as_of(source, utcnow())
    if scope.get("models") is not None:
        allowed = set(scope["models"])
        frame = frame.filter(frame["model_id"].is_in(sorted(allowed)))
    first_seen = dict(
        store.con.execute(
            "SELECT model_id, min(valid_from) FROM model_versions WHERE source = ? "
            "GROUP BY model_id",
            [source],
        ).fetchall()
    )
    rows = frame.to_dicts()
    if model_id is not None:
        match = [r for r in rows if r["model_id"] == model_id]
        if not match:
            message = f"The model '{model_id}' does not exist"
            return _Answer(404, openai_error(message, code="model_not_found", param="model"))
        body = legacy_object(match[0], first_seen.get(model_id))
    else:
        body = {
            "object": "list",
            "data": [legacy_object(r, first_seen.get(r["model_id"])) for r in rows],
        }
    return _Answer(200, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())


_PARAM = {"in": "query", "required": False, "schema": {"type": "string", "maxLength": 512}}
_ERROR = {
    "type": "object",
    "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}},
}
_OPENAI_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": "string"},
            },
        }
    },
}
_JSON = "application/json"

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "modelwatch mirror of the AiHubMix model API", "version": "1"},
    "paths": {
        "/api/v1/models": {
            "get": {
                "summary": "The catalog as of a time, filtered and sorted (SPEC 4)",
                "parameters": [
                    {"name": n, "description": d, **_PARAM}
                    for n, d in (
                        ("type", "one type; aliases t2t, t2i, t2v, reranking"),
                        ("modalities", "comma list: all required"),
                        ("model", "fuzzy id match"),
                        ("features", "comma list: all required"),
                        ("sort_by", "order, context_length, model_ratio or coding"),
                        ("sort_order", "asc or desc"),
                        ("as_of", "ISO 8601 time or date (UTC); default now"),
                        ("source", "catalog source; default aihubmix"),
                    )
                ],
                "responses": {
                    "200": {
                        "description": "the catalog",
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["data", "message", "success"],
                                    "properties": {
                                        "data": {"type": "array", "items": {"type": "object"}},
                                        "message": {"type": "string"},
                                        "success": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    "304": {"description": "not modified (If-None-Match)"},
                    "400": {
                        "description": "a bad parameter",
                        "content": {_JSON: {"schema": _ERROR}},
                    },
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "OpenAI-style model list (anonymous: the default group)",
                "responses": {
                    "200": {
                        "description": "the list",
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "object": {"const": "list"},
                                        "data": {"type": "array"},
                                    },
                                }
                            }
                        },
                    },
                    "304": {"description": "not modified"},
                    "401": {
                        "description": "unknown or malformed token",
                        "content": {_JSON: {"schema": _OPENAI_ERROR}},
                    },
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model; the id may contain '/'",
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the model",
                        "content": {_JSON: {"schema": {"type": "object"}}},
                    },
                    "304": {"description": "not modified"},
                    "401": {
                        "description": "unknown or malformed token",
                        "content": {_JSON: {"schema": _OPENAI_ERROR}},
                    },
                    "404": {
                        "description": "model_not_found",
                        "content": {_JSON: {"schema": _OPENAI_ERROR}},
                    },
                },
            }
        },
        "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "ok"}}}},
    },
}
