"""The README's examples run: its SQL against the bundled history, its commands' help."""

import re

import pytest

from pipeline.ingest import ingest
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
SQL_BLOCKS = re.findall(r"```sql\n(.*?)```", README, re.S)


def test_readme_has_the_two_setup_commands_and_ci_runs_the_second():
    setup = README.split("## Set-up: two commands", 1)[1].split("##", 1)[0]
    commands = [line for line in setup.splitlines() if line.startswith("pip install")]
    assert commands == [
        "pip install -e . && modelwatch demo",
        'pip install -e ".[test]" && python -m pytest',
    ]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def history_db(tmp_path_factory, bundled):
    from pipeline.store import Store

    path = tmp_path_factory.mktemp("docs") / "catalog.duckdb"
    with Store.open(path) as store:
        for at, payload in bundled:
            ingest(store, payload, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    return path


@pytest.mark.parametrize("sql", SQL_BLOCKS, ids=[f"sql{i}" for i in range(len(SQL_BLOCKS))])
def test_readme_sql_runs_in_the_registry_duckdb_shell(history_db, sql):
    """Through the `duckdb` command an analyst installs (`pip install duckdb-cli`, an
    older DuckDB than the library's): the store's storage format must open there."""
    import shutil
    import subprocess

    shell = shutil.which("duckdb")
    assert shell, "the duckdb shell comes with the test extras (duckdb-cli)"
    done = subprocess.run(
        [shell, "-readonly", "-csv", str(history_db)],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    assert len(done.stdout.strip().splitlines()) > 1, sql  # a header and at least one row


def test_there_are_three_worked_sql_examples():
    assert len(SQL_BLOCKS) == 3


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=lambda c: c.splitlines()[0][:40])
def test_readme_python_runs_on_the_bundled_history(code, history_db, tmp_path):
    """Each Python block, as written, against `data/catalog.duckdb` of the bundled history."""
    import shutil
    import subprocess
    import sys

    (tmp_path / "data").mkdir()
    shutil.copy(history_db, tmp_path / "data" / "catalog.duckdb")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
