"""Alerts (SPEC 5b) against a real webhook receiver on 127.0.0.1: Apprise's `json://`
posts `{"version", "title", "message", "attachments", "type"}` there, and `form://` the
same fields form-encoded. Expected changes come from the store's own `changes()`."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
from collections import deque
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from flows import snapshot as flows
from pipeline import notify
from pipeline.alerts import MAX_LINES, send_alerts
from pipeline.config import ALERT_KINDS, AlertConfig, load_config
from pipeline.ingest import ingest, payload_files
from pipeline.outcome import IngestResult, Outcome
from pipeline.store import FetchMeta, Store
from pipeline.store.locking import db_lock
from schemas.record import PRICE_COLUMNS
from tests.conftest import HISTORY, ROOT, run_cli
from tests.upstream import LocalServer, Upstream

SECRET = "s3cr3t-Hook-Value-7f1c"
KIND_ORDER = {"added": 0, "removed": 1, "returned": 2, "changed": 3}


class Receiver(LocalServer):
    """A webhook receiver: records each POST (path, parsed body); answers `status`.
    `on_post` runs before it answers (a test kills the sender there)."""

    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(_Hook, port)
        self.posts: list[dict] = []
        self.statuses: deque[int] = deque()
        self.on_post = None

    def url(self, path: str = "hook", scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def messages(self, path: str | None = None) -> list[dict]:
        return [p for p in self.posts if path is None or p["path"] == f"/{path}"]


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(raw)
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self.server.posts.append({"path": self.path, "body": body, "raw": raw})
        if self.server.on_post is not None:
            self.server.on_post()
        status = self.server.statuses.popleft() if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def free_port() -> int:
    with Receiver() as probe:
        return probe.port


def config_file(tmp_path: Path, alerts: str, defaults: str = "") -> Path:
    path = tmp_path / "modelwatch.toml"
    path.write_text(f'[defaults]\ndb = "{tmp_path / "a.duckdb"}"\n{defaults}\n{alerts}')
    return path


def alert_toml(name: str, url: str, **extra: object) -> str:
    lines = [f"[[alerts]]\nname = {json.dumps(name)}\nurl = {json.dumps(url)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def folder(tmp_path: Path, name: str, files: list[Path]) -> Path:
    """A replay folder holding `files` of the bundled history (as symlinks)."""
    target = tmp_path / name
    target.mkdir()
    for f in files:
        (target / f.name).symlink_to(f)
    return target


HISTORY_FILES = [p for _, p in payload_files(HISTORY)]


def lines_of(message: dict) -> list[str]:
    """The change lines of a message body (no links, no "and N more")."""
    return [
        line
        for line in message["body"]["message"].splitlines()
        if line and not line.startswith("  ") and not line.startswith("and ")
    ]


def expected_keys(store: Store, since: datetime, keep=lambda r: True) -> list[tuple]:
    """model_changes after `since`, in message order, as (source, model, time, kind, field)."""
    rows = [r for r in store.changes(since=since).iter_rows(named=True) if keep(r)]
    rows.sort(
        key=lambda r: (r["changed_at"], KIND_ORDER[r["kind"]], r["model_id"], r["field"] or "")
    )
    return [(r["source"], r["model_id"], r["changed_at"], r["kind"], r["field"]) for r in rows]


def delivered(store: Store, alert: str, state: str = "sent") -> list[tuple]:
    rows = store.execute(
        "SELECT change_key FROM alert_deliveries WHERE alert = ? AND state = ? ORDER BY fetch_id",
        [alert, state],
    )
    keys = [json.loads(r[0]) for r in rows]
    return sorted(
        (k[1], k[2], datetime.fromisoformat(k[3]), k[4], k[5]) for k in keys if k[0] == "change"
    )


# -- the config ---------------------------------------------------------------------------------
def test_alert_tables_are_read_as_written(tmp_path):
    path = config_file(
        tmp_path,
        alert_toml(
            "cheaper-models",
            "json://127.0.0.1:8765/hook/${HOOK_SECRET}",
            on=["added", "price_cut"],
            source="aihubmix",
            type="llm",
            model="gpt",
            features="tools",
            modalities="text,image",
            min_change_pct=10,
        )
        + alert_toml("everything", "${WHOLE_URL}"),
        defaults='base_url = "http://127.0.0.1:8000/"',
    )
    config = load_config(path)
    assert config.alerts == [
        AlertConfig(
            name="cheaper-models",
            url="json://127.0.0.1:8765/hook/${HOOK_SECRET}",
            on=("added", "price_cut"),
            source="aihubmix",
            type="llm",
            model="gpt",
            features="tools",
            modalities="text,image",
            min_change_pct=10.0,
        ),
        AlertConfig(name="everything", url="${WHOLE_URL}", on=ALERT_KINDS),
    ]
    assert config.base_url == "http://127.0.0.1:8000"
    assert config.alerts[0].secret_names() == ["HOOK_SECRET"]


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        (alert_toml("a", "json://h/x", colour="red"), "alert 'a' has unknown keys: colour;"),
        (
            alert_toml("a", "json://h/x", on=["added", "cheaper"]),
            "on has an unknown kind 'cheaper'",
        ),
        (alert_toml("a", "json://h/x") + alert_toml("a", "json://h/y"), "alert names repeat: a"),
        ("[[alerts]]\nname = 'a'\n", "alert 'a' needs a url"),
        ("[[alerts]]\nurl = 'json://h/x'\n", "alerts[0] needs a name"),
        (alert_toml("a", "nosuch://h/x"), "url scheme 'nosuch://' is not one Apprise knows"),
        (
            alert_toml("a", "json://h/${NOT A NAME}"),
            "url has ${NOT A NAME}, which is not a variable",
        ),
        (alert_toml("a", "json://h/x", min_change_pct=-5), "min_change_pct must be a number >= 0"),
        (alert_toml("a", "json://h/x", type=["llm"]), "type must be a string, not ['llm']"),
    ],
)
def test_a_bad_alert_table_is_one_line_and_exit_1(tmp_path, alerts, message):
    done = run_cli("alerts", "list", "--config", str(config_file(tmp_path, alerts)))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- replay: the baseline, then exactly the new changes, once --------------------------------------
def test_replay_sends_exactly_the_changes_committed_since_the_baseline_once(tmp_path, receiver):
    alerts = alert_toml("all", receiver.url("all")) + alert_toml(
        "qwen-prices",
        receiver.url("qwen"),
        on=["price_cut", "price_rise"],
        model="qwen3",
        min_change_pct=50,
    )
    cfg = str(config_file(tmp_path, alerts))
    first = run_cli(
        "replay", str(folder(tmp_path, "first", HISTORY_FILES[:1])), "--config", cfg, "--alerts"
    )
    assert first.returncode == 0, first.stderr
    assert "alert 'all': first run, nothing sent" in first.stderr
    assert receiver.posts == []  # the baseline sends nothing
    rest = folder(tmp_path, "rest", HISTORY_FILES[1:12])
    second = run_cli("replay", str(rest), "--config", cfg, "--alerts")
    assert second.returncode == 0, second.stderr
    with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
        since = store.snapshot_times("aihubmix")["observed_at"][0]
        everything = expected_keys(store, since)
        qwen = expected_keys(
            store,
            since,
            lambda r: (
                "qwen3" in r["model_id"]
                and r["field"] in PRICE_COLUMNS
                and r["old_number"] is not None
                and r["new_number"] is not None
                and abs(r["pct_change"]) >= 50
            ),
        )
        assert delivered(store, "all") == sorted(everything)
        assert delivered(store, "qwen-prices") == sorted(qwen)
    assert len(everything) > MAX_LINES and 0 < len(qwen) < len(everything)
    [all_message] = receiver.messages("all")
    assert (
        all_message["body"]["title"] == f"modelwatch: {len(everything)} changes in aihubmix (all)"
    )
    shown = lines_of(all_message)
    assert len(shown) == MAX_LINES
    for line, (_, model, _, kind, _) in zip(shown, everything, strict=False):
        assert line == f"{kind} {model}" or line.startswith(f"{model}: "), (line, model, kind)
    assert all_message["body"]["message"].endswith(f"\nand {len(everything) - MAX_LINES} more")
    [qwen_message] = receiver.messages("qwen")
    assert len(lines_of(qwen_message)) == len(qwen)
    assert "qwen3-235b-a22b-thinking-2507: output price $0.60 → $2.80 per 1M tokens (+366.7%)" in (
        lines_of(qwen_message)
    )
    again = run_cli("replay", str(rest), "--config", cfg, "--alerts")
    assert again.returncode == 0 and len(receiver.posts) == 2  # nothing more, ever
    silent = run_cli("replay", str(folder(tmp_path, "more", HISTORY_FILES[12:14])), "--config", cfg)
    assert silent.returncode == 0 and "alert" not in silent.stderr and len(receiver.posts) == 2


# -- snapshot: secrets, a receiver that is down, a crash after sending ----------------------
@pytest.fixture
def upstream():
    with Upstream() as server:
        server.cache_control = "no-cache"
        yield server


def test_snapshot_sends_with_the_secret_expanded_and_never_shown_or_stored(
    tmp_path, receiver, upstream, bundled, caplog
):
    caplog.set_level(logging.DEBUG)
    cfg = str(config_file(tmp_path, alert_toml("hook", receiver.url("hook/${MW_TEST_SECRET}"))))
    env = {"MW_TEST_SECRET": SECRET}
    outputs = []
    for index in (0, 1):
        upstream.body = bundled[index][1]
        done = run_cli("snapshot", "--url", upstream.url, "--config", cfg, env=env)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    [message] = receiver.messages(f"hook/{SECRET}")  # expanded when sent
    assert (
        message["body"]["title"].startswith("modelwatch: ") and "(hook)" in message["body"]["title"]
    )
    listed = run_cli("alerts", "list", "--config", cfg, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "hook/${MW_TEST_SECRET}" in listed.stdout  # shown as written
    outputs += [listed.stdout, listed.stderr]
    db = tmp_path / "a.duckdb"
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("a.duckdb"))
    assert db.exists() and SECRET.encode() not in stored
    assert not any(SECRET in text for text in outputs)
    logged = [r.getMessage() for r in caplog.records]
    assert any("POST /hook/" in m for m in logged)  # urllib3 logged the request ...
    assert not any(SECRET in m for m in logged)  # ... with the secret masked


def test_an_unset_variable_fails_that_alert_only(tmp_path, receiver, upstream, bundled):
    alerts = alert_toml("secret", receiver.url("s/${MW_UNSET_VARIABLE}")) + alert_toml(
        "plain", receiver.url("plain")
    )
    cfg = str(config_file(tmp_path, alerts))
    for index in (0, 1):
        upstream.body = bundled[index][1]
        done = run_cli("snapshot", "--url", upstream.url, "--config", cfg)
        assert done.returncode == 0, done.stderr
    assert len(receiver.messages("plain")) == 1 and receiver.messages("s/") == []
    assert (
        "alert 'secret': " in done.stderr
        and "not delivered (environment variable 'MW_UNSET_VARIABLE' (named in the url) is unset)"
        in done.stderr
    )
    assert done.stderr.count("\n") == 2  # one line per alert


def test_a_receiver_that_is_down_fails_nothing_and_the_next_run_delivers(
    tmp_path, upstream, bundled
):
    port = free_port()
    cfg = str(config_file(tmp_path, alert_toml("hook", f"json://127.0.0.1:{port}/hook")))
    upstream.body = bundled[0][1]
    assert run_cli("snapshot", "--url", upstream.url, "--config", cfg).returncode == 0
    upstream.body = bundled[1][1]
    down = run_cli("snapshot", "--url", upstream.url, "--config", cfg)
    assert down.returncode == 0
    assert "aihubmix" in down.stdout and ": new," in down.stdout  # the snapshot stands
    assert down.stderr.count("\n") == 1, down.stderr
    assert down.stderr.startswith("alert 'hook': ") and "not delivered" in down.stderr
    assert "retried next run" in down.stderr
    with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
        failed = delivered(store, "hook", "failed")
        first = store.snapshot_times("aihubmix")["observed_at"][0]
        assert failed and failed == sorted(expected_keys(store, first))
    with Receiver(port) as receiver:
        up = run_cli("snapshot", "--url", upstream.url, "--config", cfg)
        assert up.returncode == 0, up.stderr
        assert f"alert 'hook': sent {len(failed)} change" in up.stderr
        [message] = receiver.messages("hook")
        assert f"modelwatch: {len(failed)} change" in message["body"]["title"]
        with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
            assert delivered(store, "hook") == failed and delivered(store, "hook", "failed") == []
        assert run_cli("snapshot", "--url", upstream.url, "--config", cfg).returncode == 0
        assert len(receiver.posts) == 1


def test_a_run_killed_after_sending_never_sends_those_changes_again(tmp_path, receiver):
    cfg = str(config_file(tmp_path, alert_toml("hook", receiver.url("hook"))))
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("MODELWATCH_DB", None)

    def replay(name: str, files: list[Path]) -> subprocess.Popen:
        return subprocess.Popen(
            [
                "modelwatch",
                "replay",
                str(folder(tmp_path, name, files)),
                "--config",
                cfg,
                "--alerts",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    assert replay("first", HISTORY_FILES[:1]).wait(timeout=120) == 0  # the baseline
    sender = replay("second", HISTORY_FILES[1:4])
    receiver.on_post = lambda: os.kill(sender.pid, signal.SIGKILL)  # between send and mark
    assert sender.wait(timeout=120) == -signal.SIGKILL
    sender.communicate()
    receiver.on_post = None
    assert len(receiver.posts) == 1
    with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
        claimed = delivered(store, "hook", "sending")
        assert claimed and claimed == sorted(
            expected_keys(store, store.snapshot_times("aihubmix")["observed_at"][0])
        )
    after = replay("third", HISTORY_FILES[4:6])
    out, err = after.communicate(timeout=120)
    assert after.returncode == 0, err
    assert len(receiver.posts) == 2  # the next changes only
    with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
        resent = set(delivered(store, "hook")) & set(claimed)
        assert not resent and delivered(store, "hook", "sending") == claimed
    listed = run_cli("alerts", "list", "--config", cfg)
    assert f"{len(claimed)} changes were being sent when a run stopped" in listed.stderr


# -- the rules, through the library --------------------------------------------------------------
def catalog(*models: dict) -> bytes:
    return json.dumps({"data": list(models), "success": True, "message": ""}).encode()


def model(model_id: str, *, types="llm", features="tools", price=2.5, **extra) -> dict:
    return {
        "model_id": model_id,
        "desc": "",
        "types": types,
        "features": features,
        "input_modalities": "text",
        "pricing": {"input": price, "output": 10},
        **extra,
    }


T0 = datetime(2026, 3, 1)


def test_filters_min_change_and_plausibility(tmp_path, receiver):
    alerts = (
        alert_toml(
            "llm-tools-cuts",
            receiver.url("cuts"),
            on=["price_cut"],
            type="t2t",
            features="tools",
            min_change_pct=10,
        )
        + alert_toml("checks", receiver.url("checks"), on=["changed"], model="gpt4o")
        + alert_toml("embeddings", receiver.url("emb"), on=["added"], type="embedding")
    )
    config = load_config(
        config_file(
            tmp_path, alerts, 'plausibility_factor = 5\nbase_url = "http://mw.example:8000"'
        )
    )
    db = tmp_path / "a.duckdb"
    before = [
        model("openai/gpt-4o", price=2.5),
        model("cheap-llm", price=1.0),
        model("no-tools", features="thinking", price=4.0),
        model("img", types="image_generation", price=8.0),
    ]
    after = [
        model("openai/gpt-4o", price=1.25),  # -50%: a cut with tools, an llm
        model("cheap-llm", price=0.95),  # -5%: below min_change_pct
        model("no-tools", features="thinking", price=1.0),  # no tools
        model("img", types="image_generation", price=4.0),  # not an llm
        model("embed\u202e-1\n", types="embedding"),  # added; catalog text is untrusted
    ]
    with Store.open(db) as store:
        ingest(store, catalog(*before), source="aihubmix", fetched_at=T0)
    assert [o.state for o in send_alerts(db, config).outcomes] == ["baseline"] * 3
    with Store.open(db) as store:
        ingest(store, catalog(*after), source="aihubmix", fetched_at=T0 + timedelta(hours=1))
        ingest(
            store,
            catalog(*[model("openai/gpt-4o", price=25.0)] + after[1:]),  # 20x: check this
            source="aihubmix",
            fetched_at=T0 + timedelta(hours=2),
        )
    run = send_alerts(db, config)
    assert [(o.alert, o.state, o.changes) for o in run.outcomes] == [
        ("llm-tools-cuts", "sent", "1 change"),
        ("checks", "sent", "2 changes"),
        ("embeddings", "sent", "1 change"),
    ]
    [cuts] = receiver.messages("cuts")
    assert cuts["body"]["title"] == "modelwatch: 1 change in aihubmix (llm-tools-cuts)"
    assert cuts["body"]["message"] == (
        "openai/gpt-4o: input price $2.50 → $1.25 per 1M tokens (-50.0%)\n"
        "  http://mw.example:8000/models/openai/gpt-4o?source=aihubmix"
    )
    [checks] = receiver.messages("checks")
    assert lines_of(checks) == [
        "openai/gpt-4o: input price $2.50 → $1.25 per 1M tokens (-50.0%)",
        "openai/gpt-4o: input price $1.25 → $25.00 per 1M tokens (+1900.0%) — check this",
    ]
    [emb] = receiver.messages("emb")
    assert lines_of(emb) == ["added embed\ufffd-1\ufffd"]  # no line break, no bidi override
    assert send_alerts(db, config).outcomes == []  # nothing new


def test_a_bad_filter_value_or_scheme_is_one_line_for_that_alert(tmp_path, receiver):
    alerts = (
        alert_toml("bad", receiver.url("bad"), features="teleportation")
        + alert_toml("scheme", "nosuch://127.0.0.1/x")
        + alert_toml("good", receiver.url("good"), on=["added"])
    )
    config = load_config(config_file(tmp_path, alerts))
    db = tmp_path / "a.duckdb"
    for hours, models in ((0, [model("a")]), (1, [model("a"), model("b")])):
        with Store.open(db) as s:
            ingest(s, catalog(*models), source="aihubmix", fetched_at=T0 + timedelta(hours=hours))
        run = send_alerts(db, config)
    bad, scheme, good = (o.line() for o in run.outcomes)
    assert bad.startswith("alert 'bad': features value 'teleportation' is not known; accepted: ")
    assert scheme.startswith("alert 'scheme': url scheme 'nosuch://' is not one Apprise knows")
    assert good == "alert 'good': sent 1 change"
    assert [m["path"] for m in receiver.posts] == ["/good"]


def test_failed_held_and_stale_come_from_the_fetch_log_once_per_outage(tmp_path, receiver):
    config = load_config(
        config_file(
            tmp_path,
            alert_toml("ops", receiver.url("ops"), on=["failed", "held", "stale"])
            + '[[sources]]\nname = "aihubmix"\nschedule = "*/5 * * * *"\n',
        )
    )
    db = tmp_path / "a.duckdb"
    three = catalog(model("a"), model("b"), model("c"))

    def fail(store: Store, at: datetime, error: str) -> None:
        store.record_attempt(
            IngestResult(source="aihubmix", fetched_at=at, outcome=Outcome.FAILED, error=error),
            FetchMeta(),
        )

    with Store.open(db) as store:
        ingest(store, three, source="aihubmix", fetched_at=T0)
    assert send_alerts(db, config, now=lambda: T0).outcomes[0].state == "baseline"
    with Store.open(db) as store:
        fail(store, T0 + timedelta(minutes=5), "HTTP 502 from upstream")
        fail(store, T0 + timedelta(minutes=10), "HTTP 503 from upstream")  # the same outage
        ingest(store, catalog(model("a")), source="aihubmix", fetched_at=T0 + timedelta(minutes=15))
        ingest(store, catalog(model("a")), source="aihubmix", fetched_at=T0 + timedelta(minutes=20))
    late = T0 + timedelta(minutes=50)  # 3 intervals after the last success: stale
    run = send_alerts(db, config, now=lambda: late)
    assert run.outcomes[0].changes == "1 failed fetch, 1 held snapshot, 1 stale source"
    [message] = receiver.messages("ops")
    assert message["body"]["title"] == (
        "modelwatch: 1 failed fetch, 1 held snapshot, 1 stale source in aihubmix (ops)"
    )
    shown = lines_of(message)
    assert shown[0] == "aihubmix: fetch failed at 2026-03-01T00:05:00Z: HTTP 502 from upstream"
    assert shown[1].startswith("aihubmix: snapshot held at 2026-03-01T00:15:00Z, not applied: ")
    assert shown[2] == (
        "aihubmix: stale, no successful fetch since 2026-03-01T00:00:00Z (scheduled every 5 min)"
    )
    assert send_alerts(db, config, now=lambda: late + timedelta(hours=1)).outcomes == []


def test_a_new_source_and_a_new_definition_are_baselines(tmp_path, receiver):
    db = tmp_path / "a.duckdb"
    path = config_file(tmp_path, alert_toml("added", receiver.url("added"), on=["added"]))
    with Store.open(db) as store:
        ingest(store, catalog(model("a")), source="aihubmix", fetched_at=T0)
    send_alerts(db, load_config(path))
    with Store.open(db) as store:  # a source seen for the first time: no `added` storm
        ingest(store, catalog(model("x")), source="other", kind="aihubmix", fetched_at=T0)
    assert send_alerts(db, load_config(path)).outcomes == [] and receiver.posts == []
    path.write_text(path.read_text().replace('["added"]', '["added", "removed"]'))
    with Store.open(db) as store:
        ingest(
            store, catalog(model("a"), model("b")), source="aihubmix", fetched_at=T0 + timedelta(1)
        )
    run = send_alerts(db, load_config(path))  # what it matches changed: a new baseline
    assert [o.state for o in run.outcomes] == ["baseline"] and receiver.posts == []


def test_a_busy_store_sends_nothing_and_the_next_run_sends_it(tmp_path, receiver):
    db = tmp_path / "a.duckdb"
    config = load_config(config_file(tmp_path, alert_toml("hook", receiver.url("hook"))))
    with Store.open(db) as store:
        ingest(store, catalog(model("a")), source="aihubmix", fetched_at=T0)
    send_alerts(db, config)
    with Store.open(db) as store:
        ingest(
            store, catalog(model("a"), model("b")), source="aihubmix", fetched_at=T0 + timedelta(1)
        )
    with db_lock(db):  # another writer holds the store
        busy = send_alerts(db, config, lock_timeout=0.2)
    assert busy.skipped and busy.lines()[0].startswith("alerts: nothing sent, the store is busy")
    assert receiver.posts == []
    assert [o.state for o in send_alerts(db, config).outcomes] == ["sent"]
    assert lines_of(receiver.posts[0]) == ["added b"]


# -- `alerts test`, `alerts list`, the flow, the notifier --------------------------------------
def test_alerts_test_sends_a_sample_and_says_when_it_cannot(tmp_path, receiver):
    alerts = alert_toml("form", receiver.url("form", scheme="form")) + alert_toml(
        "down", f"json://127.0.0.1:{free_port()}/x"
    )
    cfg = str(config_file(tmp_path, alerts))
    sent = run_cli("alerts", "test", "form", "--config", cfg)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == f"alert 'form': sample message sent to {receiver.url('form', 'form')}\n"
    [message] = receiver.messages("form")
    assert message["body"]["title"] == "modelwatch: test message (form)"
    assert (
        "openai/gpt-4o: input price $2.50 → $1.25 per 1M tokens (-50.0%)"
        in (message["body"]["message"])
    )
    down = run_cli("alerts", "test", "down", "--config", cfg)
    assert down.returncode == 1 and down.stderr.count("\n") == 1
    assert down.stderr.startswith("error: alert 'down': not delivered (A Connection error")
    unknown = run_cli("alerts", "test", "nope", "--config", cfg)
    assert unknown.returncode == 1
    assert unknown.stderr == "error: alert 'nope' is not configured; configured: form, down\n"


def test_alerts_list_shows_each_alert_with_its_counts(tmp_path, receiver, bundled):
    alerts = alert_toml("all", receiver.url("all/${MW_LIST_SECRET}")) + alert_toml(
        "cuts", receiver.url("cuts"), on=["price_cut"], source="aihubmix", min_change_pct=5
    )
    cfg = str(config_file(tmp_path, alerts))
    before = run_cli("alerts", "list", "--config", cfg)  # no store yet
    assert before.returncode == 0, before.stderr
    db = tmp_path / "a.duckdb"
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    send_alerts(db, load_config(Path(cfg)))
    with Store.open(db) as store:
        ingest(store, bundled[1][1], source="aihubmix", fetched_at=bundled[1][0])
    listed = run_cli("alerts", "list", "--config", cfg)
    assert listed.returncode == 0, listed.stderr
    rows = [[c.strip() for c in line.split("│")] for line in listed.stdout.splitlines()[2:]]
    with Store.open(db, read_only=True) as store:
        pending = len(expected_keys(store, bundled[0][0]))
        cuts = len(
            expected_keys(
                store,
                bundled[0][0],
                lambda r: (
                    r["field"] in PRICE_COLUMNS
                    and (r["new_number"] or 0) < (r["old_number"] or 0)
                    and abs(r["pct_change"]) >= 5
                ),
            )
        )
    assert rows == [
        ["all", receiver.url("all/${MW_LIST_SECRET}"), "all", "-", "never", str(pending), "0"],
        [
            "cuts",
            receiver.url("cuts"),
            "price_cut",
            "source=aihubmix min_change_pct=5",
            "never",
            str(cuts),
            "0",
        ],
    ]
    assert [line.split("│")[5].strip() for line in before.stdout.splitlines()[2:]] == ["-", "-"]


def test_the_flow_task_sends_the_alerts(tmp_path, receiver, bundled):
    cfg = config_file(tmp_path, alert_toml("hook", receiver.url("hook")))
    db = str(tmp_path / "a.duckdb")
    with Store.open(db) as store:
        ingest(store, bundled[0][1], source="aihubmix", fetched_at=bundled[0][0])
    assert flows.alerts_task.fn(db, str(cfg))[0]["state"] == "baseline"
    with Store.open(db) as store:
        ingest(store, bundled[1][1], source="aihubmix", fetched_at=bundled[1][0])
        count = len(expected_keys(store, bundled[0][0]))
    [outcome] = flows.alerts_task.fn(db, str(cfg))
    assert outcome == {
        "alert": "hook",
        "state": "sent",
        "changes": f"{count} changes",
        "line": f"alert 'hook': sent {count} changes",
    }
    assert len(receiver.messages("hook")) == 1


def test_the_notifier_masks_secrets_in_its_error_and_in_every_log_record(caplog):
    caplog.set_level(logging.DEBUG)
    port = free_port()
    error = notify.send(
        f"json://127.0.0.1:{port}/x/{SECRET}", title="t", body="b", secrets=[SECRET]
    )
    assert error is not None and error.startswith("not delivered (") and SECRET not in error
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"/x/{SECRET}" not in logged and "/x/[REDACTED]" in logged
    error = notify.send(f"slack://{SECRET}", title="t", body="b", secrets=[SECRET])
    assert error.startswith("Apprise cannot use this URL (Could not load Slack URL: ")
    assert SECRET not in error


def test_the_readme_sample_is_what_a_receiver_gets(tmp_path, receiver):
    """The README's sample message, produced as it says: its alert, the first bundled
    catalog replayed, then `replay --alerts` of the next two."""
    readme = (ROOT / "README.md").read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    example = example.replace("json://127.0.0.1:8765/hook/${HOOK_TOKEN}", receiver.url("hook"))
    cfg = tmp_path / "modelwatch.toml"
    cfg.write_text(example.replace("[defaults]\n", f'[defaults]\ndb = "{tmp_path / "a.db"}"\n'))
    first = folder(tmp_path, "first", HISTORY_FILES[:1])
    assert run_cli("replay", str(first), "--config", str(cfg), "--alerts").returncode == 0
    done = run_cli(
        "replay",
        str(folder(tmp_path, "next", HISTORY_FILES[1:3])),
        "--config",
        str(cfg),
        "--alerts",
    )
    assert done.returncode == 0, done.stderr
    [message] = receiver.messages("hook")
    sample = re.search(r"```text\n(.*?)\n```", readme, re.S).group(1)
    assert sample == f"{message['body']['title']}\n\n{message['body']['message']}"


def test_up_sends_the_alerts_after_each_snapshot(tmp_path, receiver, upstream, bundled):
    from pipeline.service import Schedule

    alerts = alert_toml("hook", receiver.url("hook"))
    cfg = config_file(tmp_path, f'{alerts}[[sources]]\nname = "aihubmix"\nurl = "{upstream.url}"\n')
    config = load_config(cfg)
    said: list[str] = []
    schedule = Schedule(tmp_path / "a.duckdb", config, on_alert=said.append)
    upstream.body = bundled[0][1]
    assert schedule.run_once(config.source("aihubmix")).outcome == Outcome.NEW
    upstream.body = bundled[1][1]
    assert schedule.run_once(config.source("aihubmix")).outcome == Outcome.NEW
    with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
        count = len(delivered(store, "hook"))
    assert count and said == [
        "alert 'hook': first run, nothing sent; it sends what is committed from now on",
        f"alert 'hook': sent {count} changes",
    ]
    assert len(receiver.messages("hook")) == 1
