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


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the real `modelwatch` entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd or ROOT,
        timeout=120,
    )
