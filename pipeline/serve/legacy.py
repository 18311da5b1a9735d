"""The legacy OpenAI-style routes (one-api lineage): `/v1/models` and `/v1/models/{id}`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pipeline.serve.http import Answer, openai_error
from pipeline.serve.tokens import TokenScope, visible_source
from pipeline.store import Store
from pipeline.timeutil import utcnow

TOKEN_REQUIRED = "This catalog is served only with a token: send 'Authorization: Bearer <token>'."


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
    store: Store, scope: TokenScope, model_id: str | None, *, default_source: str
) -> Answer:
    """The `/v1/models` list, or one model, for a scope (who sees what: `tokens`)."""
    source = visible_source(store, scope, default_source)
    if source is None:
        if scope.token is None:  # anonymous, and the default catalog is private
            return Answer(401, openai_error(TOKEN_REQUIRED, code="invalid_api_key"))
        return _answer(model_id, [], {})
    frame = store.catalog_as_of(source, utcnow())
    if scope.models is not None:
        frame = frame.filter(frame["model_id"].is_in(sorted(set(scope.models))))
    return _answer(model_id, frame.to_dicts(), store.first_seen(source))


def _answer(
    model_id: str | None, rows: list[dict[str, Any]], first_seen: dict[str, datetime]
) -> Answer:
    if model_id is not None:
        match = [r for r in rows if r["model_id"] == model_id]
        if not match:
            message = f"The model '{model_id}' does not exist"
            return Answer(404, openai_error(message, code="model_not_found", param="model"))
        body: dict[str, Any] = legacy_object(match[0], first_seen.get(model_id))
    else:
        body = {
            "object": "list",
            "data": [legacy_object(r, first_seen.get(r["model_id"])) for r in rows],
        }
    return Answer(200, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
