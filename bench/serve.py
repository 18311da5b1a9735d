"""`python -m bench.serve`: the served mirror's throughput (issue 4, "Measure").

One uvicorn process (the settings of `modelwatch serve`: asyncio, `access_log=False`,
`log_level="warning"`) serves a bench-only Starlette app that mounts the modelwatch app at
`/` and adds two static routes holding the exact bytes and headers of a `/api/v1/models`
answer, fetched once at start:

    dynamic 200   GET /api/v1/models                       full body, a cache hit
    dynamic 304   GET /api/v1/models  If-None-Match: etag  the same, revalidated
    static 200    GET /static          the same bytes and headers as a plain `Response`
    static 304    GET /static-304      a plain 304 with the same headers

Each scenario is loaded in turn against the same server in the same run, by `wrk` when it
is on PATH (time-bounded by `-d`) or else by an async httpx loop (N clients for a fixed time
and at most a fixed number of requests). Ratios are against the static routes of the same
run; times are reported, never asserted. Cache misses (distinct parameters, one request at
a time) are measured after the load, against one-at-a-time cache hits.

The load generator runs on the same machine as the server: on a small machine the two share
the CPUs, so the server's CPU time per request (from /proc, Linux) is reported beside the
rates; it does not depend on how fast the client is. The handlers' own cost is also timed
in process (fake ASGI receive/send, no socket), with and without the bench's `Mount`.

    python -m bench.serve [--load auto|wrk|httpx|both] [--install-wrk] [--rounds 3]
                          [--duration 5] [--connections 32] [--profile] [--out DIR]

`--install-wrk` runs `apt-get install -y wrk` (Debian's package); nothing is installed
otherwise. `--profile` also runs a cProfiled server process under each scenario's load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import io
import json
import os
import pstats
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.report import percentile as _percentile
from bench.report import ratio as _ratio
from pipeline.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SOURCE = "aihubmix"
API = "/api/v1/models"
TARGET_RATIO = 0.8  # dynamic / static requests per second, for repeated requests
# (name, path, send If-None-Match, expected status, expects the full body)
SCENARIOS: tuple[tuple[str, str, bool, int, bool], ...] = (
    ("dynamic 200", API, False, 200, True),
    ("dynamic 304", API, True, 304, False),
    ("static 200", "/static", False, 200, True),
    ("static 304", "/static-304", True, 304, False),
)
MISS_FAMILIES = ("gpt", "claude", "gemini", "llama", "qwen", "deepseek", "glm", "grok")
START_TIMEOUT = 60.0  # s for the server to answer /healthz
STOP_TIMEOUT = 10.0  # s for it to exit after SIGTERM, before SIGKILL


# -- the database --------------------------------------------------------------------------
def build_db(path: Path, models: int, *, polls: int = 3, seed: int = 0) -> dict[str, Any]:
    """A fresh store of `polls` synthetic polls of `models` models; closed on return."""
    from bench.synthetic import catalog_history
    from pipeline.store import Store

    for p in (path, Path(f"{path}.wal")):
        if p.exists():
            p.unlink()
    started = time.perf_counter()
    last: datetime | None = None
    with Store.open(path) as store:
        for at, body in catalog_history(n_models=models, polls=polls, seed=seed):
            ingest(store, body, source=SOURCE, fetched_at=at, accept_mass_removal=True)
            last = at
    return {
        "path": str(path),
        "models": models,
        "polls": polls,
        "seed": seed,
        "last_poll": last,
        "seconds": time.perf_counter() - started,
    }


# -- the server (runs in a child process) --------------------------------------------------
def wrapper_app(db: str | Path, *, source: str = SOURCE) -> Any:
    """The modelwatch app mounted at `/`, plus `/static` and `/static-304`.

    The static routes answer the bytes and headers of one `GET /api/v1/models`, fetched
    once here through the mounted app (which also warms its body cache).
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    from pipeline.serve import create_app

    inner = create_app(Path(db), source=source)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=inner)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            return await client.get(API)

    first = asyncio.run(fetch())
    if first.status_code != 200:
        raise RuntimeError(f"GET {API} answered {first.status_code}: {first.text[:300]}")
    body = first.content
    media_type = first.headers["content-type"]
    headers = {"Cache-Control": first.headers["cache-control"], "ETag": first.headers["etag"]}

    async def static(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=headers)

    async def static_304(request: Request) -> Response:
        return Response(status_code=304, headers=headers)

    return Starlette(
        routes=[
            Route("/static", static, methods=["GET"]),
            Route("/static-304", static_304, methods=["GET"]),
            Mount("/", app=inner),
        ]
    )


