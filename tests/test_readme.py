"""The README is executable: every shell command in it runs, as written, against the
bundled history, in a fresh folder and a fresh HOME, through the installed `modelwatch`.

Where a command cannot run here as written, the substitution is the smallest one and is
listed in `ADAPTED`; what is not run here says where it is run instead (`ELSEWHERE`):

- Addresses on the internet become a local server on 127.0.0.1 serving a bundled
  payload (`snapshot` without `--url` gets one), and the documented ports
  (`127.0.0.1:8000`) become the ports of the servers this test starts.
- `pip install ...` is what made the environment the suite runs in; its extras are
  checked to exist instead. `python -m pytest` is this suite itself.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import DATA, HISTORY, ROOT
from tests.upstream import Upstream, launch, wait_until_answering

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(bash|cron)\n(.*?)```", README, re.S)

ADAPTED = {  # as written -> as run here (the repositories: built by `project` from data/)
    "cd /srv/modelwatch && ": "",  # the cron lines' checkout is this test's folder
    "mail -s alert you@example.com": "cat > alert.txt",  # no mail system here
}
ELSEWHERE = {
    "python -m pytest": "this suite itself (and .ci/run)",
    "prefect server start": "tests/test_schedule_server.py (slow) starts a real server",
    "modelwatch schedule": "tests/test_schedule_server.py (slow)",
    "export PREFECT_API_URL": "tests/test_schedule_server.py (slow)",
    "marimo edit": "interactive; the notebooks run headless in tests/test_reports.py",
    "python -m bench": "tests/test_bench_smoke.py (slow) runs the harness",
    "modelwatch alerts test": "tests/test_alerts.py (a real webhook receiver on 127.0.0.1)",
}


def commands() -> list[str]:
    """Every logical shell line of the README (continuations joined), in order."""
    lines: list[str] = []
    for kind, block in BLOCKS:
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if kind == "cron":  # `m h dom mon dow  command`
                line = line.split(None, 5)[5]
            lines.append(line)
    return lines


def runs_elsewhere(line: str) -> str | None:
    return next((why for start, why in ELSEWHERE.items() if start in line), None)


def test_the_readme_names_only_extras_that_exist():
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    named = set(re.findall(r'pip install -e "?\.\[(\w+)\]', README))
    assert named and named <= extras, named - extras


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh folder laid out like a checkout: data/ (the bundled histories), notebooks/."""
    here = tmp_path_factory.mktemp("readme")
    (here / "data").mkdir()
    for folder in DATA.iterdir():
        if folder.is_dir():
            (here / "data" / folder.name).symlink_to(folder)
    (here / "notebooks").symlink_to(ROOT / "notebooks")
    (here / "home").mkdir()
    _git_repositories(here / "home" / "src")
    return here


def _git_repositories(src: Path) -> None:
    """~/src/litellm and ~/src/models.dev as the README's `backfill` lines expect them,
    committed from the bundled payloads at their recorded times."""
    import gzip
    import json

    from pipeline.ingest import payload_files
    from tests.test_backfill import commit, init, split_api_json

    litellm = init(src / "litellm")
    for at, path in payload_files(DATA / "litellm")[:3]:
        commit(
            litellm,
            {"model_prices_and_context_window.json": gzip.decompress(path.read_bytes())},
            at,
        )
    modelsdev = init(src / "models.dev")
    at, path = payload_files(DATA / "modelsdev")[0]
    commit(modelsdev, split_api_json(json.loads(gzip.decompress(path.read_bytes()))), at)


def test_every_readme_command_runs_as_written(project):
    env = {
        **os.environ,
        "HOME": str(project / "home"),
        "AIHUBMIX_TOKEN_A": "readme-token",
        "COLUMNS": "160",
    }
    for key in ("MODELWATCH_DB", "MODELWATCH_CONFIG", "PREFECT_API_URL"):
        env.pop(key, None)
    last_body = sorted(HISTORY.iterdir())[-1].read_bytes()
    legacy_list = (DATA / "aihubmix-docs" / "docs-legacy-v1-models.json").read_bytes()
    ran, skipped = [], []
    served: subprocess.Popen | None = None
    token = None
    with Upstream() as upstream:
        import gzip

        port_8000 = str(upstream.server_address[1])  # until `modelwatch serve` takes it
        try:
            for line in commands():
                why = runs_elsewhere(line)
                if why:
                    skipped.append((line, why))
                    continue
                if line.startswith("pip install"):
                    assert "modelwatch" not in line.split("&&", 1)[0]  # installs only
                    rest = line.split("&&", 1)[1].strip() if "&&" in line else ""
                    if not rest or runs_elsewhere(rest):
                        skipped.append((line, "the environment the suite runs in"))
                        continue
                    line = rest
                command = line.replace("127.0.0.1:8000", f"127.0.0.1:{port_8000}")
                for written, here in ADAPTED.items():
                    command = command.replace(written, here)
                if "modelwatch snapshot" in command and "--url" not in command:
                    upstream.body = (
                        legacy_list if "aihubmix-legacy" in command else gzip.decompress(last_body)
                    )
                    command = command.replace(
                        "modelwatch snapshot", f"modelwatch snapshot --url {upstream.url}", 1
                    )
                if token is not None:
                    command = command.replace("mw-...", token)
                if command.startswith(("modelwatch serve", "modelwatch up")):
                    args = [*shlex.split(command.split("#")[0])[1:], "--port", "0"]
                    proc, base = launch(*args, cwd=project, env=env)
                    port = base.rsplit(":", 1)[1]
                    wait_until_answering(f"http://127.0.0.1:{port}")
                    if command.startswith("modelwatch up"):  # runs until stopped: start, stop
                        proc.terminate()
                        assert proc.wait(timeout=30) == 0
                    else:  # serves the commands after it
                        served, port_8000 = proc, port
                    ran.append(line)
                    continue
                done = subprocess.run(
                    ["bash", "-c", f"set -o pipefail; {command}"],
                    cwd=project,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                output = done.stdout + done.stderr
                assert "Traceback" not in output, (line, output)
                allowed = {0, 1} if command.startswith("modelwatch status") else {0}
                assert done.returncode in allowed, (line, done.returncode, output[-2000:])
                if "tokens add" in command:
                    token = done.stdout.strip()
                if command.startswith("curl"):  # JSON, or the Atom feed
                    assert done.stdout.startswith(("{", "<?xml")), (line, done.stdout[:200])
                ran.append(line)
        finally:
            if served is not None:
                served.terminate()
                served.wait(timeout=15)
    assert (project / "data" / "catalog.duckdb").exists()
    assert (project / "now.csv").read_text().startswith("source,model_id")
    assert (project / "report.html").exists() and any((project / "out").iterdir())
    assert len(ran) >= 30, ran
    assert all(why for _, why in skipped)
