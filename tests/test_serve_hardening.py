"""The served mirror under hostile use (SPEC 5): private catalogs, slow clients, error
bodies; and the flow's markdown artifact with hostile model ids."""

import contextlib
import json
import logging
import selectors
import socket
import subprocess
import sys
import time
from datetime import datetime
from html.parser import HTMLParser

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import StoreError, StoreLocked
from pipeline.ingest import ingest
from pipeline.serve import create_app
from pipeline.serve.tokens import add_token
from pipeline.store import Store
from tests.conftest import ROOT, doc
from tests.test_serve import _asgi, free_port

PUBLIC_IDS = [m["model_id"] for m in json.loads(doc("docs-api-v1-models-success.json"))["data"]]
SECRET_IDS = ["team-secret-a", "team-secret-b"]


def catalog(ids: list[str]) -> bytes:
    return json.dumps({"data": [{"model_id": i, "types": "llm"} for i in ids]}).encode()


@pytest.fixture(scope="module")
def private_db(tmp_path_factory):
    """aihubmix and openhub public; teamhub fetched with a token (private)."""
    path = tmp_path_factory.mktemp("private") / "catalog.duckdb"
    at = datetime(2026, 5, 1, 12, 0)
    tokens = {}
    with Store.open(path) as store:
        body = doc("docs-api-v1-models-success.json")
        ingest(store, body, source="aihubmix", fetched_at=at)
        ingest(store, catalog(["open-x"]), source="openhub", kind="aihubmix", fetched_at=at)
        store.mark_private("teamhub", at)
        ingest(store, catalog(SECRET_IDS), source="teamhub", kind="aihubmix", fetched_at=at)
        tokens["team"] = add_token(store, "team", group="teamhub")
        tokens["default"] = add_token(store, "dflt", group="default")
        tokens["models"] = add_token(store, "few", models=[PUBLIC_IDS[0], SECRET_IDS[0]])
    return path, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["data"]]


def test_a_private_source_is_never_on_the_api_route(private_db):
    path, _ = private_db
    client = _asgi(create_app(path))
    unknown = client.get("/api/v1/models?source=nosuch")
    private = client.get("/api/v1/models?source=teamhub")
    assert unknown.status_code == private.status_code == 400
    assert unknown.json()["message"] == (
        "source 'nosuch' has no history here; stored sources: aihubmix, openhub"
    )
    # the same answer as a source that does not exist, naming only the caller's spelling
    assert private.json()["message"] == unknown.json()["message"].replace("nosuch", "teamhub")
    assert private.headers["cache-control"] == "no-store"
    for body in (unknown.text, private.text):
        assert not any(s in body for s in SECRET_IDS)
    public = client.get("/api/v1/models?source=openhub")
    assert [m["model_id"] for m in public.json()["data"]] == ["open-x"]


def test_legacy_routes_show_a_private_source_to_its_group_only(private_db):
    path, tokens = private_db
    client = _asgi(create_app(path))
    api = [m["model_id"] for m in client.get("/api/v1/models").json()["data"]]
    anonymous = client.get("/v1/models")
    assert ids(anonymous) == api == PUBLIC_IDS  # anonymous: the default public catalog
    assert anonymous.headers["cache-control"].startswith("public")
    assert client.get(f"/v1/models/{SECRET_IDS[0]}").status_code == 404
    team = client.get("/v1/models", headers=bearer(tokens["team"]))
    assert ids(team) == SECRET_IDS
    assert team.headers["cache-control"].startswith("private")
    assert team.headers["vary"] == "Authorization"
    one = client.get(f"/v1/models/{SECRET_IDS[0]}", headers=bearer(tokens["team"]))
    assert one.status_code == 200 and one.json()["id"] == SECRET_IDS[0]
    assert ids(client.get("/v1/models", headers=bearer(tokens["default"]))) == PUBLIC_IDS
    # model ids: only those in the default public catalog, never more than anonymous
    few = client.get("/v1/models", headers=bearer(tokens["models"]))
    assert ids(few) == [PUBLIC_IDS[0]]
    assert set(ids(few)) <= set(ids(anonymous))


