"""The served mirror (SPEC 5): routes, shapes, caching, tokens, hostile input."""

import json
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.ingest import ingest
from pipeline.query.render import catalog_body
from pipeline.serve import API_PARAMS, create_app
from pipeline.serve.http import etag_matches
from pipeline.store import Store
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def history_db(tmp_path_factory, bundled):
    path = tmp_path_factory.mktemp("serve") / "catalog.duckdb"
    with Store.open(path) as store:
        for at, payload in bundled:
            ingest(store, payload, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    return path


@pytest.fixture(scope="module")
def client(history_db):
    return _asgi(create_app(history_db))


class _asgi:
    """A synchronous facade over httpx's ASGI transport (one event loop per request)."""

    def __init__(self, app):
        self.app = app

    def get(self, url, headers=None):
        import asyncio

        async def go():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mirror") as c:
                return await c.get(url, headers=headers)

        return asyncio.run(go())


def test_api_models_is_the_catalog_body_at_any_time(client, history_db, bundled):
    from pipeline.query import models

    for at, _ in bundled[::8]:
        stamp = at.isoformat() + "Z"
        response = client.get(f"/api/v1/models?as_of={stamp}&type=llm&sort_by=model_ratio")
        assert response.status_code == 200
        with Store.open(history_db, read_only=True) as store:
            want = catalog_body(models(store, as_of=at, type="llm", sort_by="model_ratio"))
        assert response.content == want
        assert (
            response.headers["cache-control"] == "public, max-age=300, stale-while-revalidate=300"
        )
        assert response.headers["content-type"] == "application/json"


def test_bad_parameters_are_400_in_the_upstream_error_shape(client):
    response = client.get("/api/v1/models?sort_by=price")
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "sort_by 'price' is not known; "
        "accepted: order, context_length, model_ratio, coding",
    }
    assert (
        client.get("/api/v1/models?as_of=yesterday")
        .json()["message"]
        .startswith("as_of 'yesterday' is not an ISO 8601 time")
    )


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),
        ('"nope", {etag}', 304),
        ("*", 304),
        ('"nope"', 200),
        ('W/"nope", "other"', 200),
    ],
)
def test_if_none_match(client, header, status):
    first = client.get("/api/v1/models?features=tools")
    etag = first.headers["etag"]
    again = client.get(
        "/api/v1/models?features=tools", headers={"If-None-Match": header.format(etag=etag)}
    )
    assert again.status_code == status
    if status == 304:
        assert again.content == b""
        assert again.headers["etag"] == etag
    else:
        assert again.content == first.content


def test_bodies_are_deterministic_and_cached(history_db, monkeypatch):
    import pipeline.serve.app

    rendered = []
    real = pipeline.serve.app.catalog_body
    monkeypatch.setattr(pipeline.serve.app, "catalog_body", lambda f: rendered.append(1) or real(f))
    c = _asgi(create_app(history_db))
    a = c.get("/api/v1/models?model=gpt")
    b = c.get("/api/v1/models?model=gpt")
    assert a.content == b.content and a.headers["etag"] == b.headers["etag"]
    assert len(rendered) == 1  # the second answer came from the cache
    other = create_app(history_db)  # a fresh process would give the same bytes
    assert _asgi(other).get("/api/v1/models?model=gpt").content == a.content