def _serve(db: str, port_file: str, source: str = SOURCE, profile: str | None = None) -> None:
    """Child process: bind 127.0.0.1:0, write the port to `port_file`, serve until SIGTERM."""
    import uvicorn

    app = wrapper_app(db, source=source)
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the proto
    # says TCP (as with the sockets uvicorn binds itself); without it Nagle's algorithm and
    # delayed ACKs hold each response's body ~40 ms behind its headers
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections queue from now on, before uvicorn starts accepting
    tmp = Path(f"{port_file}.tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    os.replace(tmp, port_file)
    # uvicorn re-raises a captured SIGTERM once it has shut down: exit cleanly instead (and
    # write the profile), also when one comes before uvicorn has installed its handlers
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # the settings of `modelwatch serve` (pipeline.cli.serve)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    try:
        server.run(sockets=[sock])
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)  # type: ignore[arg-type]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`wrapper_app` under uvicorn in a child process; always stopped by `stop()`."""

    def __init__(
        self, db: Path, workdir: Path, *, source: str = SOURCE, profile: Path | None = None
    ):
        self.db = db
        self.workdir = workdir
        self.source = source
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path = workdir / "server.log"
        self.returncode: int | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        port_file = self.workdir / "server.port"
        port_file.unlink(missing_ok=True)
        code = (
            f"from bench.serve import _serve; _serve({str(self.db)!r}, {str(port_file)!r}, "
            f"{self.source!r}, {str(self.profile) if self.profile else None!r})"
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while self.port is None:
            self._check_alive()
            if port_file.exists():
                self.port = int(port_file.read_text())
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server wrote no port in {START_TIMEOUT:.0f} s" + self._log_tail()
                )
            time.sleep(0.05)
        while True:
            self._check_alive()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"/healthz did not answer in {START_TIMEOUT:.0f} s" + self._log_tail()
                )
            time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else _cpu_seconds(self.proc.pid)

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {self.proc.returncode}" + self._log_tail())

    def _log_tail(self) -> str:
        try:
            return ":\n" + self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM (uvicorn shuts down cleanly, a profile is written), then SIGKILL."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self.returncode = self.proc.returncode
        return self.returncode

    def __enter__(self) -> Server:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- load generators -----------------------------------------------------------------------


