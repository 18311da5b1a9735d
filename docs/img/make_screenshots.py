"""The README's screenshots of the pages: `python docs/img/make_screenshots.py`.

Replays the bundled AiHubMix and OpenRouter histories into a temporary store, serves it
with `modelwatch serve`, and photographs two pages in Debian's chromium (headless, no
JavaScript, nothing fetched from another host), as tests/test_pages_browser.py does.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.ingest import payload_files, replay  # noqa: E402
from pipeline.store import Store  # noqa: E402
from tests.test_pages_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SHOTS = {  # file -> page
    "catalog-page.png": "/?type=llm&sort_by=model_ratio",
    "model-page.png": "/models/claude-haiku-4-5",
}


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "catalog.duckdb"
        with Store.open(db) as store:
            for source, data in (("aihubmix", "aihubmix-modelsdev"), ("openrouter", "openrouter")):
                files = payload_files(ROOT / "data" / data)
                replay(store, files, source=source, accept_mass_removal=True)
        server = subprocess.Popen(
            ["modelwatch", "serve", "--port", "0", "--db", str(db)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=folder,
        )
        try:
            found = re.search(r"http://127\.0\.0\.1:\d+", server.stderr.readline())
            assert found, "modelwatch serve did not start"
            base = found.group(0)
            for _ in range(100):
                try:
                    httpx.get(f"{base}/healthz", timeout=5)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(
                    java_script_enabled=False, viewport={"width": 1280, "height": 860}
                )
                page = context.new_page()
                for name, path in SHOTS.items():
                    page.goto(base + path)
                    page.screenshot(path=str(Path(__file__).parent / name))
                    print(f"docs/img/{name}: {path}")
                browser.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