def test_legacy_list_and_one_model(client, bundled):
    listing = client.get("/v1/models")
    assert listing.status_code == 200
    body = listing.json()
    last = json.loads(bundled[-1][1])["data"]
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [m["model_id"] for m in last]
    first = body["data"][0]
    assert set(first) == {"id", "object", "created", "owned_by", "permission", "root", "parent"}
    assert first["object"] == "model" and first["parent"] is None and first["root"] == first["id"]
    perm = first["permission"][0]
    assert perm["object"] == "model_permission" and perm["organization"] == "*"
    assert listing.headers["vary"] == "Authorization"
    one = client.get(f"/v1/models/{quote(first['id'])}")
    assert one.json() == first
    missing = client.get("/v1/models/openai/not-a-model")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "The model 'openai/not-a-model' does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/models?model=" + "x" * 5000, 400),
        ("/api/v1/models?type=%ff%fe", 400),
        ("/api/v1/models?type=llm&type=tts", 400),
        ("/api/v1/models?model=%00%01", 200),
        ("/v1/models/..%2F..%2Fetc%2Fpasswd", 404),
        ("/v1/models/%ff", 400),
        ("/v1/models/" + "a/" * 300, 404),
        ("/api/v1/models?as_of=9999-99-99", 400),
        ("/api/v1/models?source=../../etc", 400),
    ],
)
def test_hostile_input_gets_a_clean_answer(client, url, status):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    params=st.dictionaries(
        st.sampled_from([*API_PARAMS, "other"]),
        st.text(max_size=40),
        max_size=5,
    )
)
def test_no_parameters_give_a_server_error(client, params):
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    response = client.get(f"/api/v1/models?{query}")
    assert response.status_code in (200, 400), response.text
    body = response.json()
    assert body["success"] is (response.status_code == 200)


def test_openapi_and_health(client):
    """Every route the app serves is described (a `{name:path}` route as `{name}`)."""
    spec = client.get("/openapi.json").json()
    served = {r.path.replace(":path}", "}") for r in client.app.routes} - {"/openapi.json"}
    assert set(spec["paths"]) == served
    assert {"/", "/models/{model}", "/changes", "/changes.atom"} <= served
    assert client.get("/healthz").json() == {"status": "ok"}


def test_etag_matching_rules():
    assert etag_matches('W/"a", "b"', '"a"')
    assert etag_matches("*", '"x"')
    assert not etag_matches(None, '"a"')
    assert not etag_matches('"ab"', '"a"')


# -- the real server on 127.0.0.1 -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, history_db):
    import shutil

    db = tmp_path / "served.duckdb"
    shutil.copy(history_db, db)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pipeline.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--db",
            str(db),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(proc.stderr.read()) from None
            time.sleep(0.1)
    yield base, db, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_real_server_round_trip_into_a_second_database(server, tmp_path):
    base, db, _ = server
    served = httpx.get(base + "/api/v1/models")
    assert served.status_code == 200
    second = tmp_path / "second.duckdb"
    done = run_cli("snapshot", "--url", base + "/api/v1/models", "--db", str(second))
    assert done.returncode == 0, done.stderr
    with Store.open(db, read_only=True) as a, Store.open(second, read_only=True) as b:
        from pipeline.timeutil import utcnow

        now = utcnow()
        assert_frame_equal(b.catalog_as_of("aihubmix", now), a.catalog_as_of("aihubmix", now))
        # the served ETag was stored, so the next poll is a conditional GET answered 304
        etag = b.execute("SELECT etag FROM fetch_log")[0][0]
    assert etag == served.headers["etag"]
    again = run_cli("snapshot", "--url", base + "/api/v1/models", "--db", str(second), "--force")
    assert ": unchanged" in again.stdout
    assert httpx.get(base + "/api/v1/models", headers={"If-None-Match": etag}).status_code == 304


def test_tokens_scope_the_legacy_list_and_never_leak(server, tmp_path):
    base, db, proc = server
    added = run_cli("tokens", "add", "alice", "--models", "gpt-5.5,kimi-k2.6", "--db", str(db))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("mw-") and len(token) > 30
    mine = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200
    assert [m["id"] for m in mine.json()["data"]] == ["gpt-5.5", "kimi-k2.6"]
    assert mine.headers["cache-control"].startswith("private")
    assert mine.headers["vary"] == "Authorization"
    anonymous = httpx.get(base + "/v1/models")
    assert len(anonymous.json()["data"]) > 2 and anonymous.headers["etag"] != mine.headers["etag"]
    for header in ("Bearer mw-unknowntoken123", "Basic abc", "Bearer", "Bearer a b"):
        bad = httpx.get(base + "/v1/models", headers={"Authorization": header})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
    proc.terminate()
    _, logs = proc.communicate(timeout=10)
    assert token not in logs
    assert token.encode() not in db.read_bytes()
    listed = run_cli("tokens", "list", "--db", str(db))
    assert "alice" in listed.stdout and token not in listed.stdout