async def _httpx_load(
    url: str,
    headers: dict[str, str],
    *,
    status: int,
    length: int,
    duration: float,
    connections: int,
    max_requests: int,
    server_cpu: Callable[[], float | None],
) -> dict[str, Any]:
    """`connections` clients, each an `httpx.AsyncClient` with one keep-alive connection,
    sending requests back to back until `duration` s have passed or `max_requests` were
    sent in all, whichever comes first.

    One client per connection: a single client's pool of 32 connections costs the load
    generator several times more CPU per request (~3x fewer requests/s here).
    """
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sent = 0

    async def one(client: httpx.AsyncClient) -> None:
        t0 = time.perf_counter()
        try:
            response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            return
        elapsed = time.perf_counter() - t0
        statuses[response.status_code] += 1
        if response.status_code != status:
            errors[f"status {response.status_code}"] += 1
        elif len(response.content) != length:
            errors["wrong body length"] += 1
        else:
            latencies.append(elapsed)

    clients = [httpx.AsyncClient(limits=limits, timeout=10.0) for _ in range(connections)]
    try:
        # warm-up, untimed and uncounted: one request per client opens its connection
        await asyncio.wait_for(asyncio.gather(*(one(c) for c in clients)), timeout=30.0)
        latencies.clear()
        statuses.clear()
        errors.clear()
        stop_at = time.perf_counter() + duration

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < stop_at:
                sent += 1
                await one(client)

        cpu0, server0 = time.process_time(), server_cpu()
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker(c) for c in clients)), timeout=duration + 30.0
        )
        elapsed = time.perf_counter() - started
        client_cpu, server1 = time.process_time() - cpu0, server_cpu()
    finally:
        for client in clients:
            await client.aclose()
    return {
        "requests": sent,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else None,
        "p50_ms": _ms(_percentile(latencies, 50)),
        "p99_ms": _ms(_percentile(latencies, 99)),
        "client_cpu_s": client_cpu,
        "server_cpu_s": None if server0 is None or server1 is None else server1 - server0,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def parse_wrk(text: str) -> dict[str, Any]:
    """The figures of `wrk --latency` output (latencies in ms)."""
    out: dict[str, Any] = {"p50_ms": None, "p99_ms": None, "non_2xx_3xx": 0, "socket_errors": 0}
    for q, number, unit in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
        out[f"p{q}_ms"] = float(number) * _WRK_UNITS[unit]
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = float(m.group(2)) * _WRK_UNITS[m.group(3)] / 1000
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["wrk_rps"] = float(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non_2xx_3xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(g) for g in m.groups())
    return out


def wrk_version(wrk: str) -> str:
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (version unknown)"


def _wrk_load(
    wrk: str, url: str, headers: dict[str, str], *, duration: float, connections: int, threads: int
) -> dict[str, Any]:
    """`wrk -tT -cC -dDs --latency`; bounded by `-d` (whole seconds, at least 1)."""
    seconds = max(1, round(duration))
    argv = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} exited {proc.returncode}: {proc.stderr[-500:]}")
    parsed = parse_wrk(proc.stdout)
    errors = parsed["non_2xx_3xx"] + parsed["socket_errors"]
    requests = parsed.get("requests", 0)
    elapsed = parsed.get("seconds") or seconds
    return {
        "requests": requests,
        "ok": max(0, requests - errors),
        "errors": errors,
        "error_kinds": {"non 2xx/3xx": parsed["non_2xx_3xx"], "socket": parsed["socket_errors"]},
        "seconds": elapsed,
        "rps": max(0, requests - errors) / elapsed if elapsed else None,
        "wrk_rps": parsed["wrk_rps"],
        "p50_ms": parsed["p50_ms"],
        "p99_ms": parsed["p99_ms"],
        "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "argv": argv[:-1] + ["URL"],
    }


