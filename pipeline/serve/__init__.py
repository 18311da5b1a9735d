"""Serving the stored history over HTTP: the app, its cache, tokens and the legacy shape.

app.py      routes (`create_app`)
cache.py    answers cached by database version (`Mirror`)
http.py     answers, ETags, cache headers, parameter checks
tokens.py   bearer tokens and their scopes
legacy.py   the OpenAI-style `/v1/models` shape
pages.py    pages for people: `/`, `/models/{model}`, `/changes` (templates/: Jinja2)
openapi.py  the OpenAPI description
server.py   running it: uvicorn, guarded against slow and half-open clients (`run`)
"""

from pipeline.serve.app import API_PARAMS, create_app

__all__ = ["API_PARAMS", "create_app"]
