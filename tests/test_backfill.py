"""`backfill`: day-one history from a catalog kept in git (SPEC 7).

Real git repositories are built in tmp_path from the bundled payloads, each commit
dated (committer time) like the payload's file name, and compared with `replay`.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.backfill import backfill, commits, payloads
from pipeline.errors import BadInput
from pipeline.ingest import ingest, payload_files, replay
from pipeline.outcome import IngestResult, Outcome
from pipeline.store import FetchMeta, Store

DATA = Path(__file__).resolve().parent.parent / "data"
LITELLM = DATA / "litellm"
MODELSDEV = DATA / "modelsdev"
FILE = "model_prices_and_context_window.json"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Backfill Test",
    "GIT_AUTHOR_EMAIL": "backfill@example.invalid",
    "GIT_COMMITTER_NAME": "Backfill Test",
    "GIT_COMMITTER_EMAIL": "backfill@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


# -- building repositories ----------------------------------------------------------------


def git(repo: Path, *args: str, when: datetime | None = None) -> str:
    env = {**os.environ, **GIT_ENV}
    if when is not None:
        stamp = f"@{int(when.replace(tzinfo=UTC).timestamp())} +0000"
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = stamp
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-C", str(repo), *args],
        env=env,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode().strip()


def init(repo: Path) -> Path:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    return repo


def commit(repo: Path, files: dict[str, bytes | None], when: datetime, message: str = "c") -> str:
    """Write (or, for None, delete) the files and commit them at `when` (UTC)."""
    for name, data in files.items():
        target = repo / name
        if data is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    git(repo, "add", "-A")  # the test repository's own files: all of them
    git(repo, "commit", "-q", "--allow-empty", "-m", message, when=when)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def litellm() -> list[tuple[datetime, bytes]]:
    """The bundled litellm payloads (all of them), oldest first."""
    return [(t, gzip.decompress(p.read_bytes())) for t, p in payload_files(LITELLM)]


@pytest.fixture
def file_repo(tmp_path: Path, litellm: list[tuple[datetime, bytes]]) -> tuple[Path, list[str]]:
    """litellm's price file taking each bundled payload in turn; a README commit between."""
    repo = init(tmp_path / "litellm")
    shas = []
    for i, (at, body) in enumerate(litellm):
        shas.append(commit(repo, {FILE: body}, at, f"prices {i}"))
        commit(repo, {"README.md": f"edit {i}\n".encode()}, at + timedelta(minutes=1))
    return repo, shas


# -- comparing stores ---------------------------------------------------------------------

HISTORY_SQL = {
    "model_versions": "SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL",
    "snapshots": "SELECT * EXCLUDE (fetch_id) FROM snapshots ORDER BY ALL",
    "orders": "SELECT * FROM orders ORDER BY ALL",
    "fetch_log": (
        "SELECT source, fetched_at, outcome, content_hash, catalog_hash, models, added, "
        "removed, returned, changed, quarantined, error FROM fetch_log ORDER BY fetched_at"
    ),
    "quarantine": "SELECT * FROM quarantine ORDER BY ALL",
}


def history(store: Store) -> dict[str, list[Any]]:
    return {name: store.execute(sql) for name, sql in HISTORY_SQL.items()}


def log(store: Store) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.execute("SELECT fetched_at, outcome, url FROM fetch_log")]


# -- a file ---------------------------------------------------------------------------------


def test_file_history_equals_replay(file_repo, litellm):
    repo, shas = file_repo
    found = commits(repo, FILE)
    assert [c.sha for c in found] == shas  # the README commits did not touch the file
    assert [c.committed_at for c in found] == [t for t, _ in litellm]
    assert [c.fetched_at for c in found] == [t for t, _ in litellm]

    seen: list[tuple[str, IngestResult]] = []
    with Store.open(":memory:") as got, Store.open(":memory:") as want:
        results = backfill(
            got, repo, path=FILE, source="litellm", on_result=lambda c, r: seen.append((c.sha, r))
        )
        expected = replay(want, payload_files(LITELLM), source="litellm")
        assert [r.outcome for r in results] == [r.outcome for r in expected]
        assert [sha for sha, _ in seen] == shas
        assert history(got) == history(want)
        assert history(got)["model_versions"]  # not two empty stores
        urls = [u for _, _, u in log(got)]
        assert urls == [f"git:{sha}:{FILE}" for sha in shas]


