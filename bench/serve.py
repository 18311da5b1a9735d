"""The serve bench (issue 4): the served mirror's throughput against static bytes.

One uvicorn process (the settings of `modelwatch serve`) serves the modelwatch app mounted
at `/`, beside two static routes holding the exact bytes and headers of its
`/api/v1/models` answer. Four scenarios (`SCENARIOS`: the full body and its 304, each
dynamic and static) are loaded in turn by `wrk` when it is on PATH, else by the bench's
own client (an async httpx loop); `load: wrk` without wrk skips the bench and says why.
Nothing is installed. Then cache misses against hits, one request at a time, and the
handlers' own cost in process (fake ASGI receive/send, no socket). The server's CPU time
per request (/proc) is reported beside the rates: the client shares the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import ROOT, SOURCE, Log, Result
from bench import measure as m
from bench.ingest import measure_store
from bench.report import prefixed, row
from bench.synthetic import catalog_history

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
NO_WRK = "wrk is not on PATH"


# -- the database --------------------------------------------------------------------------
def build_db(path: Path, models: int, *, polls: int = 3) -> dict[str, Any]:
    """A fresh store of `polls` synthetic polls of `models` models; closed on return."""
    history = list(catalog_history(n_models=models, polls=polls))
    store = measure_store(history, path, accept_mass_removal=True)
    last = history[-1][0]
    return {"path": str(path), "models": models, "polls": polls, "last_poll": last, **store}


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


def _serve(db: str, port_file: str) -> None:
    """Child process: bind 127.0.0.1:0, write the port to `port_file`, serve until SIGTERM."""
    import uvicorn

    app = wrapper_app(db)
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
    # uvicorn re-raises a captured SIGTERM once it has shut down: exit cleanly instead,
    # also when one comes before uvicorn has installed its handlers
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # the settings of `modelwatch serve` (pipeline.cli.serve)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


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

    def __init__(self, db: Path, workdir: Path):
        self.db = db
        self.workdir = workdir
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
        code = f"from bench.serve import _serve; _serve({str(self.db)!r}, {str(port_file)!r})"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}" + self._tail())
            if self.port is None and port_file.exists():
                self.port = int(port_file.read_text())
            if self.port is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.base}/healthz", timeout=2.0).status_code == 200:
                        return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer on /healthz in {START_TIMEOUT:.0f} s" + self._tail())
            time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else _cpu_seconds(self.proc.pid)

    def _tail(self) -> str:
        try:
            return ":\n" + self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM (uvicorn shuts down cleanly), then SIGKILL."""
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
    url: str, headers: dict[str, str], status: int, length: int, c: dict[str, Any], server: Server
) -> dict[str, Any]:
    """`c["connections"]` clients, each an `httpx.AsyncClient` with one keep-alive connection,
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
        elapsed = (time.perf_counter() - t0) * 1000
        statuses[response.status_code] += 1
        if response.status_code != status:
            errors[f"status {response.status_code}"] += 1
        elif len(response.content) != length:
            errors["wrong body length"] += 1
        else:
            latencies.append(elapsed)

    clients = [httpx.AsyncClient(limits=limits, timeout=10.0) for _ in range(c["connections"])]
    try:
        # warm-up, untimed and uncounted: one request per client opens its connection
        await asyncio.wait_for(asyncio.gather(*(one(client) for client in clients)), timeout=30.0)
        latencies.clear()
        statuses.clear()
        errors.clear()
        stop_at = time.perf_counter() + c["duration"]

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal sent
            while sent < c["max_requests"] and time.perf_counter() < stop_at:
                sent += 1
                await one(client)

        cpu0, server0 = time.process_time(), server.cpu_seconds()
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker(client) for client in clients)), timeout=c["duration"] + 30.0
        )
        elapsed = time.perf_counter() - started
        client_cpu, server1 = time.process_time() - cpu0, server.cpu_seconds()
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
        "p50_ms": m.percentile(latencies, 50),
        "p99_ms": m.percentile(latencies, 99),
        "client_cpu_s": client_cpu,
        "server_cpu_s": None if server0 is None or server1 is None else server1 - server0,
    }


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def parse_wrk(text: str) -> dict[str, Any]:
    """The figures of `wrk --latency` output (latencies in ms)."""
    out: dict[str, Any] = {"p50_ms": None, "p99_ms": None, "non_2xx_3xx": 0, "socket_errors": 0}
    for q, number, unit in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
        out[f"p{q}_ms"] = float(number) * _WRK_UNITS[unit]
    hit = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    if hit:
        out["requests"] = int(hit.group(1))
        out["seconds"] = float(hit.group(2)) * _WRK_UNITS[hit.group(3)] / 1000
    hit = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["wrk_rps"] = float(hit.group(1)) if hit else None
    hit = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if hit:
        out["non_2xx_3xx"] = int(hit.group(1))
    hit = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if hit:
        out["socket_errors"] = sum(int(g) for g in hit.groups())
    return out


def wrk_version(wrk: str) -> str:
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (version unknown)"


def _wrk_load(url: str, headers: dict[str, str], c: dict[str, Any]) -> dict[str, Any]:
    """`wrk -tT -cC -dDs --latency`; bounded by `-d` (whole seconds, at least 1)."""
    seconds = max(1, round(c["duration"]))
    argv = [shutil.which("wrk") or "wrk", f"-t{min(c['wrk_threads'], c['connections'])}"]
    argv += [f"-c{c['connections']}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} exited {proc.returncode}: {proc.stderr[-500:]}")
    parsed = parse_wrk(proc.stdout)
    errors = parsed["non_2xx_3xx"] + parsed["socket_errors"]
    requests = parsed.get("requests", 0)
    elapsed = parsed.get("seconds") or seconds
    return {
        **parsed,
        "requests": requests,
        "ok": max(0, requests - errors),
        "errors": errors,
        "error_kinds": {"non 2xx/3xx": parsed["non_2xx_3xx"], "socket": parsed["socket_errors"]},
        "seconds": elapsed,
        "rps": max(0, requests - errors) / elapsed if elapsed else None,
        "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


# -- measuring -----------------------------------------------------------------------------
def load(
    server: Server, scenario: tuple[str, str, bool, int, bool], body: dict[str, Any], c: dict
) -> dict[str, Any]:
    """One scenario under `c["generator"]`: the load's figures plus the server's CPU time
    per answered request."""
    _, path, conditional, status, full = scenario
    headers = {"If-None-Match": body["etag"]} if conditional else {}
    if c["generator"] == "httpx":
        length = body["bytes"] if full else 0
        result = asyncio.run(_httpx_load(server.base + path, headers, status, length, c, server))
    else:
        cpu0 = server.cpu_seconds()
        result = _wrk_load(server.base + path, headers, c)
        cpu1 = server.cpu_seconds()
        result["server_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    cpu, served = result["server_cpu_s"], result["requests"]
    # /proc's clock ticks are 10 ms: a short quick run can see no tick at all, which is
    # "not measured", not "free"
    measured = cpu is not None and cpu > 0 and served
    result["server_cpu_us_per_request"] = cpu / served * 1e6 if measured else None
    result["server_cpu_share"] = None if cpu is None else cpu / result["seconds"]
    result["client_cpu_share"] = result["client_cpu_s"] / result["seconds"]
    return result


def measure(server: Server, body: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    """Every scenario, `rounds` times (the order rotated each round); medians per figure."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in SCENARIOS}
    # untimed warm-up of the first scenario (a first round ran slower without it)
    load(server, SCENARIOS[0], body, {**c, "duration": min(1.0, c["duration"])})
    for r in range(c["rounds"]):
        for scenario in SCENARIOS[r % len(SCENARIOS) :] + SCENARIOS[: r % len(SCENARIOS)]:
            runs[scenario[0]].append(load(server, scenario, body, c))
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_request")
    keys += ("server_cpu_share", "client_cpu_share")
    return {
        name: {
            "path": path,
            "if_none_match": conditional,
            "status": status,
            **{k: m.median(run[k] for run in runs[name]) for k in keys},
            "requests": sum(run["requests"] for run in runs[name]),
            "errors": sum(run["errors"] for run in runs[name]),
            "rounds": runs[name],
        }
        for name, path, conditional, status, _ in SCENARIOS
    }


