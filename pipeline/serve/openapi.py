"""The OpenAPI description of the served routes (`GET /openapi.json`)."""

from __future__ import annotations

from typing import Any

from pipeline.serve.feed import FEED_PARAMS
from pipeline.serve.pages import CATALOG_PARAMS, MODEL_PARAMS

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
_HTML = "text/html"

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
        "/changes.atom": {
            "get": {
                "summary": "What changed, as an Atom 1.0 feed (newest first, stable ids)",
                "parameters": [
                    {"name": n, **_PARAM}
                    for n in ("source", "type", "model", "features", "modalities", "since")
                ],
                "responses": {
                    "200": {"description": "the feed", "content": {"application/atom+xml": {}}},
                    "304": {"description": "not modified"},
                    "400": {
                        "description": "a bad parameter",
                        "content": {_JSON: {"schema": _ERROR}},
                    },
                },
            }
        },
        "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "ok"}}}},
        **{
            path: {
                "get": {
                    "summary": summary,
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ]
                    * (path == "/models/{model}")
                    + [{"name": n, **_PARAM} for n in params],
                    "responses": {
                        "200": {"description": "the page", "content": {_HTML: {}}},
                        "304": {"description": "not modified"},
                        "400": {"description": "a bad parameter", "content": {_HTML: {}}},
                        "404": {"description": "unknown model or source", "content": {_HTML: {}}},
                    },
                }
            }
            for path, summary, params in (
                ("/", "The catalog browser (a page): SPEC 4 filters and sorts", CATALOG_PARAMS),
                ("/models/{model}", "One model's history (a page): versions, chart", MODEL_PARAMS),
                ("/changes", "The change feed as a page", (*FEED_PARAMS,)),
            )
        },
    },
}