def test_rerun_adds_only_newer_commits(tmp_path, litellm):
    repo = init(tmp_path / "r")
    first = [commit(repo, {FILE: body}, at) for at, body in litellm[:3]]
    with Store.open(":memory:") as store:
        runs = [backfill(store, repo, path=FILE, source="litellm")]
        assert [r.outcome for r in runs[0]] == [Outcome.NEW] * 3
        before = history(store)
        again = backfill(store, repo, path=FILE, source="litellm")
        assert [r.outcome for r in again] == [Outcome.DUPLICATE] * 3
        assert [r.content_hash for r in again] == [r.content_hash for r in runs[0]]
        assert history(store) == before  # nothing written

        later = [commit(repo, {FILE: body}, at) for at, body in litellm[3:]]
        more = backfill(store, repo, path=FILE, source="litellm")
        assert [r.outcome for r in more] == [Outcome.DUPLICATE] * 3 + [Outcome.NEW] * 2
        assert [u for _, _, u in log(store)] == [f"git:{s}:{FILE}" for s in first + later]

        with Store.open(":memory:") as whole:
            backfill(whole, repo, path=FILE, source="litellm")
            assert history(store) == history(whole)


def test_a_failed_commit_is_ingested_again(tmp_path, litellm):
    repo = init(tmp_path / "r")
    shas = [commit(repo, {FILE: body}, at) for at, body in litellm[:3]]
    with Store.open(":memory:") as store:
        backfill(store, repo, path=FILE, source="litellm", rev=shas[1])
        # the third commit's write failed (say the disk filled): logged as failed
        at = litellm[2][0]
        store.record_attempt(
            IngestResult(source="litellm", fetched_at=at, outcome=Outcome.FAILED, error="disk"),
            FetchMeta(url=f"git:{shas[2]}:{FILE}", http_status=200),
        )
        results = backfill(store, repo, path=FILE, source="litellm")
        assert [r.outcome for r in results] == [Outcome.DUPLICATE] * 2 + [Outcome.NEW]
        assert store.execute(
            "SELECT outcome FROM fetch_log WHERE fetched_at = $t ORDER BY fetch_id", {"t": at}
        ) == [("failed",), ("new",)]


def test_since_and_rev_select_what_they_say(file_repo, litellm):
    repo, shas = file_repo
    times = [t for t, _ in litellm]
    assert [c.sha for c in commits(repo, FILE, since=times[2])] == shas[2:]
    assert [c.sha for c in commits(repo, FILE, since=times[2] + timedelta(seconds=1))] == shas[3:]
    assert [c.sha for c in commits(repo, FILE, rev=shas[1])] == shas[:2]
    assert [c.sha for c in commits(repo, FILE, rev="HEAD~2")] == shas[:-1]  # a README on top
    assert [c.sha for c in commits(repo, FILE, since=times[1], rev=shas[3])] == shas[1:4]
    with Store.open(":memory:") as store:
        results = backfill(store, repo, path=FILE, source="litellm", since=times[3])
        assert [r.fetched_at for r in results] == times[3:]
        assert [t for t, _, _ in log(store)] == times[3:]
    with Store.open(":memory:") as store:
        backfill(store, repo, path=FILE, source="litellm", rev=shas[1])
        assert [u for _, _, u in log(store)] == [f"git:{s}:{FILE}" for s in shas[:2]]
    with Store.open(":memory:") as store:
        backfill(store, repo, path=FILE, source="litellm", since=times[3])
        # the commits before --since are older than what is stored now: refused, nothing written
        with pytest.raises(BadInput, match="older than the newest"):
            backfill(store, repo, path=FILE, source="litellm")
        assert len(log(store)) == 2
    assert commits(repo, FILE, since=times[-1] + timedelta(days=1)) == []


def test_older_commits_than_the_store_are_refused(tmp_path, litellm):
    repo = init(tmp_path / "r")
    commit(repo, {FILE: litellm[0][1]}, litellm[0][0])
    with Store.open(":memory:") as store:
        ingest(store, litellm[1][1], source="litellm", fetched_at=litellm[1][0], url="live")
        with pytest.raises(BadInput, match="older than the newest litellm fetch") as info:
            backfill(store, repo, path=FILE, source="litellm")
        assert "\n" not in str(info.value)
        assert len(log(store)) == 1