def measure_misses(server: Server, last_poll: datetime | None, hits: int = 20) -> dict[str, Any]:
    """Cache misses (distinct parameters) against cache hits, one request at a time on one
    connection: each kind's median and max ms, and the statuses."""
    filtered = [f"{API}?type=llm&sort_by=model_ratio&model={family}" for family in MISS_FAMILIES]
    at = (last_poll or datetime(2025, 1, 1)).replace(tzinfo=UTC)
    # distinct instants after the last poll: the full catalog, each a new cache key
    full = [f"{API}?as_of={at + timedelta(seconds=i + 1):%Y-%m-%dT%H:%M:%SZ}" for i in range(5)]
    kinds = {"hit": [API] * hits, "miss_filtered": filtered, "miss_full": full}
    kinds["hit_again_full"] = full  # the same keys again: now hits

    async def sequential() -> dict[str, Any]:
        out = {}
        async with httpx.AsyncClient(base_url=server.base, timeout=30.0) as client:
            await client.get("/healthz")  # open the connection
            for kind, paths in kinds.items():
                timed = [await m.timed_async(client.get, path) for path in paths]
                ms = [t for _, t in timed]
                statuses = sorted({r.status_code for r, _ in timed})
                out[kind] = {"count": len(ms), "median_ms": m.median(ms), "max_ms": max(ms)}
                out[kind]["statuses"] = statuses
        return out

    return {**asyncio.run(sequential()), "filtered_example": filtered[0], "full_example": full[0]}


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
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1"}
        scope |= {"method": "GET", "scheme": "http", "path": path, "raw_path": path.encode()}
        scope |= {"query_string": b"", "root_path": "", "headers": headers, "state": {}}
        scope |= {"client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
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
def rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    s, body, r = d["scenarios"], d["body"], prefixed(f"[{d['generator']}] ")
    rps = {name: scenario["rps"] for name, scenario in s.items()}
    cpu = {name: scenario["server_cpu_us_per_request"] for name, scenario in s.items()}
    out = [
        r(
            f"full {body['models']:,}-model body ({body['bytes'] / 1024:,.0f} KiB), repeated "
            "(cache hit)",
            rps["dynamic 200"],
            "req/s",
            rps["static 200"],
            "/static, same bytes",
            f">= {TARGET_RATIO:g}x static",
            m.at_least(m.ratio(rps["dynamic 200"], rps["static 200"]), TARGET_RATIO),
            headline=True,
        ),
        r(
            "304 (If-None-Match: its ETag)",
            rps["dynamic 304"],
            "req/s",
            rps["static 200"],
            "/static",
        ),
        r("304 vs a static 304", rps["dynamic 304"], "req/s", rps["static 304"], "/static-304"),
    ]
    for what, dynamic, static, route in (
        ("full body", "dynamic 200", "static 200", "/static"),
        ("304", "dynamic 304", "static 304", "/static-304"),
    ):
        if cpu[dynamic] and cpu[static]:  # a run too short for the clock has no figure
            out.append(r(f"server CPU per {what}", cpu[dynamic], "us/req", cpu[static], route))
    us = d.get("asgi", {}).get("us_per_call", {})
    for status, how in [
        (200, "app alone"),
        (200, "via mount"),
        (304, "app alone"),
        (304, "via mount"),
    ]:
        if us:
            figure = f"[ASGI, no socket] dynamic {status} handler ({how})"
            out.append(
                row(
                    figure,
                    us[f"dynamic {status} ({how})"],
                    "us/call",
                    us[f"static {status}"],
                    f"static {status}",
                )
            )
    if "misses" in d:
        mm, hit = d["misses"], "cache hit, full body, one at a time"
        again = "full-body miss repeated: now a cache hit, median"
        out.append(row(again, mm["hit_again_full"]["median_ms"], "ms", mm["hit"]["median_ms"], hit))
        for kind, what in (
            ("filtered", "filtered+sorted (distinct model=)"),
            ("full", "full body (distinct as_of)"),
        ):
            out.append(
                row(
                    f"cache miss, {what}, median",
                    mm[f"miss_{kind}"]["median_ms"],
                    "ms",
                    mm["hit"]["median_ms"],
                    hit,
                )
            )
    return out


def check_static(server: Server) -> dict[str, Any]:
    """The dynamic and static answers: the same bytes and headers, and a 304 on revalidation."""
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
    statuses = (dynamic.status_code, static.status_code, revalidated.status_code)
    if not (body["same_bytes_as_static"] and all(same.values()) and statuses == (200, 200, 304)):
        raise RuntimeError(f"static and dynamic answers differ: {body}")
    return body


def run(params: dict[str, Any], workdir: Path, log: Log) -> Result:
    """Build the store, start the server, load every scenario, stop the server."""
    c = {"max_requests": 200_000, "wrk_threads": 2, "load": "auto", "misses": True, "asgi": True}
    c |= params
    wrk = shutil.which("wrk")
    if c["load"] == "wrk" and wrk is None:
        return Result(
            "skipped", reason=f"{NO_WRK} (load: wrk); load: auto measures with own client"
        )
    generator = "wrk" if wrk and c["load"] in ("auto", "wrk") else "httpx"
    note = f"{NO_WRK}: measured with the bench's own httpx client" if wrk is None else ""
    workdir.mkdir(parents=True, exist_ok=True)
    db = build_db(workdir / "serve.duckdb", c["models"])
    d: dict[str, Any] = {"config": c, "db": db, "generator": generator, "wrk_note": note or "wrk"}
    d["wrk"] = wrk_version(wrk) if generator == "wrk" and wrk else None
    d["uvicorn_loop"] = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    d["uvicorn_http"] = "httptools" if importlib.util.find_spec("httptools") else "h11"
    with Server(Path(db["path"]), workdir) as server:
        d["server"] = {"pid": server.proc.pid if server.proc else None, "port": server.port}
        d["body"] = check_static(server)
        log(f"  serve: {len(SCENARIOS)} scenarios x {c['rounds']} round(s), {generator}")
        d["scenarios"] = measure(server, d["body"], {**c, "generator": generator})
        if c["misses"]:
            d["misses"] = measure_misses(server, db["last_poll"])
    d["server"]["returncode"] = server.returncode
    if c["asgi"]:
        d["asgi"] = asgi_costs(Path(db["path"]), d["body"]["etag"])
    return Result("ok", rows(d), d, reason=note)
