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
def test_readme_sql_runs_on_the_bundled_history(history_db, sql):
    import duckdb

    with duckdb.connect(str(history_db), read_only=True) as con:
        rows = con.execute(sql).fetchall()
    assert rows, sql


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
