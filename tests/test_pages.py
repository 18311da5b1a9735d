"""Pages for people (SPEC 5, issue 16): `/`, `/models/{model}`, `/changes` as HTML, with
the API's semantics, the API's privacy, escaped catalog text, and "check this" on price
steps beyond the plausibility factor (which the Atom feed says too). Browser checks are
in test_pages_browser.py."""

import gzip
import json
import re
import subprocess
import sys
import tomllib
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import feedparser
import polars as pl
import pytest

from pipeline.config import load_config
from pipeline.ingest import ingest, payload_files, replay
from pipeline.query.plausibility import flag_implausible, implausible
from pipeline.serve import create_app
from pipeline.serve.feed import model_path
from pipeline.store import Store
from pipeline.timeutil import iso
from schemas.record import PRICE_COLUMNS
from tests.conftest import DATA, ROOT
from tests.test_serve import _asgi
from tests.upstream import held

HTML = "text/html; charset=utf-8"
PUBLIC = "public, max-age=300, stale-while-revalidate=300"
CHECK = " — check this (more than {}x in one step)"
VOID = {"meta", "link", "input", "br", "img", "hr", "col", "area", "base", "source", "wbr"}


class Page(HTMLParser):
    """A page as an HTML parser sees it: every start tag, the body rows of each table with
    an id (each cell's text and links), the error line, the text inside the SVG."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[tuple[str, list[str]]]]] = {}
        self.error = ""
        self.svg_text = ""
        self.h1 = ""
        self._table: list | None = None
        self._row: list | None = None
        self._cell: list | None = None
        self._open: list[str] = []
        self.feed(text)
        self.close()

    def handle_startendtag(self, tag, attrs):  # <path .../>: opens and closes
        self.tags.append((tag, dict(attrs)))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in VOID:
            return
        self._open.append("error" if a.get("class") == "error" else tag)
        if tag == "table" and a.get("id"):
            self._table = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ["", []]
        elif tag == "a" and self._cell is not None:
            self._cell[1].append(a["href"])

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        self._open.pop()
        if tag == "td" and self._cell is not None:
            self._row.append((self._cell[0].strip(), self._cell[1]))
            self._cell = None
        elif tag == "tr" and self._row:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data
        if "error" in self._open:
            self.error += data
        if "svg" in self._open:
            self.svg_text += data
        if self._open and self._open[-1] == "h1":
            self.h1 += data

    def rows(self, table: str) -> list[list[str]]:
        return [[text for text, _ in row] for row in self.tables.get(table, [])]

    def links(self, table: str, column: int = 0) -> list[str]:
        return [row[column][1][0] for row in self.tables.get(table, [])]


def page(client, url: str, status: int = 200) -> Page:
    response = client.get(url)
    assert response.status_code == status, (url, response.text[:500])
    assert response.headers["content-type"] == HTML
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    if status == 200:
        assert response.headers["cache-control"] == PUBLIC and response.headers["etag"]
    else:
        assert response.headers["cache-control"] == "no-store"
    return Page(response.text)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory, bundled):
    return two_histories(tmp_path_factory.mktemp("pages") / "catalog.duckdb", bundled)


def two_histories(path, bundled):
    """The bundled AiHubMix history and the bundled OpenRouter snapshots (ids with `/`)."""
    with Store.open(path) as store:
        for at, body in bundled:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        replay(
            store,
            payload_files(DATA / "openrouter"),
            source="openrouter",
            accept_mass_removal=True,
        )
    return path


@pytest.fixture(scope="module")
def client(history_db):
    return _asgi(create_app(history_db))


# -- the catalog: the API's semantics as a form -------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "type=llm&features=tools&sort_by=model_ratio&sort_order=desc",
        "model=glm&sort_by=context_length",
        "as_of=2026-01-01&modalities=image",
        "source=openrouter&model=gpt-4o",
        "source=openrouter&as_of=2025-04-01T00:00:00Z&sort_by=coding",
        # what the form sends when fields are left empty
        "source=aihubmix&as_of=&model=&type=&features=&modalities=&sort_by=order&sort_order=asc",
    ],
)
def test_the_catalog_page_lists_what_the_api_lists_each_linked_to_its_page(client, query):
    api = client.get(f"/api/v1/models?{query}").json()["data"]
    shown = page(client, f"/?{query}")
    source = re.search(r"source=(\w+)", query)
    source = source.group(1) if source else "aihubmix"
    assert [r[0] for r in shown.rows("catalog")] == [m["model_id"] for m in api]
    assert shown.links("catalog") == [model_path(m["model_id"], source) for m in api]
    assert shown.rows("catalog")  # every case above lists something


def test_the_catalog_form_offers_the_public_sources_and_keeps_what_was_typed(client):
    shown = page(client, "/?model=%22%3E%3Cu%3Egpt&sort_by=coding")
    options = [a["value"] for tag, a in shown.tags if tag == "option"]
    assert options[:8] == ["aihubmix", "openrouter", "order", "context_length"] + [
        "model_ratio",
        "coding",
        "asc",
        "desc",
    ]
    model_input = next(a for tag, a in shown.tags if tag == "input" and a["name"] == "model")
    assert model_input["value"] == '"><u>gpt'  # an attribute value, never markup
    assert not any(tag == "u" for tag, _ in shown.tags)
    selected = [a["value"] for tag, a in shown.tags if tag == "option" and "selected" in a]
    assert selected == ["aihubmix", "coding", "asc"]


def test_pages_have_etags_and_answer_304(client):
    first = client.get("/?type=llm")
    again = client.get("/?type=llm", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/?type=llm").content == first.content  # deterministic


# -- one model's history -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "source", "model_id"),
    [
        ("/models/openai/gpt-4o?source=openrouter", "openrouter", "openai/gpt-4o"),
        ("/models/openai%2Fgpt-4o?source=openrouter", "openrouter", "openai/gpt-4o"),
        ("/models/claude-haiku-4-5", "aihubmix", "claude-haiku-4-5"),
    ],
)
def test_a_model_page_shows_every_version_a_chart_and_its_changes(
    client, history_db, url, source, model_id
):
    shown = page(client, url)
    with Store.open(history_db, read_only=True) as store:
        versions = store.versions(source, model_id)
        changes = store.changes(source=source, model_id=model_id)

    def price(v):
        return "" if v is None else f"{v:.6g}"

    def count(v):
        return "" if v is None else f"{v:,}"

    assert shown.h1 == model_id
    assert shown.rows("versions") == [
        [iso(v["valid_from"]), iso(v["valid_to"]) or "now"]
        + [price(v[c]) for c in PRICE_COLUMNS]
        + [count(v["context_length"]), count(v["max_output"])]
        for v in versions.reverse().iter_rows(named=True)
    ]
    assert [r[:3] for r in shown.rows("changes")] == [
        [iso(c["changed_at"]), c["kind"], c["field"] or ""]
        for c in changes.reverse().iter_rows(named=True)
    ]
    svgs = [a for tag, a in shown.tags if tag == "svg"]
    assert len(svgs) == 1 and int(svgs[0]["width"]) > 0 and int(svgs[0]["height"]) > 0
    assert f"{model_id}: prices" in shown.svg_text
    assert sum(tag == "path" for tag, _ in shown.tags) > 10  # lines, axes, points


def test_the_chart_draws_each_price_as_steps_broken_where_the_model_was_gone():
    from pipeline.serve.pages import price_steps

    t = [datetime(2026, 1, d) for d in (1, 2, 3, 5, 6)]
    versions = pl.DataFrame(
        {
            "valid_from": [t[0], t[1], t[3]],
            "valid_to": [t[1], t[2], None],  # gone from t2 to t3
            "input_price": [1.0, 2.0, 2.0],
            "output_price": [None, 4.0, 4.0],
            "cache_read_price": [None, None, None],
            "cache_write_price": [None, None, None],
        }
    )
    steps = price_steps(versions, until=t[4])
    assert steps.to_dicts() == [
        {"at": t[0], "price": "input", "usd": 1.0, "run": 1, "seq": 0},
        {"at": t[1], "price": "input", "usd": 1.0, "run": 1, "seq": 1},
        {"at": t[1], "price": "input", "usd": 2.0, "run": 1, "seq": 2},
        {"at": t[2], "price": "input", "usd": 2.0, "run": 1, "seq": 3},
        {"at": t[3], "price": "input", "usd": 2.0, "run": 2, "seq": 4},
        {"at": t[4], "price": "input", "usd": 2.0, "run": 2, "seq": 5},
        {"at": t[1], "price": "output", "usd": 4.0, "run": 1, "seq": 0},
        {"at": t[2], "price": "output", "usd": 4.0, "run": 1, "seq": 1},
        {"at": t[3], "price": "output", "usd": 4.0, "run": 2, "seq": 2},
        {"at": t[4], "price": "output", "usd": 4.0, "run": 2, "seq": 3},
    ]


# -- the change feed as a page -------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "since=2026-05-01&features=tools",
        "model=gpt5",
        "source=openrouter&model=openai%2F&since=2026-01-01",
    ],
)
def test_the_changes_page_has_the_feeds_entries_linked_to_model_pages(client, query):
    atom = client.get(f"/changes.atom?{query}")
    entries = feedparser.parse(atom.content).entries
    shown = page(client, f"/changes?{query}")
    assert entries and len(shown.rows("changes")) == len(entries)
    assert ["http://mirror" + link for link in shown.links("changes", 1)] == [
        e.link for e in entries
    ]
    assert [iso(datetime(*e.updated_parsed[:6])) for e in entries] == [
        r[0] for r in shown.rows("changes")
    ]
    alternate = next(a for tag, a in shown.tags if tag == "link" and a.get("rel") == "alternate")
    assert client.get(alternate["href"]).content == atom.content  # the same feed


def test_the_feed_links_each_entry_to_its_models_page(client):
    entries = feedparser.parse(client.get("/changes.atom?source=openrouter").content).entries
    link = entries[0].link
    assert re.fullmatch(r"http://mirror/models/[^?]+\?source=openrouter", link)
    assert client.get(link.removeprefix("http://mirror")).status_code == 200


# -- what goes wrong: one line naming the value ---------------------------------------------


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/?sort_by=price", 400, "sort_by 'price' is not known; accepted: order, "),
        ("/?as_of=yesterday", 400, "as_of 'yesterday' is not an ISO 8601 time"),
        ("/?type=nonsense", 400, "type 'nonsense' is not a known type; accepted: "),
        ("/?limit=3", 400, "parameter 'limit' is not supported here; accepted: "),
        ("/?model=a&model=b", 400, "parameter 'model' is given more than once"),
        ("/changes?since=nope", 400, "since 'nope' is not an ISO 8601 time"),
        ("/changes?sort_by=order", 400, "parameter 'sort_by' is not supported here"),
        ("/models/gpt-4o?as_of=2026-01-01", 400, "parameter 'as_of' is not supported here"),
        ("/?source=nosuch", 404, "source 'nosuch' has no history here; stored sources: "),
        ("/changes?source=nosuch", 404, "source 'nosuch' has no history here"),
        ("/models/no-such-model", 404, "model 'no-such-model' was never in the aihubmix"),
        ("/models/openai/gpt-4o", 404, "model 'openai/gpt-4o' was never in the aihubmix"),
    ],
)
def test_a_bad_value_is_a_page_with_one_line_naming_it(client, url, status, message):
    shown = page(client, url, status)
    assert shown.error.startswith(message), shown.error
    assert "\n" not in shown.error.strip()
    assert not shown.tables


def test_an_unknown_model_page_suggests_the_closest_ids(client):
    shown = page(client, "/models/openai/gpt4o?source=openrouter", 404)
    hrefs = [a["href"] for tag, a in shown.tags if tag == "a"]
    assert model_path("openai/gpt-4o", "openrouter") in hrefs


# -- privacy: pages are anonymous ----------------------------------------------------------

SECRET_IDS = ["team-secret-a", "team-secret-b"]


@pytest.fixture(scope="module")
def private_db(tmp_path_factory):
    """aihubmix and openhub public; teamhub fetched with a token (private), with changes."""
    path = tmp_path_factory.mktemp("private") / "catalog.duckdb"

    def catalog(ids, price=1):
        items = [{"model_id": i, "types": "llm", "pricing": {"input": price}} for i in ids]
        return json.dumps({"data": items}).encode()

    at = datetime(2026, 5, 1, 12, 0)
    with Store.open(path) as store:
        ingest(store, catalog(["gpt-public"]), source="aihubmix", fetched_at=at)
        ingest(store, catalog(["open-x"]), source="openhub", kind="aihubmix", fetched_at=at)
        store.mark_private("teamhub", at)
        for day, price in ((0, 1), (1, 2)):
            ingest(
                store,
                catalog(SECRET_IDS, price),
                source="teamhub",
                kind="aihubmix",
                fetched_at=at + timedelta(days=day),
            )
    return path


@pytest.mark.parametrize("default", ["aihubmix", "teamhub"])
def test_pages_never_show_a_private_source(private_db, default):
    client = _asgi(create_app(private_db, source=default))
    for route in ("/", "/changes", f"/models/{SECRET_IDS[0]}"):
        hidden = client.get(f"{route}?source=teamhub")
        unknown = client.get(f"{route}?source=nosuch")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.text == unknown.text.replace("nosuch", "teamhub")
        assert Page(hidden.text).error == (
            "source 'teamhub' has no history here; stored sources: aihubmix, openhub"
        )
        plain = client.get(route)  # the server's default source
        if default == "teamhub":
            assert plain.status_code == 404
            assert Page(plain.text).error == (
                "the default source has no history here; stored sources: aihubmix, openhub"
            )
        for response in (hidden, unknown, plain):
            body = response.text  # less the caller's own words, repeated in the error
            body = body.replace("&#39;teamhub&#39;", "").replace(f"&#39;{SECRET_IDS[0]}&#39;", "")
            assert "teamhub" not in body and not any(s in body for s in SECRET_IDS)
    if default == "aihubmix":
        shown = page(client, "/")
        assert [a["value"] for tag, a in shown.tags if tag == "option"][:2] == [
            "aihubmix",
            "openhub",
        ]


# -- hostile catalog text --------------------------------------------------------------------

EVIL_ID = '"><img src=x onerror=alert(1)>/<script>alert(1)</script>'
EVIL_TEXT = "<script>alert(1)</script> & \"quoted\" 'single' \x07bell"


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "catalog.duckdb"

    def body(price):
        model = {
            "model_id": EVIL_ID,
            "desc": EVIL_TEXT,
            "types": "llm",
            "features": "tools",
            "pricing": {"input": price, "output": 1},
        }
        return json.dumps({"data": [model], "success": True}).encode()

    with Store.open(path) as store:
        ingest(store, body(1), source="aihubmix", fetched_at=datetime(2026, 1, 1))
        ingest(store, body(2), source="aihubmix", fetched_at=datetime(2026, 1, 2))
    return path


def test_catalog_text_is_text_on_every_page_never_markup(hostile_db):
    client = _asgi(create_app(hostile_db))
    catalog = page(client, "/")
    assert catalog.rows("catalog")[0][0] == EVIL_ID
    assert catalog.rows("catalog")[0][-1] == EVIL_TEXT.replace("\x07", "\ufffd")
    href = catalog.links("catalog")[0]
    assert href == "/models/" + quote(EVIL_ID, safe="/") + "?source=aihubmix"
    model = page(client, href)
    assert model.h1 == EVIL_ID
    assert f"{EVIL_ID}: prices" in model.svg_text  # the chart's title, as text
    changes = page(client, "/changes")
    assert changes.links("changes", 1)[0] == href
    for shown in (catalog, model, changes):
        tags = {tag for tag, _ in shown.tags}
        assert not tags & {"script", "img", "iframe", "object", "embed", "foreignobject"}
        for _, attrs in shown.tags:
            assert not any(name.startswith("on") for name in attrs)
            assert not any(
                str(v).lower().lstrip().startswith("javascript:") for v in attrs.values()
            )


# -- plausibility: "check this" ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stepped(tmp_path_factory, bundled):
    """The bundled history plus one snapshot a day later where one model's input price
    jumps 1000x (a units mix-up) and another's doubles."""
    path = tmp_path_factory.mktemp("stepped") / "catalog.duckdb"
    last_at, last = bundled[-1]
    doc = json.loads(last)
    priced = [m for m in doc["data"] if (m.get("pricing") or {}).get("input")]
    jumped, doubled = priced[0], priced[1]
    jumped["pricing"]["input"] *= 1000
    doubled["pricing"]["input"] *= 2
    with Store.open(path) as store:
        for at, body in bundled:
            ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        step_at = last_at + timedelta(days=1)
        ingest(store, json.dumps(doc).encode(), source="aihubmix", fetched_at=step_at)
    return path, last_at, jumped["model_id"], doubled["model_id"]


