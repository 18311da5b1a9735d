"""`modelwatch serve` as a newcomer meets it: the real port is announced once it listens,
a port in use is one line, `/healthz` tells the truth, no parameter is silently ignored."""

import json
import shutil
import signal
import socket
import subprocess
from datetime import datetime, timedelta

import httpx
import pytest

from pipeline.config import load_config
from pipeline.ingest import ingest
from pipeline.serve import create_app
from pipeline.store import Store
from tests.test_serve import _asgi
from tests.upstream import launch


@pytest.fixture(scope="module")
def history_db(tmp_path_factory, bundled):
    path = tmp_path_factory.mktemp("contact") / "catalog.duckdb"
    with Store.open(path) as store:
        for at, payload in bundled[:5]:
            ingest(store, payload, source="aihubmix", fetched_at=at)
    return path


def test_port_0_announces_the_real_port_after_it_listens(history_db, tmp_path):
    proc, base = launch("serve", "--port", "0", "--db", str(history_db), cwd=tmp_path)
    try:
        port = int(base.rsplit(":", 1)[1])
        assert port != 0
        deadline = datetime.now() + timedelta(seconds=20)
        while True:  # announced once bound: the connection queues until uvicorn serves
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=5)
                break
            except httpx.TransportError:
                assert datetime.now() < deadline
        assert answer.status_code == 200 and answer.json()["success"] is True
        assert "server" not in answer.headers
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) is not None


def test_a_port_in_use_is_one_line_and_exit_1(history_db, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            ["modelwatch", "serve", "--port", str(port), "--db", str(history_db)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert done.stderr.count("\n") == 1 and "serving" not in done.stderr


def test_healthz_is_503_with_the_reason_for_a_missing_or_corrupt_store(tmp_path):
    missing = _asgi(create_app(tmp_path / "nothing.duckdb")).get("/healthz")
    assert missing.status_code == 503
    assert missing.json() == {"status": "unhealthy", "problems": ["the store cannot be read"]}
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(b"not a database at all" * 1000)
    broken = _asgi(create_app(corrupt)).get("/healthz")
    assert broken.status_code == 503 and broken.json()["status"] == "unhealthy"


def test_healthz_reports_stale_configured_sources(history_db, tmp_path):
    client = _asgi(create_app(history_db))
    assert client.get("/healthz").json() == {"status": "ok"}  # no config: readability only
    (tmp_path / "modelwatch.toml").write_text('[[sources]]\nname = "aihubmix"\n')
    config = load_config(tmp_path / "modelwatch.toml")
    answer = _asgi(create_app(history_db, config=config)).get("/healthz")
    assert answer.status_code == 503  # the bundled history stopped months ago
    assert answer.json()["problems"] == ["source aihubmix is stale"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/models?sortby=order",
        "/api/v1/models?limit=5",
        "/v1/models?as_of=garbage",
        "/v1/models?source=aihubmix",
        "/v1/models/gpt-4o?x=1",
    ],
)
def test_a_parameter_a_route_does_not_take_is_a_400(history_db, url):
    answer = _asgi(create_app(history_db)).get(url)
    assert answer.status_code == 400
    text = json.dumps(answer.json())
    assert "not supported" in text


def test_tokens_are_checked_revocable_and_an_unknown_one_is_called_unknown(history_db, tmp_path):
    from tests.conftest import run_cli

    db = tmp_path / "tokens.duckdb"
    shutil.copy(history_db, db)
    bad_model = run_cli("tokens", "add", "a", "--models", "no-such-model", "--db", str(db))
    assert bad_model.returncode == 1 and "'no-such-model' was never in a stored catalog" in (
        bad_model.stderr
    )
    bad_group = run_cli("tokens", "add", "b", "--group", "nosuchgroup", "--db", str(db))
    assert bad_group.returncode == 1
    assert "--group 'nosuchgroup' is not a stored source; accepted: default, aihubmix" in (
        bad_group.stderr
    )
    made = run_cli("tokens", "add", "c", "--group", "default", "--db", str(db))
    token = made.stdout.strip()
    client = _asgi(create_app(db))
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    short = client.get("/v1/models", headers={"Authorization": "Bearer abc"})
    assert short.status_code == 401 and "Incorrect API key" in short.json()["error"]["message"]
    assert run_cli("tokens", "revoke", "c", "--db", str(db)).returncode == 0
    client = _asgi(create_app(db))
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again = run_cli("tokens", "revoke", "c", "--db", str(db))
    assert again.returncode == 1 and "no token named 'c'" in again.stderr
