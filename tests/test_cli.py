"""The command line contract (SPEC 7): `main()` in this process, and the installed console
script in a child process where a child is what is tested (usage errors, exit codes)."""

import json
import shutil

import pytest

from pipeline.normalise import normalise_items
from pipeline.query.render import catalog_body
from pipeline.sources.aihubmix import parse
from pipeline.store import Store
from tests.conftest import HISTORY, run_cli


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("demo") / "catalog.duckdb"
    done = run_cli("demo", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "33 recorded AiHubMix catalogs" in done.stdout
    return db


def test_demo_replays_the_bundled_history(demo_db, bundled):
    done = run_cli("info", "--db", str(demo_db))
    assert done.returncode == 0
    assert "snapshots" in done.stdout and "models now" in done.stdout
    again = run_cli("replay", str(HISTORY), "--db", str(demo_db))  # already stored: a no-op
    assert again.returncode == 0, again.stderr
    assert "33 │   0 │         0 │        33" in again.stdout


@pytest.mark.parametrize("index", [0, 9, 21, 32])
def test_models_json_is_the_api_body_as_of_each_snapshot(demo_db, bundled, index):
    fetched_at, payload = bundled[index]
    done = run_cli(
        "models", "--db", str(demo_db), "--as-of", fetched_at.isoformat() + "Z", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    want = normalise_items(parse(payload), source="aihubmix").frame
    assert done.stdout.encode() == catalog_body(want) + b"\n"
    # and the body is the upstream shape, model for model
    served = json.loads(done.stdout)
    upstream = json.loads(payload)["data"]
    assert [m["model_id"] for m in served["data"]] == [m["model_id"] for m in upstream]
    assert [m["pricing"] for m in served["data"]] == [m["pricing"] for m in upstream]
    assert served["success"] is True and served["message"] == ""


def test_models_before_the_first_snapshot_is_empty(demo_db):
    done = run_cli("models", "--db", str(demo_db), "--as-of", "2020-01-01", "--format", "json")
    assert json.loads(done.stdout) == {"data": [], "message": "", "success": True}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "--as-of", "yesterday"], "error: --as-of 'yesterday' is not an ISO 8601 time"),
        (["replay", "/nonexistent/dir"], "error: replay folder '/nonexistent/dir' does not exist"),
        (["snapshot", "--source", "nope"], "error: unknown source 'nope'; known sources: aihubmix"),
        (
            ["models", "--db", "/no/such/dir/x.duckdb"],
            "error: database '/no/such/dir/x.duckdb' does not exist; create it with",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(args, message, tmp_path):
    done = run_cli(*args, env={"MODELWATCH_DB": str(tmp_path / "x.duckdb")})
    assert done.returncode == 1
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_replay_reports_rejected_and_suspect_files(tmp_path):
    folder = tmp_path / "payloads"
    folder.mkdir()
    first = sorted(HISTORY.iterdir())[0]
    shutil.copy(first, folder / first.name)
    (folder / "2026-01-01T00-00-00Z_bad.json").write_text("<html>502</html>")
    (folder / "2026-01-02T00-00-00Z_empty.json").write_text('{"data": [], "success": true}')
    db = tmp_path / "r.duckdb"
    done = run_cli("replay", str(folder), "--db", str(db))
    assert done.returncode == 1
    assert (
        "2 of 3 payloads not applied; first: 2026-01-01T00:00:00Z rejected: body is not JSON"
        in done.stderr
    )


def test_env_variable_selects_the_database(tmp_path):
    db = tmp_path / "env.duckdb"
    done = run_cli("replay", str(HISTORY), env={"MODELWATCH_DB": str(db)})
    assert done.returncode == 3  # the bundled history holds one mass rename: held as suspect
    assert db.exists()


def _commands() -> list[list[str]]:
    import typer.main

    from pipeline.cli import app

    def walk(command, path):
        subs = getattr(command, "commands", None)
        if not subs:
            return [path]
        found = [path] if path else []
        for name, sub in subs.items():
            assert sub.help, f"{' '.join([*path, name])} has no help"
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


def test_every_command_has_help_and_usage_mistakes_exit_2_without_a_traceback(tmp_path):
    """Through the installed console script, as a user types it (SPEC 7: exit 2)."""
    from concurrent.futures import ThreadPoolExecutor

    commands = _commands()
    assert {"snapshot", "replay", "models", "serve", "tokens add"} <= {
        " ".join(c) for c in commands
    }
    cases = [(c, [*c, "--help"], 0) for c in commands]
    cases += [(c, [*c, "--no-such-option"], 2) for c in commands]
    cases += [([], [], 2), (["nosuchcmd"], ["nosuchcmd"], 2), ([], ["--version"], 0)]
    cases += [(["models"], ["models", "--format", "xml"], 2), (["cost"], ["cost"], 2)]
    cases += [(["snapshot"], ["snapshot", "--retries", "99"], 2)]
    env = {"HOME": str(tmp_path), "MODELWATCH_DB": str(tmp_path / "x.duckdb")}
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda c: run_cli(*c[1], env=env, cwd=tmp_path, child=True), cases))
    for (_, args, code), done in zip(cases, runs, strict=True):
        shown = " ".join(["modelwatch", *args])
        assert done.returncode == code, (shown, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr, shown
        if args[-1:] == ["--help"]:
            assert "Usage" in done.stdout, shown
        elif args == ["--version"]:
            assert done.stdout.startswith("modelwatch "), shown
        else:
            assert "Usage" in done.stdout + done.stderr, shown


def test_querying_imports_neither_prefect_nor_altair_nor_pandera(demo_db):
    code = (
        "import sys\n"
        "from pipeline.cli import main\n"
        f"sys.argv = ['modelwatch', 'models', '--db', {str(demo_db)!r}, '--format', 'json',"
        " '--type', 'llm', '--sort-by', 'model_ratio']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('prefect', 'altair', 'pandera', 'httpx') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in done.stderr, done.stderr
    assert json.loads(done.stdout)["success"] is True


def test_changes_history_cost_and_export(demo_db, tmp_path):
    done = run_cli("changes", "--db", str(demo_db), "--since", "2026-06-01", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows and all(r["changed_at"] > "2026-06-01" for r in rows)
    assert {r["kind"] for r in rows} <= {"added", "removed", "returned", "changed"}
    hist = run_cli("history", "claude-haiku-4-5", "--db", str(demo_db), "--format", "csv")
    assert hist.stdout.splitlines()[0].startswith("source,model_id,valid_from,valid_to,input_price")
    cost = run_cli(
        "cost",
        "claude-haiku-4-5",
        "--input-tokens",
        "1000000",
        "--output-tokens",
        "20000",
        "--cached-tokens",
        "300000",
        "--at",
        "2026-01-01",
        "--db",
        str(demo_db),
    )
    assert cost.stdout.startswith("claude-haiku-4-5 (aihubmix) at 2026-01-01T00:00:00Z: $0.913000")
    unknown = run_cli(
        "cost", "claude-haiku", "--input-tokens", "1", "--output-tokens", "1", "--db", str(demo_db)
    )
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(
        "error: model 'claude-haiku' was never in the stored catalog; did you mean claude-haiku-4-5"
    )
    bad = run_cli("models", "--db", str(demo_db), "--type", "chat")
    assert bad.returncode == 1 and bad.stderr.startswith("error: type 'chat' is not a known type")
    exported = run_cli("export", str(tmp_path / "pq"), "--db", str(demo_db))
    assert exported.returncode == 0, exported.stderr
    import polars as pl

    versions = pl.read_parquet(tmp_path / "pq" / "model_versions.parquet")
    from pipeline.store import Store

    with Store.open(demo_db) as store:
        assert versions.height == store.summary()["versions"]


def test_a_source_can_be_named_apart_from_its_adapter(tmp_path):
    db = str(tmp_path / "kind.duckdb")
    done = run_cli(
        "replay",
        str(HISTORY.parent / "openrouter"),
        "--source",
        "or-team-a",
        "--kind",
        "openrouter",
        "--accept-mass-removal",
        "--db",
        db,
    )
    assert done.returncode == 0, done.stderr
    listed = run_cli("models", "--source", "or-team-a", "--format", "json", "--db", db)
    assert len(json.loads(listed.stdout)["data"]) > 100
    other = run_cli("models", "--source", "openrouter", "--db", db)
    assert other.returncode == 1  # nothing was stored under the adapter's own name


def test_replay_leaves_non_payload_files_alone(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    first = sorted(HISTORY.iterdir())[0]
    shutil.copy(first, folder / first.name)
    (folder / "index.json").write_text("{}")
    done = run_cli("replay", str(folder), "--db", str(tmp_path / "r.duckdb"))
    assert done.returncode == 0, done.stderr
    assert "not payloads, left alone: index.json" in done.stderr
    (folder / "2026-13-45T00-00-00Z_x.json").write_text("{}")
    bad = run_cli("replay", str(folder), "--db", str(tmp_path / "r.duckdb"))
    assert bad.returncode == 1
    assert "error: file name '2026-13-45T00-00-00Z_x.json' holds an impossible time" in bad.stderr


def test_replay_reads_gzip_payloads_and_names_a_broken_one(tmp_path):
    """Payloads saved as .json.gz read back byte for byte (ISA-L inflates them); a
    truncated one is one line naming the file, and what came before it stays stored."""
    import gzip

    folder = tmp_path / "history"
    folder.mkdir()
    first, second = sorted(HISTORY.iterdir())[:2]
    shutil.copy(first, folder / first.name)
    db = tmp_path / "r.duckdb"
    assert run_cli("replay", str(folder), "--db", str(db)).returncode == 0
    body = gzip.decompress(first.read_bytes())
    with Store.open(db, read_only=True) as store:
        ((digest,),) = store.execute("SELECT content_hash FROM fetch_log")
        assert store.raw_payload(digest) == body

    (folder / second.name).write_bytes(second.read_bytes()[:-12])  # cut short
    bad = run_cli("replay", str(folder), "--db", str(db))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"error: {second.name}: not a valid gzip file (Compressed file ended before the "
        "end-of-stream marker was reached)"
    ]
    with Store.open(db, read_only=True) as store:
        assert store.execute("SELECT count(*) FROM fetch_log") == [(1,)]