def _since(at: datetime) -> str:
    return f"since={iso(at)}"


def test_a_1000x_step_says_check_this_in_the_feed_and_a_2x_step_does_not(stepped):
    path, before, jumped, doubled = stepped
    atom = _asgi(create_app(path)).get(f"/changes.atom?{_since(before)}")
    entries = feedparser.parse(atom.content).entries
    titles = sorted((e.title for e in entries), key=lambda t: t.startswith(doubled))
    assert len(titles) == 2
    assert titles[0].startswith(f"{jumped}: input_price ")
    assert titles[0].endswith("(+99900.0%)" + CHECK.format(10))
    assert titles[1].startswith(f"{doubled}: input_price ")
    assert titles[1].endswith("(+100.0%)")
    assert [e.summary for e in entries] == [e.title for e in entries]


def test_check_this_is_a_badge_on_the_changes_page_and_the_model_page(stepped):
    path, before, jumped, doubled = stepped
    client = _asgi(create_app(path))
    rows = page(client, f"/changes?{_since(before)}").rows("changes")
    assert {(r[1], r[3], r[-1]) for r in rows} == {
        (jumped, "input_price", "check this"),
        (doubled, "input_price", ""),
    }
    with Store.open(path, read_only=True) as store:
        history = store.changes(source="aihubmix", model_id=jumped)
    expected = [
        "check this" if implausible(c["old_number"], c["new_number"]) else ""
        for c in history.reverse().iter_rows(named=True)
    ]
    shown = page(client, model_path(jumped, "aihubmix"))
    assert [r[-1] for r in shown.rows("changes")] == expected
    assert expected.count("check this") >= 1
    badge = next(a for tag, a in shown.tags if tag == "span" and a.get("class") == "badge check")
    assert badge["title"] == "check this (more than 10x in one step)"