def test_same_second_commits_keep_git_order(tmp_path, litellm):
    repo = init(tmp_path / "r")
    at = litellm[0][0]
    shas = [commit(repo, {FILE: body}, at, f"c{i}") for i, (_, body) in enumerate(litellm[:3])]
    # and one whose committer clock ran behind its parent's
    shas.append(commit(repo, {FILE: litellm[3][1]}, at - timedelta(hours=1)))
    found = commits(repo, FILE)
    assert [c.sha for c in found] == shas
    step = timedelta(microseconds=1)
    assert [c.fetched_at for c in found] == [at, at + step, at + 2 * step, at + 3 * step]
    assert found[-1].committed_at == at - timedelta(hours=1)
    with Store.open(":memory:") as store:
        results = backfill(store, repo, path=FILE, source="litellm")
        assert [r.outcome for r in results] == [Outcome.NEW] * 4
        assert [r.fetched_at for r in results] == [c.fetched_at for c in found]
        # and a re-run finds them all stored
        assert {r.outcome for r in backfill(store, repo, path=FILE, source="litellm")} == {
            Outcome.DUPLICATE
        }


def test_gzip_file_and_deleted_file(tmp_path, litellm):
    repo = init(tmp_path / "r")
    name = "catalog/prices.json.gz"
    (t0, b0), (t1, b1), (t2, _) = litellm[:3]
    commit(repo, {name: gzip.compress(b0)}, t0)
    commit(repo, {name: None}, t1)  # deleted: no fetch
    commit(repo, {name: gzip.compress(b1)}, t2)
    bodies = list(payloads(repo, name))
    assert [(c.fetched_at, body) for c, body in bodies] == [(t0, b0), (t2, b1)]


# -- a models.dev folder ---------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"TOML cannot hold {value!r}")  # null: the layout cannot carry it


def to_toml(doc: dict[str, Any]) -> bytes:
    """Simple TOML for one models.dev file: scalars first, then one table per object."""
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)
    ]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(key)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    text = "\n".join(lines) + "\n"
    assert tomllib.loads(text) == doc  # the round trip is exact
    return text.encode()


def split_api_json(doc: dict[str, Any]) -> dict[str, bytes]:
    """models.dev's aggregated api.json -> its repository layout, file by file."""
    files = {}
    for pid, provider in doc.items():
        meta = provider.get("provider", {k: v for k, v in provider.items() if k != "models"})
        files[f"providers/{pid}/provider.toml"] = to_toml(meta)
        for key, model in provider["models"].items():
            files[f"providers/{pid}/models/{key}.toml"] = to_toml(model)
    return files


def catalog(store: Store, at: datetime) -> pl.DataFrame:
    # position: models come in path order, not api.json's order (the layout has none)
    return store.catalog_as_of("modelsdev", at).drop("position").sort("model_id")


@pytest.fixture(scope="module")
def modelsdev_doc() -> tuple[datetime, bytes, dict[str, Any]]:
    at, path = payload_files(MODELSDEV)[0]  # 50 providers, 741 models
    body = gzip.decompress(path.read_bytes())
    return at, body, json.loads(body)


def test_modelsdev_folder_gives_the_aggregated_catalog(tmp_path, modelsdev_doc):
    at, body, doc = modelsdev_doc
    repo = init(tmp_path / "models.dev")
    files = split_api_json(doc)
    assert any(name.count("/") > 3 for name in files)  # models in subfolders: Qwen/Qwen3-...
    commit(repo, {"README.md": b"models.dev\n", **files}, at)

    # the next commit: one price changes, one model goes, one file is broken
    provider = "anthropic"
    first, second = list(doc[provider]["models"])[:2]
    model_toml = f"providers/{provider}/models/{{}}.toml"
    changed = json.loads(json.dumps(doc))
    changed[provider]["models"][first]["cost"]["input"] = 123.0
    del changed[provider]["models"][second]
    later = at + timedelta(days=1)
    commit(
        repo,
        {
            model_toml.format(first): to_toml(changed[provider]["models"][first]),
            model_toml.format(second): None,
            "providers/zzz/models/broken.toml": b"cost = {\n",
        },
        later,
    )

    with Store.open(":memory:") as got, Store.open(":memory:") as want:
        results = backfill(got, repo, path=".", source="modelsdev")
        assert [r.outcome for r in results] == [Outcome.NEW, Outcome.NEW]
        assert results[0].models == 741 and results[0].quarantined == 0
        assert results[1].models == 740 and results[1].quarantined == 1
        assert results[1].removed == [f"{provider}/{second}"]
        assert results[1].changed == [f"{provider}/{first}"]

        ingest(want, body, source="modelsdev", fetched_at=at, url="api.json")
        assert catalog(got, at).equals(catalog(want, at))
        assert catalog(got, at).height == 741

        # the same tree, read as `providers/` itself
        with Store.open(":memory:") as again:
            backfill(again, repo, path="providers", source="modelsdev", rev="HEAD~1")
            assert catalog(again, at).equals(catalog(want, at))

        price = got.execute(
            "SELECT input_price FROM model_versions WHERE model_id = $m AND valid_to IS NULL",
            {"m": f"{provider}/{first}"},
        )
        assert price == [(123.0,)]


