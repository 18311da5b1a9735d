"""Never lose (issue 12): a failed write is applied by the next run, snapshots are totally
ordered, and a hostile model id cannot take the report down."""

import json
from datetime import datetime, timedelta

import duckdb
import pytest

import pipeline.store.history
from pipeline.errors import StoreError
from pipeline.ingest import ingest
from pipeline.normalise import normalise_items
from pipeline.outcome import Outcome
from pipeline.sources.aihubmix import parse
from pipeline.store import Store
from tests.conftest import run_cli

# every history table, without the ids that number attempts (a failed try takes one)
HISTORY = {
    "model_versions": "SELECT * EXCLUDE (fetch_id) FROM model_versions ORDER BY ALL",
    "snapshots": "SELECT * EXCLUDE (fetch_id) FROM snapshots ORDER BY ALL",
    "orders": "SELECT * FROM orders ORDER BY ALL",
    "quarantine": "SELECT * FROM quarantine ORDER BY ALL",
    "raw_payloads": "SELECT content_hash, size FROM raw_payloads ORDER BY ALL",
}


def history(store: Store) -> dict[str, list]:
    return {name: store.execute(sql) for name, sql in HISTORY.items()}


def clean_run(payloads) -> dict[str, list]:
    with Store.open(":memory:") as clean:
        for at, body in payloads:
            ingest(clean, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        return history(clean)


def test_a_write_that_failed_is_applied_when_the_payload_comes_again(store, bundled, monkeypatch):
    payloads = bundled[:4]
    ingest(store, payloads[0][1], source="aihubmix", fetched_at=payloads[0][0])

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline.store, "apply_changes", disk_full)
        with pytest.raises(StoreError, match="No space left"):
            ingest(store, payloads[1][1], source="aihubmix", fetched_at=payloads[1][0])
    outcomes = [r[0] for r in store.execute("SELECT outcome FROM fetch_log ORDER BY fetch_id")]
    assert outcomes == ["new", "failed"]

    # the re-run (a replay of the same files) applies it: no "duplicate" of a failure
    again = [
        ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
        for at, body in payloads
    ]
    assert [r.outcome for r in again][:2] == [Outcome.DUPLICATE, Outcome.NEW]
    assert history(store) == clean_run(payloads)


