"""First contact (issue 13): what a newcomer touches works and says the right thing."""

import os
import re
import shutil

import pytest

from tests.conftest import HISTORY, run_cli


def _small_history(tmp_path):
    folder = tmp_path / "payloads"
    folder.mkdir()
    for path in sorted(HISTORY.iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def test_the_config_files_db_is_used_by_every_command(tmp_path):
    (tmp_path / "modelwatch.toml").write_text('[defaults]\ndb = "other.duckdb"\n')
    folder = _small_history(tmp_path)
    assert run_cli("replay", str(folder), cwd=tmp_path).returncode == 0
    assert (tmp_path / "other.duckdb").exists() and not (tmp_path / "data").exists()
    for args in (["models"], ["info"], ["changes"], ["status"]):
        done = run_cli(*args, cwd=tmp_path)
        assert "does not exist" not in done.stderr, (args, done.stderr)
        assert done.returncode in (0, 1), (args, done.stderr)  # status: 1 when stale
    # the environment wins over the file, and --db over both
    env = {"MODELWATCH_DB": str(tmp_path / "env.duckdb")}
    assert run_cli("replay", str(folder), cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "env.duckdb").exists()
    flag = tmp_path / "flag.duckdb"
    assert run_cli("replay", str(folder), "--db", str(flag), cwd=tmp_path, env=env).returncode == 0
    assert flag.exists()


def test_a_named_config_file_comes_from_the_environment_too(tmp_path):
    elsewhere = tmp_path / "conf" / "watch.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f'[defaults]\ndb = "{tmp_path / "named.duckdb"}"\n')
    folder = _small_history(tmp_path)
    done = run_cli("replay", str(folder), cwd=tmp_path, env={"MODELWATCH_CONFIG": str(elsewhere)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "named.duckdb").exists()


def test_outside_the_repository_a_query_says_how_to_make_a_store(tmp_path):
    done = run_cli("models", cwd=tmp_path, child=True, env={"HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "modelwatch demo" in done.stderr and "--db" in done.stderr


def test_demo_works_from_any_folder(tmp_path):
    done = run_cli("demo", cwd=tmp_path, child=True, env={"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "catalog.duckdb").exists()
    assert (tmp_path / "data" / "report.html").exists()


def test_schedule_without_a_prefect_server_says_so_in_one_line(tmp_path):
    env = {"HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    done = run_cli(
        "schedule", "--db", str(tmp_path / "x.duckdb"), cwd=tmp_path, env=env, child=True
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: modelwatch schedule needs a Prefect server")
    assert done.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    db = tmp / "catalog.duckdb"
    assert run_cli("replay", str(_small_history(tmp)), "--db", str(db)).returncode == 0
    return db


def test_a_query_before_the_history_says_when_it_starts(small_db):
    done = run_cli("models", "--as-of", "2000-01-01", "--db", str(small_db))
    assert done.returncode == 0
    assert "the aihubmix history starts at 2025-10-18T13:24:33Z" in done.stderr


def test_the_cost_of_a_model_not_listed_then_says_when_it_was(small_db):
    early = run_cli(
        "cost",
        "DeepSeek-V3.2-Exp",
        "--input-tokens",
        "1",
        "--output-tokens",
        "1",
        "--at",
        "2020-01-01",
        "--db",
        str(small_db),
    )
    assert early.returncode == 1
    assert "it was first listed at 2025-10-18T13:24:33Z" in early.stderr


def test_times_print_in_one_format(small_db):
    done = run_cli("info", "--db", str(small_db))
    stamps = re.findall(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z", done.stdout)
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in stamps)


def test_a_damaged_store_is_one_line_naming_it(small_db, tmp_path):
    damaged = tmp_path / "damaged.duckdb"
    data = bytearray(small_db.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 200_000] = os.urandom(200_000)
    damaged.write_bytes(bytes(data))
    for args in (["changes"], ["models"], ["info"]):
        done = run_cli(*args, "--db", str(damaged))
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith(f"error: database '{damaged}' cannot be read"), done.stderr
        assert done.stderr.count("\n") == 1


def test_db_help_keeps_its_default_text():
    done = run_cli("models", "--help", env={"COLUMNS": "200"})
    assert "else data/catalog.duckdb" in done.stdout
