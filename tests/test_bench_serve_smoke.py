"""Smoke test of the serve benchmark: a tiny store, a short httpx load, sane figures.

No timing asserts: only that every scenario answered, with positive and finite rates, and
that the server process was stopped.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import positive as _positive

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `bench` is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import serve as bench_serve  # noqa: E402

WRK_SAMPLE = """\
Running 5s test @ http://127.0.0.1:8000/static
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    11.20ms    5.02ms  80.66ms   85.00%
    Req/Sec     1.42k   150.00     1.80k    70.00%
  Latency Distribution
     50%   10.83ms
     75%   12.00ms
     90%   15.00ms
     99%  804.00us
  14145 requests in 5.01s, 6.28GB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2823.35
Transfer/sec:      1.25GB
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("bench-serve")
    return bench_serve.run(
        workdir=workdir, models=20, duration=0.5, connections=4, max_requests=300, use_wrk=False
    )


def test_every_scenario_answers(result: dict) -> None:
    assert result["config"]["generators"] == ["httpx"]
    assert set(result["scenarios"]) == {name for name, *_ in bench_serve.SCENARIOS}
    for name, s in result["scenarios"].items():
        assert _positive(s["rps"]), name
        assert s["errors"] == 0, (name, s["rounds"][0]["error_kinds"])
        assert 0 < s["requests"] <= 300, name  # bounded by max_requests
        assert _positive(s["p50_ms"]) and _positive(s["p99_ms"]), name
    for key in (
        "dynamic_vs_static_rps",
        "dynamic_304_vs_static_rps",
        "dynamic_304_vs_static_304_rps",
    ):
        assert _positive(result["ratios"][key]), key
    assert isinstance(result["met"]["dynamic_vs_static_rps"], bool)


def test_static_route_serves_the_same_answer(result: dict) -> None:
    body = result["body"]
    assert body["models"] == 20
    assert body["same_bytes_as_static"] is True
    assert all(body["same_headers_as_static"].values()), body["same_headers_as_static"]
    assert body["revalidated_status"] == 304


def test_misses_and_handler_costs_are_measured(result: dict) -> None:
    misses = result["misses"]
    for key in ("hit", "miss_filtered", "miss_full", "hit_again_full"):
        assert misses[key]["statuses"] == [200], key
        assert _positive(misses[key]["median_ms"]), key
    assert all(_positive(v) for v in result["asgi"]["us_per_call"].values())


def test_server_was_stopped(result: dict) -> None:
    assert result["server"]["returncode"] is not None
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(1.0)
        sock.connect(("127.0.0.1", result["server"]["port"]))


def test_report_is_written_as_json_and_markdown(result: dict) -> None:
    json.dumps(result, default=str)  # what `python -m bench.serve` writes to serve.json
    text = bench_serve.markdown(result)
    assert "| figure |" in text and "httpx loop" in text and "Machine:" in text


def test_server_stops_when_the_load_fails(tmp_path: Path) -> None:
    db = bench_serve.build_db(tmp_path / "s.duckdb", 5)
    server = bench_serve.Server(Path(db["path"]), tmp_path)
    with pytest.raises(RuntimeError), server:
        raise RuntimeError("the load failed")
    assert server.returncode is not None


def test_parse_wrk() -> None:
    parsed = bench_serve.parse_wrk(WRK_SAMPLE)
    assert parsed["requests"] == 14145
    assert parsed["seconds"] == pytest.approx(5.01)
    assert parsed["wrk_rps"] == pytest.approx(2823.35)
    assert parsed["p50_ms"] == pytest.approx(10.83)
    assert parsed["p99_ms"] == pytest.approx(0.804)
    assert parsed["non_2xx_3xx"] == 3
    assert parsed["socket_errors"] == 3
