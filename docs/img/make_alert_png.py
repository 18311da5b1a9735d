"""The README's picture of an alert: `python docs/img/make_alert_png.py` writes alert.png.

Runs the README's example alert against a webhook receiver on 127.0.0.1 (the first
bundled catalog replayed, then `replay --alerts` of the next two), and photographs what
the receiver got, as plain text in a chat-like card, with Debian's headless chromium.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.alerts import send_alerts  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.ingest import payload_files, replay  # noqa: E402
from pipeline.store import Store  # noqa: E402

PAGE = """<!doctype html><meta charset="utf-8"><style>
body {{ margin: 0; background: #f4f5f7; font: 15px/1.45 "DejaVu Sans", sans-serif; }}
.card {{ margin: 24px; padding: 16px 20px; background: #fff; border-radius: 8px;
         border-left: 4px solid #2f6fde; box-shadow: 0 1px 3px #0002; width: 760px; }}
.who {{ color: #667; font-size: 13px; margin-bottom: 6px; }}
h1 {{ font-size: 16px; margin: 0 0 10px; }}
pre {{ margin: 0; font: 13px/1.5 "DejaVu Sans Mono", monospace; white-space: pre-wrap; }}
</style><div class="card"><div class="who">webhook · json://127.0.0.1/hook</div>
<h1>{title}</h1><pre>{message}</pre></div>"""


def received() -> dict[str, str]:
    got: list[dict[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    readme = (ROOT / "README.md").read_text().split("\n## Alerts\n", 1)[1]
    example = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert example, "the README's Alerts section has no toml example"
    url = f"json://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "modelwatch.toml"
        config_path.write_text(
            re.sub(r'^url = "[^"]*"', f'url = "{url}"', example.group(1), flags=re.M)
        )
        config = load_config(config_path)
        db = Path(folder) / "catalog.duckdb"
        files = payload_files(ROOT / "data" / "aihubmix-modelsdev")
        for part in (files[:1], files[1:3]):
            with Store.open(db) as store:
                replay(store, part, source="aihubmix")
            send_alerts(db, config)
    server.shutdown()
    return got[0]


def main() -> None:
    chromium = shutil.which("chromium")
    assert chromium, "needs Debian's chromium (apt-get install -y chromium)"
    message = received()
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "alert.html"
        page.write_text(
            PAGE.format(
                title=html.escape(message["title"]), message=html.escape(message["message"])
            )
        )
        target = Path(__file__).resolve().parent / "alert.png"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=860,420",
                f"--screenshot={target}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(target)


if __name__ == "__main__":
    main()