def test_a_private_default_source_is_not_served_anonymously(private_db):
    path, tokens = private_db
    client = _asgi(create_app(path, source="teamhub"))
    anonymous = client.get("/v1/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert anonymous.headers["cache-control"] == "no-store"
    assert client.get(f"/v1/models/{SECRET_IDS[0]}").status_code == 401
    api = client.get("/api/v1/models")
    assert api.status_code == 400
    assert api.json()["message"] == (
        "the default source has no history here; stored sources: aihubmix, openhub"
    )
    assert ids(client.get("/v1/models", headers=bearer(tokens["team"]))) == SECRET_IDS
    # tokens without that group see nothing of it
    assert ids(client.get("/v1/models", headers=bearer(tokens["models"]))) == []
    assert ids(client.get("/v1/models", headers=bearer(tokens["default"]))) == []
    gone = client.get(f"/v1/models/{SECRET_IDS[0]}", headers=bearer(tokens["models"]))
    assert gone.status_code == 404
    for response in (anonymous, api, gone):
        assert "teamhub" not in response.text and SECRET_IDS[0] not in response.text.replace(
            f"'{SECRET_IDS[0]}'", ""
        )


@settings(max_examples=60, deadline=None)
@given(
    route=st.sampled_from(["/api/v1/models", "/v1/models", "/v1/models/"]),
    source=st.sampled_from(["", "teamhub", "TeamHub", "openhub", "team", "x"]),
    extra=st.sampled_from(["", "&type=llm", "&sort_by=bad", "&as_of=2026-06-01"]),
    default=st.sampled_from(["aihubmix", "teamhub"]),
)
def test_no_anonymous_answer_names_a_private_source(private_db, route, source, extra, default):
    path, _ = private_db
    client = _asgi(create_app(path, source=default))
    target = route + (SECRET_IDS[1] if route.endswith("/") else "")
    response = client.get(f"{target}?source={source}{extra}")
    body = response.text
    if route.endswith("/"):
        body = body.replace(f"'{SECRET_IDS[1]}'", "")  # a 404 repeats the caller's id
    assert "teamhub" not in body.lower().replace(f"'{source.lower()}'", "")
    assert not any(s in body for s in SECRET_IDS)


# -- error bodies: no paths, no PIDs ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (
            StoreLocked("database '/srv/private/catalog.duckdb' is in use (PID 4242); waited 5s"),
            503,
        ),
        (StoreError("cannot open database '/srv/private/catalog.duckdb': IO Error"), 500),
    ],
)
def test_error_bodies_name_no_path_and_no_pid(private_db, monkeypatch, caplog, error, status):
    path, tokens = private_db

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(Store, "open", refuse)
    client = _asgi(create_app(path))
    with caplog.at_level(logging.WARNING, logger="modelwatch.serve"):
        for url, headers in (
            ("/api/v1/models?model=gpt", None),
            ("/v1/models", None),
            ("/v1/models", bearer(tokens["team"])),
        ):
            response = client.get(url, headers=headers)
            assert response.status_code == status
            assert response.headers["cache-control"] == "no-store"
            for secret in ("/srv/private", "catalog.duckdb", "4242", "PID", str(path)):
                assert secret not in response.text
            if status == 503:
                assert int(response.headers["retry-after"]) > 0
    assert "/srv/private/catalog.duckdb" in caplog.text  # the detail is in the server's log


def test_a_missing_database_is_not_named_in_the_answer(tmp_path):
    missing = tmp_path / "secret-dir" / "gone.duckdb"
    response = _asgi(create_app(missing)).get("/api/v1/models")
    assert response.status_code == 500
    assert "secret-dir" not in response.text and "gone.duckdb" not in response.text


# -- the real server: slow and half-open clients --------------------------------------------

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 50
SERVE = (
    "import sys\n"
    "from pipeline.serve import create_app\n"
    "from pipeline.serve.server import run\n"
    "run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]),"
    " header_timeout=float(sys.argv[3]), max_connections=int(sys.argv[4]))\n"
)


