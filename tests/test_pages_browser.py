"""The pages in a real browser (issue 16): Debian's `chromium`, headless and with
JavaScript off, driven by Playwright against `modelwatch serve` on 127.0.0.1. The table
and the chart render, the filter form works, and no request leaves the machine.
Screenshots go to each test's temporary folder. Slow: `.ci/run` installs chromium when it
is missing, then runs `pytest -m slow`; without chromium these tests fail, never skip."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.test_pages import two_histories
from tests.upstream import launch, wait_until_answering

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # belt and braces: a request to any other host fails here instead of going out
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, bundled) -> Iterator[str]:
    """`modelwatch serve --port 0` over the bundled AiHubMix and OpenRouter histories."""
    folder = tmp_path_factory.mktemp("browser")
    db = two_histories(folder / "catalog.duckdb", bundled)
    proc, base = launch("serve", "--port", "0", "--db", str(db), cwd=folder)
    try:
        wait_until_answering(base)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"chromium is not installed ({CHROMIUM}): the page tests need Debian's package; "
            "run `apt-get install -y chromium` (.ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """One page without JavaScript, recording every URL it requests."""

    def __init__(self, browser, base: str, shots: Path):
        self.context = browser.new_context(
            java_script_enabled=False, viewport={"width": 1280, "height": 900}
        )
        self.page = self.context.new_page()
        self.base = base
        self.shots = shots
        self.requested: list[str] = []
        self.page.on("request", lambda request: self.requested.append(request.url))

    def open(self, path: str, status: int = 200):
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, path
        return self.page

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        return path

    def only_local(self) -> None:
        elsewhere = [
            url
            for url in self.requested
            if not url.startswith("data:") and urlsplit(url).hostname != "127.0.0.1"
        ]
        assert self.requested and not elsewhere, elsewhere


@pytest.fixture
def tab(browser, served, tmp_path) -> Iterator[Tab]:
    opened = Tab(browser, served, tmp_path)
    yield opened
    opened.context.close()


def model_ids(page) -> list[str]:
    return page.locator("#catalog tbody tr td:first-child").all_inner_texts()


def test_the_catalog_renders_and_its_form_filters_without_javascript(tab):
    page = tab.open("/")
    assert page.locator("#catalog tbody tr").count() > 20
    tab.shot("catalog")
    page.fill("input[name=model]", "claude")
    page.select_option("select[name=sort_by]", "context_length")
    page.select_option("select[name=sort_order]", "desc")
    with page.expect_navigation():
        page.click("form.filters button")
    query = urlsplit(page.url).query
    assert "model=claude" in query and "sort_by=context_length" in query
    api = httpx.get(f"{tab.base}/api/v1/models?{query}").json()["data"]
    assert model_ids(page) == [m["model_id"] for m in api]
    assert api and all("claude" in m["model_id"] for m in api)
    tab.shot("catalog-filtered")
    page.select_option("select[name=source]", "openrouter")
    page.fill("input[name=model]", "")
    with page.expect_navigation():
        page.click("form.filters button")
    assert page.locator("#catalog tbody tr").count() > 300
    tab.only_local()


def test_a_model_page_with_a_slash_in_its_id_renders_its_chart(tab):
    page = tab.open("/?source=openrouter&model=openai/gpt-4o")
    with page.expect_navigation():
        page.get_by_role("link", name="openai/gpt-4o", exact=True).click()
    assert urlsplit(page.url).path == "/models/openai/gpt-4o"
    assert page.locator("h1").inner_text() == "openai/gpt-4o"
    chart = page.locator("#price-chart svg")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200
    assert chart.locator("path").count() > 10
    assert page.locator("#versions tbody tr").count() == 4  # the bundled snapshots' versions
    assert page.locator("#changes tbody tr").count() > 0
    tab.shot("model-page")
    tab.only_local()


def test_the_changes_page_links_to_model_pages_and_errors_are_pages(tab):
    page = tab.open("/changes?source=openrouter")
    rows = page.locator("#changes tbody tr")
    assert rows.count() == 200  # the feed's cap: the history has more
    page.fill("input[name=model]", "llama-3.2")
    with page.expect_navigation():
        page.click("form.filters button")
    assert "model=llama-3.2" in page.url
    checked = page.locator("#changes tr:has(.badge.check) td.id")
    # OpenRouter's two real steps beyond 10x: output prices of the 1B and 3B models
    assert sorted(set(checked.all_inner_texts())) == [
        "meta-llama/llama-3.2-1b-instruct",
        "meta-llama/llama-3.2-3b-instruct",
    ]
    assert page.locator(".badge.check").first.is_visible()
    first = rows.first.locator("td.id a")
    name = first.inner_text()
    tab.shot("changes")
    with page.expect_navigation():
        first.click()
    assert page.locator("h1").inner_text() == name
    tab.open("/models/no-such-model", status=404)
    assert "was never in the aihubmix catalog" in page.locator("p.error").inner_text()
    tab.shot("not-found")
    tab.only_local()