# -- measuring -----------------------------------------------------------------------------
def load(
    server: Server,
    generator: str,
    path: str,
    headers: dict[str, str],
    *,
    status: int,
    length: int,
    duration: float,
    connections: int,
    max_requests: int,
    wrk_threads: int = 2,
) -> dict[str, Any]:
    """One scenario: the load's figures plus the server's CPU time per answered request."""
    url = server.base + path
    if generator == "httpx":
        result = asyncio.run(
            _httpx_load(
                url,
                headers,
                status=status,
                length=length,
                duration=duration,
                connections=connections,
                max_requests=max_requests,
                server_cpu=server.cpu_seconds,
            )
        )
    else:
        wrk = shutil.which("wrk")
        if not wrk:
            raise RuntimeError("wrk is not on PATH")
        cpu0 = server.cpu_seconds()
        result = _wrk_load(
            wrk, url, headers, duration=duration, connections=connections, threads=wrk_threads
        )
        cpu1 = server.cpu_seconds()
        result["server_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    served = result["requests"]
    cpu = result["server_cpu_s"]
    per_request = cpu / served * 1e6 if cpu is not None and served else None
    result["server_cpu_us_per_request"] = per_request
    result["server_cpu_share"] = None if cpu is None else cpu / result["seconds"]
    result["client_cpu_share"] = result["client_cpu_s"] / result["seconds"]
    return result


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def measure(
    server: Server,
    generator: str,
    body: dict[str, Any],
    *,
    duration: float,
    connections: int,
    max_requests: int,
    rounds: int,
    wrk_threads: int,
) -> dict[str, Any]:
    """Every scenario, `rounds` times (the order rotated each round); medians per figure."""
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in SCENARIOS}
    # untimed warm-up of the first scenario (a first round ran slower without it)
    load(
        server,
        generator,
        API,
        {},
        status=200,
        length=body["bytes"],
        duration=min(1.0, duration),
        connections=connections,
        max_requests=max_requests,
        wrk_threads=wrk_threads,
    )
    for r in range(rounds):
        order = SCENARIOS[r % len(SCENARIOS) :] + SCENARIOS[: r % len(SCENARIOS)]
        for name, path, conditional, status, full in order:
            headers = {"If-None-Match": body["etag"]} if conditional else {}
            per_round[name].append(
                load(
                    server,
                    generator,
                    path,
                    headers,
                    status=status,
                    length=body["bytes"] if full else 0,
                    duration=duration,
                    connections=connections,
                    max_requests=max_requests,
                    wrk_threads=wrk_threads,
                )
            )
    scenarios: dict[str, Any] = {}
    for name, path, conditional, status, _ in SCENARIOS:
        runs = per_round[name]
        scenarios[name] = {
            "path": path,
            "if_none_match": conditional,
            "status": status,
            **{
                k: _median([run[k] for run in runs])
                for k in (
                    "rps",
                    "p50_ms",
                    "p99_ms",
                    "server_cpu_us_per_request",
                    "server_cpu_share",
                    "client_cpu_share",
                )
            },
            "requests": sum(run["requests"] for run in runs),
            "errors": sum(run["errors"] for run in runs),
            "rounds": runs,
        }
    s = {name: scenarios[name] for name in scenarios}

    def ratio(a: str, b: str, key: str = "rps") -> float | None:
        return _ratio(s[a][key], s[b][key])

    ratios = {
        "dynamic_vs_static_rps": ratio("dynamic 200", "static 200"),
        "dynamic_304_vs_static_rps": ratio("dynamic 304", "static 200"),
        "dynamic_304_vs_static_304_rps": ratio("dynamic 304", "static 304"),
        "dynamic_vs_static_cpu_per_request": ratio(
            "dynamic 200", "static 200", "server_cpu_us_per_request"
        ),
        "dynamic_304_vs_static_304_cpu_per_request": ratio(
            "dynamic 304", "static 304", "server_cpu_us_per_request"
        ),
    }
    return {"generator": generator, "scenarios": scenarios, "ratios": ratios}


async def _sequential(base: str, paths: Sequence[str]) -> list[dict[str, Any]]:
    """One request at a time on one connection: latency (ms) and status of each path."""
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        await client.get("/healthz")  # open the connection
        for path in paths:
            t0 = time.perf_counter()
            response = await client.get(path)
            out.append(
                {
                    "path": path,
                    "ms": (time.perf_counter() - t0) * 1000,
                    "status": response.status_code,
                    "bytes": len(response.content),
                }
            )
    return out


def measure_misses(server: Server, last_poll: datetime | None, hits: int = 20) -> dict[str, Any]:
    """Cache misses (distinct parameters) against cache hits, one request at a time."""
    filtered = [f"{API}?type=llm&sort_by=model_ratio&model={family}" for family in MISS_FAMILIES]
    at = (last_poll or datetime(2025, 1, 1)).replace(tzinfo=UTC)
    # distinct instants after the last poll: the full catalog, each a new cache key
    full = [
        f"{API}?as_of={(at + timedelta(seconds=i + 1)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for i in range(5)
    ]
    hit_runs = asyncio.run(_sequential(server.base, [API] * hits))
    filtered_runs = asyncio.run(_sequential(server.base, filtered))
    full_runs = asyncio.run(_sequential(server.base, full))
    again = asyncio.run(_sequential(server.base, full))  # the same keys again: now hits

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        ms = [r["ms"] for r in runs]
        return {
            "count": len(ms),
            "median_ms": statistics.median(ms),
            "max_ms": max(ms),
            "statuses": sorted({r["status"] for r in runs}),
            "bytes_median": statistics.median(r["bytes"] for r in runs),
        }

    result = {
        "hit": summary(hit_runs),
        "miss_filtered": summary(filtered_runs),
        "miss_full": summary(full_runs),
        "hit_again_full": summary(again),
        "filtered_example": filtered[0],
        "full_example": full[0],
    }
    result["ratios"] = {
        "miss_filtered_vs_hit": _ratio(
            result["miss_filtered"]["median_ms"], result["hit"]["median_ms"]
        ),
        "miss_full_vs_hit": _ratio(result["miss_full"]["median_ms"], result["hit"]["median_ms"]),
    }
    return result