class _CommitFails:
    """A connection whose next COMMIT fails, as on a full disk."""

    def __init__(self, con):
        self.con, self.armed = con, True

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.armed:
            self.armed = False
            self.con.execute("ROLLBACK")
            raise duckdb.IOException("could not write the WAL: No space left on device")
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_a_commit_that_fails_leaves_nothing_a_later_run_takes_for_success(store, bundled):
    payloads = bundled[:3]
    ingest(store, payloads[0][1], source="aihubmix", fetched_at=payloads[0][0])
    store._con = store._archive._con = _CommitFails(store._con)  # the disk fills up
    with pytest.raises(StoreError, match="No space left"):
        ingest(store, payloads[1][1], source="aihubmix", fetched_at=payloads[1][0])
    for at, body in payloads:  # room again: the same replay
        ingest(store, body, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    assert history(store) == clean_run(payloads)


def test_a_second_payload_at_the_same_instant_is_rejected_never_mixed(store, bundled):
    (at, first), (_, second) = bundled[0], bundled[5]
    ingest(store, first, source="aihubmix", fetched_at=at)
    before = history(store)
    tied = ingest(store, second, source="aihubmix", fetched_at=at, accept_mass_removal=True)
    assert tied.outcome == Outcome.REJECTED
    assert "fetched at the same time" in tied.error
    after = history(store)
    after.pop("raw_payloads"), before.pop("raw_payloads")  # the rejected body is kept
    assert after == before
    want = normalise_items(parse(first), source="aihubmix").frame.drop("row_hash")
    assert store.catalog_as_of("aihubmix", at).equals(want)
    # and the same payload again at that instant is a plain repeat
    assert ingest(store, first, source="aihubmix", fetched_at=at).outcome == Outcome.DUPLICATE


def test_the_report_survives_a_nul_byte_in_a_model_id(tmp_path):
    db = tmp_path / "nul.duckdb"

    def body(price: float) -> bytes:
        models = [
            {"model_id": "evil\x00id\x1b[31m", "pricing": {"input": price, "output": 1}},
            {"model_id": "plain", "pricing": {"input": 1, "output": 1}},
        ]
        return json.dumps({"data": models, "success": True}).encode()

    t0 = datetime(2026, 1, 1)
    with Store.open(db) as store:
        ingest(store, body(1.0), source="aihubmix", fetched_at=t0)
        ingest(store, body(2.0), source="aihubmix", fetched_at=t0 + timedelta(days=1))
    out = tmp_path / "report.html"
    done = run_cli("report", "--db", str(db), "--out", str(out), child=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "evil\ufffdid\ufffd[31m" in page and "\x00" not in page and "\x1b" not in page


def test_an_etag_that_echoes_the_token_is_never_stored_or_sent_back(store):
    import httpx

    from pipeline.ingest import snapshot

    token = "sk-live/ab+c="
    body = json.dumps({"data": [{"model_id": "m"}], "success": True}).encode()
    sent = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("if-none-match"))
        return httpx.Response(200, content=body, headers={"ETag": f'"{token}"'})

    with httpx.Client(transport=httpx.MockTransport(upstream)) as client:
        for minute in (0, 1):
            snapshot(
                store,
                source="aihubmix",
                url="http://upstream.test/api/v1/models",
                client=client,
                token=token,
                force=False,
                now=lambda m=minute: datetime(2026, 1, 1, 0, m),
            )
    assert sent == [None, None]
    assert store.execute("SELECT etag FROM fetch_log") == [(None,), (None,)]
    assert "aihubmix" in store.private_sources()


@pytest.mark.parametrize("token", ["tök/en", "tok\r\nX-Evil:1", "two words"])
def test_a_token_no_header_can_carry_is_one_clear_error_that_does_not_quote_it(store, token):
    from pipeline.errors import BadInput
    from pipeline.ingest import snapshot

    with pytest.raises(BadInput, match="cannot carry") as caught:
        snapshot(store, source="aihubmix", url="http://127.0.0.1:9/m", token=token)
    assert token not in str(caught.value)


def test_a_replay_that_hits_a_file_size_limit_is_one_line_and_a_rerun_repairs_it(tmp_path, bundled):
    """A real failing filesystem: `ulimit -f` in the child (Python ignores SIGXFSZ, so the
    write fails with EFBIG, as on a full disk). 16 KiB is less than one batch's write-ahead
    log, so the first COMMIT fails; the batches before it stand and a re-run resumes."""
    import shutil
    import subprocess

    from tests.conftest import HISTORY

    db = tmp_path / "limited.duckdb"
    with Store.open(db) as store:
        for at, body in bundled[:5]:
            ingest(store, body, source="aihubmix", fetched_at=at)
    modelwatch = shutil.which("modelwatch")
    limited = subprocess.run(
        [
            "bash",
            "-c",
            'ulimit -f 16; exec "$0" "$@"',
            modelwatch,
            "replay",
            str(HISTORY),
            "--db",
            str(db),
            "--accept-mass-removal",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert limited.returncode == 1, limited.stderr
    assert "File too large" in limited.stderr and "Traceback" not in limited.stderr
    again = run_cli("replay", str(HISTORY), "--db", str(db), "--accept-mass-removal")
    assert again.returncode == 0, again.stderr
    with Store.open(db, read_only=True) as store:
        repaired = history(store)
    assert repaired == clean_run(bundled)


def test_kill_9_during_a_replay_never_tears_the_history(tmp_path, bundled):
    """Killed at three moments, then run to the end: the same history as a clean run."""
    import shutil
    import signal
    import subprocess
    import time

    from tests.conftest import HISTORY

    db = tmp_path / "killed.duckdb"
    command = [shutil.which("modelwatch"), "replay", str(HISTORY), "--db", str(db)]
    for delay in (0.8, 1.3, 1.9):
        proc = subprocess.Popen(
            [*command, "--accept-mass-removal"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    done = run_cli("replay", str(HISTORY), "--db", str(db), "--accept-mass-removal")
    assert done.returncode == 0, done.stderr
    with Store.open(db, read_only=True) as store:
        assert history(store) == clean_run(bundled)
        log = store.execute(
            "SELECT fetched_at, count(*) FROM fetch_log GROUP BY ALL HAVING count(*) > 1"
        )
    assert log == []  # every fetch logged once
