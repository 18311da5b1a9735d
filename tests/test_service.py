"""The service recipes in docs/ (issue 14): the systemd unit is one systemd accepts."""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "docs" / "service" / "modelwatch.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path):
    text = UNIT.read_text()
    assert "ExecStart=/opt/modelwatch/venv/bin/modelwatch up" in text
    unit = tmp_path / "modelwatch.service"
    unit.write_text(
        text.replace("/opt/modelwatch/venv/bin/modelwatch", shutil.which("modelwatch"))
        .replace("User=modelwatch\n", "")
        .replace("Group=modelwatch\n", "")
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "modelwatch.service" not in done.stderr, done.stderr  # no complaint about it


def test_the_container_recipe_runs_up_and_checks_health():
    recipe = (ROOT / "docs" / "service" / "Containerfile").read_text()
    assert 'CMD ["modelwatch", "up", "--host", "0.0.0.0", "--port", "8000"]' in recipe
    assert "/healthz" in recipe and "STOPSIGNAL SIGTERM" in recipe