def profile_server(
    db: Path,
    workdir: Path,
    body: dict[str, Any],
    generator: str,
    *,
    duration: float,
    connections: int,
    max_requests: int,
    names: Sequence[str] = ("dynamic 304", "static 304", "dynamic 200"),
    top: int = 30,
) -> dict[str, str]:
    """cProfile of a fresh server process under each named scenario's load."""
    out = {}
    for name, path, conditional, status, full in SCENARIOS:
        if name not in names:
            continue
        stats_path = workdir / f"profile-{name.replace(' ', '-')}.pstats"
        server = Server(db, workdir, profile=stats_path)
        try:
            server.start()
            load(
                server,
                generator,
                path,
                {"If-None-Match": body["etag"]} if conditional else {},
                status=status,
                length=body["bytes"] if full else 0,
                duration=duration,
                connections=connections,
                max_requests=max_requests,
            )
        finally:
            server.stop()
        text = io.StringIO()
        pstats.Stats(str(stats_path), stream=text).sort_stats("tottime").print_stats(top)
        out[name] = text.getvalue()
    return out


def asgi_costs(db: Path, etag: str, *, calls: int = 2000) -> dict[str, Any]:
    """Microseconds per call of the ASGI apps alone (no socket, no HTTP parsing): what the
    handlers cost, through the bench's mount and (for the modelwatch routes) without it."""
    outer = wrapper_app(db)
    inner = outer.routes[-1].app  # the mounted modelwatch app, as `modelwatch serve` runs it
    cases = {
        "dynamic 200 (via mount)": (outer, API, None, 200),
        "dynamic 200 (app alone)": (inner, API, None, 200),
        "static 200": (outer, "/static", None, 200),
        "dynamic 304 (via mount)": (outer, API, etag, 304),
        "dynamic 304 (app alone)": (inner, API, etag, 304),
        "static 304": (outer, "/static-304", etag, 304),
    }

    async def time_case(app: Any, path: str, inm: str | None, status: int) -> float:
        headers = [(b"host", b"127.0.0.1"), (b"accept", b"*/*")]
        if inm:
            headers.append((b"if-none-match", inm.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        seen: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.append(message["status"])

        for _ in range(50):  # warm-up
            await app(dict(scope), receive, send)
        seen.clear()
        t0 = time.perf_counter()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        elapsed = time.perf_counter() - t0
        if set(seen) != {status}:
            raise RuntimeError(f"{path}: statuses {sorted(set(seen))}, expected {status}")
        return elapsed / calls * 1e6

    async def all_cases() -> dict[str, float]:
        return {name: await time_case(*case) for name, case in cases.items()}

    return {"calls": calls, "us_per_call": asyncio.run(all_cases())}


# -- the run -------------------------------------------------------------------------------
def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    import importlib.util

    return {
        **report.machine(),
        "uvicorn": _version("uvicorn"),
        "starlette": _version("starlette"),
        "httpx": _version("httpx"),
        "h11": _version("h11"),
        # what uvicorn's "auto" picks
        "uvicorn_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


def install_wrk() -> str | None:
    """`apt-get install -y wrk` (Debian's package), after `apt-get update` if needed."""
    if shutil.which("wrk"):
        return shutil.which("wrk")
    apt = shutil.which("apt-get")
    if not apt:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if (
        subprocess.run(
            [apt, "install", "-y", "wrk"], env=env, capture_output=True, timeout=600
        ).returncode
        != 0
    ):
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600)
        subprocess.run([apt, "install", "-y", "wrk"], env=env, capture_output=True, timeout=600)
    return shutil.which("wrk")


def run(
    *,
    workdir: Path,
    models: int = 1000,
    duration: float = 5.0,
    connections: int = 32,
    max_requests: int = 200_000,
    use_wrk: bool | None = None,
    generators: Sequence[str] | None = None,
    rounds: int = 1,
    wrk_threads: int = 2,
    misses: bool = True,
    asgi: bool = True,
    profile: bool = False,
) -> dict[str, Any]:
    """Build the store, start the server, load every scenario, stop the server.

    `use_wrk`: None picks wrk when it is on PATH, else the httpx loop; `generators` (e.g.
    `("wrk", "httpx")`) overrides it, each measured against the same server. The first
    generator's figures are the headline (`scenarios`, `ratios`, `met`, `rows`).
    """
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    if generators is None:
        if use_wrk is None:
            use_wrk = shutil.which("wrk") is not None
        generators = ("wrk",) if use_wrk else ("httpx",)
    generators = tuple(generators)
    if "wrk" in generators and not shutil.which("wrk"):
        raise RuntimeError("wrk is not on PATH (python -m bench.serve --install-wrk)")
    config = {
        "models": models,
        "duration": duration,
        "connections": connections,
        "max_requests": max_requests,
        "generators": list(generators),
        "rounds": rounds,
        "wrk_threads": wrk_threads,
        "polls": 3,
        "seed": 0,
    }
    db = build_db(workdir / "serve.duckdb", models)
    result: dict[str, Any] = {"config": config, "machine": machine(), "db": db}
    if "wrk" in generators:
        result["machine"]["wrk"] = wrk_version(shutil.which("wrk") or "wrk")
    server = Server(Path(db["path"]), workdir)
    try:
        server.start()
        result["server"] = {"pid": server.proc.pid if server.proc else None, "port": server.port}
        with httpx.Client(base_url=server.base, timeout=30.0) as client:
            dynamic = client.get(API)
            static = client.get("/static")
            revalidated = client.get(API, headers={"If-None-Match": dynamic.headers["etag"]})
        same = {
            k: dynamic.headers.get(k) == static.headers.get(k)
            for k in ("content-type", "content-length", "etag", "cache-control")
        }
        body = {
            "bytes": len(dynamic.content),
            "etag": dynamic.headers["etag"],
            "models": len(json.loads(dynamic.content)["data"]),
            "same_bytes_as_static": dynamic.content == static.content,
            "same_headers_as_static": same,
            "revalidated_status": revalidated.status_code,
        }
        if not (
            body["same_bytes_as_static"]
            and all(same.values())
            and dynamic.status_code == static.status_code == 200
            and revalidated.status_code == 304
        ):
            raise RuntimeError(f"static and dynamic answers differ: {body}")
        result["body"] = body
        result["runs"] = {
            g: measure(
                server,
                g,
                body,
                duration=duration,
                connections=connections,
                max_requests=max_requests,
                rounds=rounds,
                wrk_threads=wrk_threads,
            )
            for g in generators
        }
        if misses:
            result["misses"] = measure_misses(server, db["last_poll"])
    finally:
        server.stop()
    result["server"] = {**result.get("server", {}), "returncode": server.returncode}
    if asgi:
        result["asgi"] = asgi_costs(Path(db["path"]), result["body"]["etag"])
    if profile:
        result["profile"] = profile_server(
            Path(db["path"]),
            workdir,
            result["body"],
            generators[0],
            duration=duration,
            connections=connections,
            max_requests=max_requests,
        )
    head = result["runs"][generators[0]]
    result["scenarios"] = head["scenarios"]
    result["ratios"] = head["ratios"]
    ratio = head["ratios"]["dynamic_vs_static_rps"]
    result["met"] = {"dynamic_vs_static_rps": None if ratio is None else ratio >= TARGET_RATIO}
    result["rows"] = rows(result)
    result["elapsed_seconds"] = time.perf_counter() - started
    return result


# -- printing ------------------------------------------------------------------------------
def _row(
    figure: str,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    met: bool | None = None,
) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": _ratio(value, baseline),
        "target": target,
        "met": met,
    }


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    models = result["body"]["models"]
    for generator, measured in result["runs"].items():
        s = measured["scenarios"]
        static = s["static 200"]["rps"]
        ratio = measured["ratios"]["dynamic_vs_static_rps"]
        out += [
            _row(
                f"[{generator}] full {models}-model body, repeated (cache hit)",
                s["dynamic 200"]["rps"],
                "req/s",
                static,
                "/static, same bytes",
                f">= {TARGET_RATIO:g}x",
                None if ratio is None else ratio >= TARGET_RATIO,
            ),
            _row(
                f"[{generator}] 304 (If-None-Match: its ETag)",
                s["dynamic 304"]["rps"],
                "req/s",
                static,
                "/static, same bytes",
            ),
            _row(
                f"[{generator}] 304 vs a static 304",
                s["dynamic 304"]["rps"],
                "req/s",
                s["static 304"]["rps"],
                "/static-304",
            ),
            _row(
                f"[{generator}] server CPU per full body",
                s["dynamic 200"]["server_cpu_us_per_request"],
                "us/req",
                s["static 200"]["server_cpu_us_per_request"],
                "/static",
            ),
            _row(
                f"[{generator}] server CPU per 304",
                s["dynamic 304"]["server_cpu_us_per_request"],
                "us/req",
                s["static 304"]["server_cpu_us_per_request"],
                "/static-304",
            ),
        ]
    if "asgi" in result:
        us = result["asgi"]["us_per_call"]
        for status in (200, 304):
            static = us[f"static {status}"]
            for how in ("app alone", "via mount"):
                out.append(
                    _row(
                        f"[ASGI, no socket] dynamic {status} handler ({how})",
                        us[f"dynamic {status} ({how})"],
                        "us/call",
                        static,
                        f"static {status}",
                    )
                )
    if "misses" in result:
        m = result["misses"]
        hit = m["hit"]["median_ms"]
        out += [
            _row(
                "cache miss, filtered+sorted (distinct model=), median",
                m["miss_filtered"]["median_ms"],
                "ms",
                hit,
                "cache hit, full body, one at a time",
            ),
            _row(
                "cache miss, full body (distinct as_of), median",
                m["miss_full"]["median_ms"],
                "ms",
                hit,
                "cache hit, full body, one at a time",
            ),
        ]
    return out


def table(rows_: list[dict[str, Any]]) -> str:
    return report.table(rows_)


def scenario_table(result: dict[str, Any]) -> str:
    lines = [
        "| load | scenario | requests | errors | req/s | p50 | p99 | server CPU/req "
        "| server CPU | client CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    for generator, measured in result["runs"].items():
        for name, s in measured["scenarios"].items():
            lines.append(
                f"| {generator} | {name} `{s['path']}` | {s['requests']:,} | {s['errors']} "
                f"| {f(s['rps'], ',.0f')} | {f(s['p50_ms'], '.2f')} ms "
                f"| {f(s['p99_ms'], '.2f')} ms | {f(s['server_cpu_us_per_request'], ',.0f')} us "
                f"| {f(s['server_cpu_share'], '.0%')} | {f(s['client_cpu_share'], '.0%')} |"
            )
    return "\n".join(lines)


def generator_line(result: dict[str, Any]) -> str:
    c = result["config"]
    parts = []
    for g in c["generators"]:
        if g == "wrk":
            threads = min(c["wrk_threads"], c["connections"])
            parts.append(
                f"{result['machine'].get('wrk', 'wrk')} (`wrk -t{threads} "
                f"-c{c['connections']} -d{max(1, round(c['duration']))}s --latency`)"
            )
        else:
            parts.append(
                f"an async httpx loop ({c['connections']} clients of one keep-alive "
                f"connection each, {c['duration']:g} s or {c['max_requests']:,} "
                "requests, whichever comes first, after one untimed request each)"
            )
    return (
        "Load: " + "; then ".join(parts) + f", {c['rounds']} round(s) per scenario "
        "(medians), on the same machine as the server."
    )


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    body = result["body"]
    parts = [
        "# Serve benchmark",
        (
            f"Synthetic store: {result['db']['models']} models x {result['db']['polls']} polls "
            f"(built in {result['db']['seconds']:.1f} s). `GET {API}` answers "
            f"{body['models']} models in {body['bytes'] / 1024:,.1f} KiB; `/static` holds the "
            f"same bytes and headers (checked: {body['same_bytes_as_static']}), served by the "
            "same uvicorn process."
        ),
        table(result["rows"]),
        scenario_table(result),
        (
            f"{report.machine_line(m)[:-1]}; uvicorn {m['uvicorn']} "
            f"(loop {m['uvicorn_loop']}, http {m['uvicorn_http']}), "
            f"starlette {m['starlette']}, httpx {m['httpx']}. Run took "
            f"{result['elapsed_seconds']:.0f} s."
        ),
        generator_line(result),
        (
            "Ratios are against the static routes of the same server in the same run; times "
            "are never asserted. Server CPU is user+system time of the server process "
            "(/proc) per answered request; CPU shares are of one CPU over the load's wall time. "
            "`[ASGI, no socket]` rows call the apps in process with a fake receive/send "
            f"({result['asgi']['calls']:,} calls each): the handlers' own cost, through the "
            "bench's `Mount` and without it (as `modelwatch serve` runs the app)."
            if "asgi" in result
            else "Ratios are against the static routes of the same server in the same run; times "
            "are never asserted. Server CPU is user+system time of the server process "
            "(/proc) per answered request; CPU shares are of one CPU over the load's wall time."
        ),
    ]
    if "misses" in result:
        mm = result["misses"]
        parts.append(
            f"Cache misses, one request at a time: {mm['miss_filtered']['count']} distinct "
            f"filtered queries (e.g. `{mm['filtered_example']}`) took "
            f"{mm['miss_filtered']['median_ms']:.1f} ms median "
            f"({mm['miss_filtered']['max_ms']:.1f} ms max); {mm['miss_full']['count']} "
            f"full-body misses (distinct `as_of`, e.g. `{mm['full_example']}`) "
            f"{mm['miss_full']['median_ms']:.1f} ms median, and "
            f"{mm['hit_again_full']['median_ms']:.2f} ms when repeated; a cache hit of the "
            f"full body {mm['hit']['median_ms']:.2f} ms median."
        )
    for name, text in result.get("profile", {}).items():
        parts.append(
            f"## cProfile of the server under `{name}` load (tottime)\n\n```\n"
            + text.strip()
            + "\n```"
        )
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5.0, help="s per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--max-requests", type=int, default=200_000, help="per scenario (httpx loop)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every scenario (medians are reported)"
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "httpx", "both"),
        default="auto",
        help="load generator: auto = wrk if on PATH, else httpx",
    )
    parser.add_argument(
        "--install-wrk",
        action="store_true",
        help="apt-get install -y wrk first (never done by default)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile a server process under each 200 scenario's load",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the store goes (default: a temp folder)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = parser.parse_args(argv)
    if args.install_wrk and not install_wrk():
        print("could not install wrk; using the httpx loop", file=sys.stderr)
    generators = {"auto": None, "wrk": ("wrk",), "httpx": ("httpx",), "both": ("wrk", "httpx")}[
        args.load
    ]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-serve-") as tmp:
        result = run(
            workdir=args.workdir or Path(tmp),
            models=args.models,
            duration=args.duration,
            connections=args.connections,
            max_requests=args.max_requests,
            generators=generators,
            rounds=args.rounds,
            wrk_threads=args.wrk_threads,
            profile=args.profile,
        )
    text = markdown(result)
    print(text)
    json_path, md_path = report.write(args.out, "serve", result, text)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