def test_a_folder_needs_the_modelsdev_adapter(tmp_path, modelsdev_doc):
    at, _, _ = modelsdev_doc
    repo = init(tmp_path / "r")
    commit(repo, {"providers/p/models/m.toml": b'name = "M"\n'}, at)
    with Store.open(":memory:") as store, pytest.raises(BadInput, match="--kind modelsdev"):
        backfill(store, repo, path="providers", source="litellm")
    with Store.open(":memory:") as store:
        results = backfill(store, repo, path="providers", source="md", kind="modelsdev")
        assert [(r.outcome, r.models) for r in results] == [(Outcome.NEW, 1)]


# -- errors ------------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo[BadInput], *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and message
    for needle in needles:
        assert needle in message


def test_errors_are_one_line(tmp_path, litellm):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BadInput) as info:
        commits(plain, FILE)
    one_line(info, str(plain), "not a git repository")

    with pytest.raises(BadInput) as info:
        commits(tmp_path / "nowhere", FILE)
    one_line(info, "nowhere", "does not exist")

    repo = init(tmp_path / "r")
    with pytest.raises(BadInput) as info:
        commits(repo, FILE)  # no commit at all: HEAD is not a commit yet
    one_line(info, "'HEAD'")
    commit(repo, {FILE: litellm[0][1]}, litellm[0][0])

    with pytest.raises(BadInput) as info:
        commits(repo, "never/there.json")
    one_line(info, "'never/there.json'", "no commit")

    for rev in ("no-such-branch", "HEAD~5", "--all"):
        with pytest.raises(BadInput) as info:
            commits(repo, FILE, rev=rev)
        one_line(info, repr(rev), "not a commit")

    with Store.open(":memory:") as store, pytest.raises(BadInput) as info:
        backfill(store, repo, path=FILE, source="litellm", rev="nope")
    one_line(info, "'nope'")
    with pytest.raises(BadInput) as info:
        commits(repo, "../outside.json")
    one_line(info, "outside")


def test_modelsdev_folder_newest_layout(tmp_path):
    """The newest aggregate: 147 providers, 5276 models (2893 in subfolders), nested
    fields (`experimental`, `interleaved`, `reasoning_options`)."""
    at, path = payload_files(MODELSDEV)[-1]
    body = gzip.decompress(path.read_bytes())
    repo = init(tmp_path / "models.dev")
    commit(repo, split_api_json(json.loads(body)), at)
    with Store.open(":memory:") as got, Store.open(":memory:") as want:
        backfill(got, repo, path="providers", source="modelsdev")
        ingest(want, body, source="modelsdev", fetched_at=at, url="api.json")
        assert catalog(got, at).equals(catalog(want, at))


def test_the_backfill_command_from_a_repository(file_repo, tmp_path):
    from tests.conftest import run_cli

    repo, _ = file_repo
    db = tmp_path / "cli.duckdb"
    args = ("backfill", str(repo), "--path", FILE, "--source", "litellm", "--db", str(db))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "backfill" in first.stdout and "commits" in first.stdout
    again = run_cli(*args)  # nothing new: every commit is a duplicate
    assert again.returncode == 0, again.stderr
    with Store.open(db, read_only=True) as store:
        assert store.execute("SELECT count(DISTINCT fetched_at) FROM fetch_log") == [(5,)]
    wrong = run_cli(
        "backfill", str(tmp_path), "--path", FILE, "--source", "litellm", "--db", str(db)
    )
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1


def test_the_backfill_command_returns_the_space_it_freed(file_repo, tmp_path, monkeypatch):
    """As `replay` does: after the summary, free blocks go back when they matter (here,
    always: the thresholds are lowered), and the history reads the same."""
    import pipeline.store as store_module
    from tests.conftest import run_cli

    repo, _ = file_repo
    kept, returned = tmp_path / "kept.duckdb", tmp_path / "returned.duckdb"

    def backfill(db: Path) -> str:
        args = ("backfill", str(repo), "--path", FILE, "--source", "litellm", "--db", str(db))
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "free space returned" not in backfill(kept)
    monkeypatch.setattr(store_module, "RETURN_FREE_MIN", 0)
    monkeypatch.setattr(store_module, "RETURN_FREE_SHARE", 0.0)
    assert f"{returned}: free space returned, " in backfill(returned)
    with Store.open(kept, read_only=True) as a, Store.open(returned, read_only=True) as b:
        assert history(a) == history(b)
