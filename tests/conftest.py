import gzip
import math
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

# Prefect reads these at import: quiet, offline, its own home, patient on 2 cores.
os.environ.setdefault("TZ", "UTC")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="modelwatch-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("PREFECT_API_URL", None)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
DOCS = DATA / "aihubmix-docs"
HISTORY = DATA / "aihubmix-modelsdev"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite leaves no child process running (servers, schedulers, Prefect engines)."""
    import psutil

    yield
    me = psutil.Process()
    left = [p for p in me.children(recursive=True) if p.is_running()]
    _, alive = psutil.wait_procs(left, timeout=10)
    for proc in alive:
        proc.kill()
    assert not alive, "processes left behind: " + ", ".join(
        " ".join(p.cmdline()[:4]) for p in alive if p.is_running()
    )


@pytest.fixture
def store():
    from pipeline.store import Store

    with Store.open(":memory:") as s:
        yield s


@pytest.fixture(scope="session")
def bundled() -> list[tuple[datetime, bytes]]:
    """The bundled AiHubMix history: (fetch time, body), oldest first."""
    from pipeline.ingest import payload_files

    return [(t, gzip.decompress(p.read_bytes())) for t, p in payload_files(HISTORY)]


# a normalised record's values when the upstream item gives only an id
EMPTY_RECORD = {
    "description": "",
    "types": [],
    "features": [],
    "input_modalities": [],
    "max_output": None,
    "context_length": None,
    "input_price": None,
    "output_price": None,
    "cache_read_price": None,
    "cache_write_price": None,
    "extra": None,
}


def positive(value: object) -> bool:
    """A real, finite, positive number (benchmark figures must be)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def doc(name: str) -> bytes:
    return (DOCS / name).read_bytes()


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    child: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the `modelwatch` entry point (`main()`, error handling and exit codes included)
    in this process; `child=True` runs the installed console script in a child process,
    as a user does (for what a child adds: a fresh interpreter, signals, real stdio)."""
    full_env = {"COLUMNS": "200", **(env or {})}
    if child:
        return subprocess.run(
            ["modelwatch", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **full_env},
            cwd=cwd or ROOT,
            timeout=120,
        )
    return _run_in_process(list(args), full_env, cwd or ROOT)


def _run_in_process(args: list[str], env: dict[str, str], cwd: Path):
    import contextlib
    import io

    from pipeline import cli

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    stderr = io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["modelwatch", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    stdout.flush()
    out = stdout.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    return subprocess.CompletedProcess(args, code, out, stderr.getvalue())
