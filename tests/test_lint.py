"""The package stays lint-clean and type-checks (STYLE 8): ruff on everything, mypy on
the library."""

import subprocess
import sys

from tests.conftest import ROOT


def test_ruff_is_clean():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "pipeline",
            "schemas",
            "flows",
            "--ignore-missing-imports",
            "--no-error-summary",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