@pytest.fixture
def server(private_db):
    path, _ = private_db
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(path), str(port), str(HEADER_TIMEOUT)]
        + [str(MAX_CONNECTIONS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to ~30 s to start
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read()) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield port, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether a readable socket was closed by the peer (reading what is left)."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
            if len(chunk) < 65536:
                return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


def wait_all_closed(socks: list[socket.socket], bound: float) -> list[socket.socket]:
    """The sockets the server has not closed within `bound` seconds."""
    open_ = set(socks)
    with selectors.DefaultSelector() as sel:
        for s in open_:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + bound
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                if s in open_ and closed_by_server(s):
                    open_.discard(s)
                    sel.unregister(s)
    return list(open_)


def test_half_open_requests_neither_block_nor_linger(server):
    port, base = server
    socks: list[socket.socket] = []
    try:
        for _ in range(200):  # four times the connection cap, each half a request
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            with contextlib.suppress(OSError):  # already evicted
                s.sendall(b"GET /api/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        response = httpx.get(base + "/api/v1/models", timeout=10)
        assert response.status_code == 200
        assert "server" not in response.headers
        # every half-open connection is closed: evicted, or timed out on its headers
        assert wait_all_closed(socks, bound=HEADER_TIMEOUT * 20) == []
        assert httpx.get(base + "/v1/models", timeout=10).status_code == 200
    finally:
        for s in socks:
            s.close()


def drip_until_closed(sock: socket.socket, first: bytes) -> bool:
    """Send `first`, then one header byte at a time (bounded): whether the server closed."""
    sock.sendall(first)
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        for _ in range(80):  # at most ~20 s of dripping
            try:
                sock.sendall(b"X-Drip: y\r\n"[:1])
            except OSError:
                return True
            if sel.select(timeout=0.25) and closed_by_server(sock):
                return True
    return False


def test_a_slow_drip_of_headers_is_cut_off(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setblocking(False)
        assert drip_until_closed(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")


def test_a_slow_drip_after_a_keep_alive_response_is_cut_off(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b'{"status":"ok"}' not in received:
            chunk = sock.recv(4096)
            assert chunk, "closed before answering"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") and b"server:" not in received.lower()
        sock.setblocking(False)
        assert drip_until_closed(sock, b"GET /healthz HTTP/1.1\r\n")


# -- the flow's markdown artifact -------------------------------------------------------------

HOSTILE_IDS = [
    "a`b",
    "``x``",
    "x\n\n<img src=x onerror=alert(1)>",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "x\r\n\r\n<script>alert(1)</script>",
    "cell|split|here",
    "x\\|y",
    "trail\\",
    "line\u2028<img src=x onerror=alert(1)>",
    "[link](javascript:alert(1))",
    "**bold** _em_ # h",
    "",
]
ALLOWED_TAGS = {"h1", "ul", "li", "p", "code", "strong", "table", "thead", "tbody", "tr"}
ALLOWED_TAGS |= {"th", "td", "br"}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.cells: list[int] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        if tag == "tr":
            self.cells.append(0)
        if tag in ("td", "th"):
            self.cells[-1] += 1


def renderings(text: str) -> list[str]:
    import markdown
    from markdown_it import MarkdownIt

    return [
        markdown.markdown(text, extensions=["tables"]),
        MarkdownIt("commonmark").enable("table").render(text),
    ]


def assert_inert(text: str, rows: int) -> None:
    for html in renderings(text):
        lowered = html.lower()
        assert "<img" not in lowered and "<script" not in lowered
        parser = Tags()
        parser.feed(html)
        for tag, attrs in parser.tags:
            assert tag in ALLOWED_TAGS, (tag, html)
            assert not any(name.startswith("on") or name == "href" for name, _ in attrs)
        assert [t for t, _ in parser.tags].count("ul") == 1  # one list: no block broke out
        assert [t for t, _ in parser.tags].count("li") == 6
        if rows:
            assert parser.cells == [5] * (rows + 1), html  # header + rows, 5 cells each


def hostile_markdown(model_ids: list[str], error: str | None = None) -> str:
    from flows import snapshot as flows
    from pipeline.outcome import IngestResult

    result = IngestResult(
        source="aihubmix",
        fetched_at=datetime(2026, 1, 2, 3, 4, 5),
        outcome="new",
        models=len(model_ids),
        added=model_ids,
        removed=model_ids[::-1],
        returned=model_ids[:2],
        changed=model_ids,
        error=error,
    )
    rows = [
        {"model_id": m, "price": "input_price", "old_price": 2.0, "new_price": 1.0}
        | {"pct_change": -50.0}
        for m in model_ids
    ]
    return flows.changes_markdown(result, rows)


def test_hostile_model_ids_stay_inert_in_the_markdown_artifact():
    text = hostile_markdown(HOSTILE_IDS, error="<img src=x onerror=alert(1)>\n\n# boom")
    assert_inert(text, rows=len(HOSTILE_IDS))
    assert "onerror=alert(1)" in text  # shown, as code: not dropped
    assert "- added: `ab`" in text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(st.sampled_from([*"ab<>`|\\\n\r\t\x00 *_#[]()=!-+&;\u2028\u202e"]), max_size=12)
    )
)
def test_any_model_ids_stay_inert_in_the_markdown_artifact(model_ids):
    assert_inert(hostile_markdown(model_ids, error="".join(model_ids)), rows=len(model_ids))
