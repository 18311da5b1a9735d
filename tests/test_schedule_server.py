"""One end-to-end run of `modelwatch schedule` against a real `prefect server` on
127.0.0.1: a scheduled run fires, fetches from a local upstream, and writes the history.
Slow by nature (the server takes 15-25 s to start on 2 cores), so it is the only one."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from pipeline.store import Store
from tests.conftest import ROOT
from tests.upstream import Upstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, *, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: a process exited early:\n{p.stdout.read()}")
        time.sleep(0.5)
    detail = "\n".join(p.stdout.read() if p.poll() is not None else "" for p in procs)
    raise AssertionError(f"timed out waiting for {what}\n{detail}")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
def test_a_scheduled_run_fires_against_a_real_prefect_server(tmp_path, bundled):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_UI_ENABLED": "false",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    scheduler = None
    try:

        def healthy():
            try:
                return httpx.get(f"{api}/health", timeout=10).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=240, what="prefect server", procs=[server])
        with Upstream() as upstream:
            upstream.body = bundled[0][1]
            upstream.cache_control = "no-cache"
            cfg = tmp_path / "modelwatch.toml"
            db = tmp_path / "scheduled.duckdb"
            cfg.write_text(
                f'[defaults]\ndb = "{db}"\n\n[[sources]]\nname = "aihubmix"\n'
                f'url = "{upstream.url}"\n'
            )
            scheduler = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from pipeline.cli import main; main()",
                    "schedule",
                    "--config",
                    str(cfg),
                    "--every",
                    "5",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=ROOT,
            )
            wait_for(
                lambda: len(upstream.requests) >= 1,
                timeout=120,
                what="a scheduled run to fetch",
                procs=[server, scheduler],
            )
            # let that run finish writing before stopping the runner
            done_filter = {
                "flows": {"name": {"any_": ["snapshot-catalog"]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                "limit": 5,
            }

            def completed():
                try:  # a loaded machine answers slowly: a slow answer is not a failure
                    r = httpx.post(f"{api}/flow_runs/filter", json=done_filter, timeout=30)
                except httpx.TransportError:
                    return False
                return r.status_code == 200 and len(r.json()) >= 1

            wait_for(
                completed, timeout=180, what="a completed snapshot run", procs=[server, scheduler]
            )
            stop(scheduler)
        with Store.open(db, read_only=True) as store:
            outcomes = [
                r[0] for r in store.execute("SELECT outcome FROM fetch_log ORDER BY fetch_id")
            ]
        assert outcomes[0] == "new"
        r = httpx.post(f"{api}/deployments/filter", json={}, timeout=60)
        names = sorted(d["name"] for d in r.json())
        assert names == ["check-staleness", "snapshot-aihubmix"]
    finally:
        if scheduler is not None:
            stop(scheduler)
        stop(server)