def test_the_flag_agrees_with_implausible_over_the_whole_bundled_history(stepped):
    """`check` (from the rounded percentage) against `implausible` (from the values), on
    every change stored, including a real cut of exactly 10x (not "more than" 10x)."""
    path, *_ = stepped
    with Store.open(path, read_only=True) as store:
        changes = store.changes(source="aihubmix")
    flagged = flag_implausible(changes)["check"].to_list()
    assert flagged == [
        c["kind"] == "changed"
        and c["field"] in PRICE_COLUMNS
        and implausible(c["old_number"], c["new_number"])
        for c in changes.iter_rows(named=True)
    ]
    exactly_ten = changes.filter(
        pl.col("field").is_in(PRICE_COLUMNS) & (pl.col("pct_change") == -90.0)
    )
    assert exactly_ten.height  # the bundled history holds one
    assert sum(flagged) >= 3


@pytest.mark.parametrize(
    ("factor", "flags"),
    [("1.5", {"jumped": True, "doubled": True}), ("2000", {"jumped": False, "doubled": False})],
)
def test_the_factor_comes_from_the_config_file(stepped, tmp_path, factor, flags):
    path, before, jumped, doubled = stepped
    config = tmp_path / "modelwatch.toml"
    config.write_text(f"[defaults]\nplausibility_factor = {factor}\n")
    client = _asgi(create_app(path, config=load_config(config)))
    entries = feedparser.parse(client.get(f"/changes.atom?{_since(before)}").content).entries
    suffix = CHECK.format(f"{float(factor):g}")
    ids = {"jumped": jumped, "doubled": doubled}
    got = {name: next(e.title for e in entries if e.title.startswith(i)) for name, i in ids.items()}
    assert {name: title.endswith(suffix) for name, title in got.items()} == flags
    rows = page(client, f"/changes?{_since(before)}").rows("changes")
    assert {r[1]: r[-1] == "check this" for r in rows} == {ids[n]: f for n, f in flags.items()}


# -- always answering, packaging ------------------------------------------------------------


def test_a_page_already_served_is_served_while_another_process_holds_the_store(tmp_path, bundled):
    db = tmp_path / "served.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:4]:
            ingest(store, body, source="aihubmix", fetched_at=at)
    client = _asgi(create_app(db, busy_wait=0.5))
    urls = ["/", "/changes", "/models/" + bundled_model(bundled[0][1])]
    first = {u: client.get(u) for u in urls}
    assert all(r.status_code == 200 for r in first.values())
    with held(db):
        (tmp_path / "served.duckdb.wal").touch()  # the holder's writes change the file
        for url, before in first.items():
            again = client.get(url)
            assert again.status_code == 200 and again.content == before.content, url
        never = client.get("/?model=claude")
        assert never.status_code == 503 and never.headers["retry-after"]
        assert never.headers["content-type"] == HTML
        assert Page(never.text).error == "the database is busy; try again shortly"


def bundled_model(body: bytes) -> str:
    return json.loads(body)["data"][0]["model_id"]


def test_the_templates_ship_in_the_package_and_import_from_anywhere(tmp_path):
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = doc["tool"]["setuptools"]["package-data"]["pipeline.serve"]
    package = ROOT / "pipeline" / "serve"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    templates = set((package / "templates").iterdir())
    assert templates and templates <= shipped
    assert "jinja2>=3.1" in doc["project"]["optional-dependencies"]["serve"]
    done = subprocess.run(
        [sys.executable, "-c", "import pipeline.serve.pages as p; p.error_page(404, 'x')"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_a_raw_payload_model_is_on_its_page(client):
    """A model id straight from a bundled OpenRouter payload (not from the store) has a
    page at its URL: the path keeps its `/`, and the id comes back whole."""
    doc = json.loads(gzip.decompress(payload_files(DATA / "openrouter")[-1][1].read_bytes()))
    model_id = next(m["id"] for m in doc["data"] if m["id"].count("/") == 1 and ":" in m["id"])
    shown = page(client, model_path(model_id, "openrouter"))
    assert shown.h1 == model_id
