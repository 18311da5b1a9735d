"""The always-on bench (issue 14): serving while another process writes the store, and how
soon a fetch spooled while the store was held is applied once it is free.

1. `modelwatch serve --db DB --port 0` (a child process) serves a synthetic store; a few
   distinct `GET /api/v1/models` queries are each answered once (untimed), then loaded by
   the bench's own client (`threads` threads, one keep-alive httpx connection each,
   bounded in time and count): first with no writer (the baseline), then while
   `modelwatch replay` of a recorded OpenRouter history writes the same store in another
   child process, for as long as the replay runs (at most `max_seconds`). The design
   promises no failed answer (non-200/304) for a body already served: while the store is
   busy the last body computed for that query is served, with its ETag.
2. A local upstream (127.0.0.1) serves one bundled AiHubMix payload; a child process holds
   the store (`duckdb.connect`, then sleeps `hold` s); `snapshot_at(..., lock_timeout=1)`
   fetches and spools the answer; once the holder has exited the spool is drained (as the
   next run does first) and the time from the fetch to its body being in the store
   (`fetch_log` at the spooled fetch time) is compared with the hold.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench import ROOT, SHARED_DATA, SOURCE, Log, Result
from bench import measure as m
from bench.memory import largest_history
from bench.report import prefixed, row
from bench.serve import API, START_TIMEOUT, Server, build_db
from pipeline.ingest import Spooled, drain_spool, payload_files, snapshot_at
from pipeline.store import Store, content_hash
from pipeline.store.locking import db_lock

QUERIES = ("", "?type=llm", "?sort_by=model_ratio", "?type=llm&sort_by=model_ratio&model=gpt")
SERVED_RATIO = 0.5  # req/s under a concurrent replay / without a writer, at least
APPLIED_RATIO = 1.1  # fetch -> applied / hold time, at most
OK = (200, 304)
HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # another process (a notebook, a replay) holds the file
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""
READY = re.compile(r"on http://127\.0\.0\.1:(\d+)")


# -- 1. serving under a concurrent writer --------------------------------------------------
class CliServer(Server):
    """`modelwatch serve --db DB --port 0` in a child process; its port is read from the
    line it prints on stderr once it listens. Stopped as `bench.serve.Server` is."""

    def start(self) -> CliServer:
        argv = [sys.executable, "-m", "pipeline.cli", "serve", "--db", str(self.db), "--port", "0"]
        env = {**os.environ, "COLUMNS": "4000"}  # rich: one unwrapped line
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            hit = READY.search(self.log_path.read_text(errors="replace"))
            if hit:
                self.port = int(hit.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}" + self._tail())
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 'serving' line in {START_TIMEOUT:.0f} s" + self._tail())
            time.sleep(0.05)


def warm(server: Server, urls: list[str]) -> dict[str, str]:
    """Each query answered once (so the server has its body): query -> ETag."""
    etags = {}
    with httpx.Client(base_url=server.base, timeout=30.0) as client:
        for url in urls:
            answer = client.get(url)
            if answer.status_code != 200:
                raise RuntimeError(f"GET {url} answered {answer.status_code}: {answer.text[:300]}")
            etags[url] = answer.headers["etag"]
    return etags


def load(
    base: str, urls: list[str], etags: dict[str, str], c: dict[str, Any], *, writer: Any = None
) -> dict[str, Any]:
    """`c["threads"]` threads, one keep-alive connection each, cycling through `urls` back
    to back; until `c["duration"]` s have passed (with a `writer`: until it exits, at most
    `c["max_seconds"]` s) or `c["max_requests"]` were sent in all."""
    seconds = c["duration"] if writer is None else c["max_seconds"]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    other_etag = 0
    sent = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def going() -> bool:
        return time.perf_counter() < stop_at and (writer is None or writer.poll() is None)

    def worker(offset: int) -> None:
        nonlocal sent, other_etag
        with httpx.Client(base_url=base, timeout=30.0) as client:
            i = offset
            while going():
                with lock:
                    if sent >= c["max_requests"]:
                        return
                    sent += 1
                url, i = urls[i % len(urls)], i + 1
                t0 = time.perf_counter()
                try:
                    answer = client.get(url)
                except httpx.HTTPError as exc:
                    with lock:
                        failures[type(exc).__name__] += 1
                    continue
                elapsed = m.ms(t0)
                with lock:
                    statuses[str(answer.status_code)] += 1
                    if answer.status_code not in OK:
                        failures[f"status {answer.status_code}"] += 1
                        continue
                    latencies.append(elapsed)
                    other_etag += answer.headers.get("etag") != etags[url]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(c["threads"])]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    return {
        "requests": sent,
        "ok": len(latencies),
        "failures": sum(failures.values()),
        "failure_kinds": dict(failures),
        "statuses": dict(statuses),
        "other_etag": other_etag,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else None,
        "p50_ms": m.percentile(latencies, 50),
        "p99_ms": m.percentile(latencies, 99),
        "max_ms": max(latencies, default=None),
    }


def probe_uncached(base: str, stop: threading.Event, found: list[tuple[int, float]]) -> None:
    """Queries never asked before (each a new `model=`), one every 0.25 s until `stop`:
    they cannot be served from the cache, so they wait for the store or get a 503."""
    with httpx.Client(base_url=base, timeout=30) as client:
        i = 0
        while not stop.is_set() and i < 400:
            i += 1
            t0 = time.perf_counter()
            status = client.get(f"{API}?model=never-asked-{i}").status_code
            found.append((status, (time.perf_counter() - t0) * 1000))
            stop.wait(0.25)


def history_folder(c: dict[str, Any], workdir: Path) -> tuple[Path, int]:
    """The first `snapshots` payloads of the largest recorded OpenRouter history (the
    shared data folder's, else the bundled one), linked into a folder of their own."""
    roots = [Path(c["root"])] if c.get("root") else [SHARED_DATA, ROOT / "data"]
    found = next(filter(None, (largest_history("openrouter", r) for r in roots)), None)
    if found is None:
        raise FileNotFoundError(f"no openrouter history under {', '.join(map(str, roots))}")
    folder = workdir / "openrouter-history"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    files = payload_files(found[1])[: c["snapshots"]]
    for _, path in files:
        (folder / path.name).symlink_to(path.resolve())
    return folder, len(files)


def serving(c: dict[str, Any], workdir: Path, log: Log) -> dict[str, Any]:
    db = build_db(m.fresh(workdir / "always_on.duckdb"), c["models"])
    folder, snapshots = history_folder(c, workdir)
    urls = [API + q for q in QUERIES]
    out: dict[str, Any] = {"db": db, "history": str(folder), "snapshots": snapshots}
    out["urls"] = urls
    with CliServer(Path(db["path"]), workdir) as server:
        out["port"] = server.port
        etags = warm(server, urls)
        log(f"  always_on: {c['threads']} threads, no writer for {c['duration']:g} s")
        out["alone"] = load(server.base, urls, etags, c)
        argv = [sys.executable, "-m", "pipeline.cli", "replay", str(folder), "--db", db["path"]]
        argv += ["--source", "openrouter", "--accept-mass-removal"]
        log(f"  always_on: replaying {snapshots} openrouter snapshots meanwhile")
        with (workdir / "replay.log").open("wb") as replay_log:
            t0 = time.perf_counter()
            writer = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=replay_log, stderr=replay_log
            )
            stop, probes = threading.Event(), []
            prober = threading.Thread(target=probe_uncached, args=(server.base, stop, probes))
            prober.start()
            try:
                out["writer"] = load(server.base, urls, etags, c, writer=writer)
                # the load may stop at its count first: the replay still gets its time
                left = c["max_seconds"] - (time.perf_counter() - t0)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    writer.wait(timeout=max(0.0, left))
            finally:
                finished = writer.poll() is not None
                if not finished:  # past its bound (or the load failed): stopped
                    writer.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    writer.wait(timeout=30)
                if writer.poll() is None:
                    writer.kill()
                    writer.wait(timeout=10)
            stop.set()
            prober.join(timeout=60)
        waits = sorted(ms for _, ms in probes)
        out["uncached"] = {
            "queries": len(probes),
            "statuses": dict(Counter(str(s) for s, _ in probes)),
            "p50_ms": waits[len(waits) // 2] if waits else None,
            "max_ms": waits[-1] if waits else None,
        }
        out["replay"] = {
            "seconds": time.perf_counter() - t0,
            "returncode": writer.returncode,
            "finished": finished,
            "log_tail": (workdir / "replay.log").read_text(errors="replace")[-500:],
        }
        out["after"] = warm(server, urls) == etags  # the same bodies once the store is free
    out["server_returncode"] = server.returncode
    return out


# -- 2. a fetch spooled while the store was held -------------------------------------------
class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: Any = self.server
        server.hits.append(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(server.body)))
        self.end_headers()
        self.wfile.write(server.body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def upstream(body: bytes) -> Any:
    """A catalog upstream on 127.0.0.1 answering `body` to every GET, in a thread."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.body, server.hits = body, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def spooling(c: dict[str, Any], workdir: Path, log: Log) -> dict[str, Any]:
    db = m.fresh(workdir / "spool.duckdb")
    shutil.rmtree(f"{db}.spool", ignore_errors=True)  # nothing left from an earlier run
    Store.open(db).close()  # an empty store, in the store's own format
    _, payload = payload_files(ROOT / "data" / "aihubmix-modelsdev")[0]
    body = (
        gzip.decompress(payload.read_bytes()) if payload.suffix == ".gz" else payload.read_bytes()
    )
    hold = float(c["hold"])
    log(f"  always_on: store held {hold:g} s by another process, a fetch spooled meanwhile")
    with upstream(body) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/models"
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            ready, _, _ = select.select([holder.stdout], [], [], 60)
            if not ready or holder.stdout.readline().strip() != "holding":
                raise RuntimeError("the holder did not take the store in 60 s")
            held = time.time()
            spooled = snapshot_at(db, source=SOURCE, url=url, lock_timeout=1)
            returned = time.time()
            holder.wait(timeout=hold + 60)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(timeout=10)
        released = time.time()
        fetched = server.hits[0] if server.hits else None
    if not isinstance(spooled, Spooled):
        raise RuntimeError(f"expected the fetch to be spooled, got {type(spooled).__name__}")
    with db_lock(db, timeout=30), Store.open(db, lock_timeout=30) as store:
        drained = drain_spool(store, db)
        logged = store.fetches_at(SOURCE, spooled.fetched_at)
    applied = time.time()
    if content_hash(body) not in {h for h, _ in logged}:
        raise RuntimeError(f"the spooled body is not in fetch_log at {spooled.fetched_at}")
    fetched_at = spooled.fetched_at.replace(tzinfo=UTC).timestamp()
    return {
        "hold_s": released - held,
        "fetch_to_spooled_s": returned - (fetched or fetched_at),
        "release_to_applied_s": applied - released,
        "fetch_to_applied_s": applied - (fetched or fetched_at),
        "planned_to_applied_s": applied - fetched_at,
        "upstream_hits": len(server.hits),
        "spooled_reason": spooled.reason,
        "applied": [str(r.outcome) for r in drained],
        "payload_bytes": len(body),
    }


# -- the run -------------------------------------------------------------------------------
def rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    s, p = d.get("serving"), d.get("spool")
    out = []
    if s:
        alone, busy = s["alone"], s["writer"]
        r = prefixed(f"GET {API} ({len(s['urls'])} queries), ")
        ratio = m.ratio(busy["rps"], alone["rps"])
        out += [
            r(
                f"served under a concurrent replay ({s['snapshots']} openrouter snapshots)",
                busy["rps"],
                "req/s",
                alone["rps"],
                "same load, no writer",
                f">= {SERVED_RATIO:g}x without a writer",
                m.at_least(ratio, SERVED_RATIO),
                headline=True,
            ),
            r("p99 under a concurrent replay", busy["p99_ms"], "ms", alone["p99_ms"], "no writer"),
            r("p50 under a concurrent replay", busy["p50_ms"], "ms", alone["p50_ms"], "no writer"),
            r(
                "failed answers (non-200/304) under a concurrent replay",
                busy["failures"],
                "answers",
                alone["failures"],
                "no writer",
                "0",
                busy["failures"] == 0,
            ),
            row("replay time (the writer)", s["replay"]["seconds"], "s"),
        ]
        u = s.get("uncached") or {}
        if u.get("queries"):
            answered = f"{u['statuses'].get('200', 0)} of {u['queries']} answered, the rest 503"
            out += [
                r(
                    f"never-asked query under a concurrent replay, wait p50 ({answered})",
                    u["p50_ms"],
                    "ms",
                ),
                r("never-asked query under a concurrent replay, longest wait", u["max_ms"], "ms"),
            ]
    if p:
        out += [
            row(
                f"fetch -> applied, store held {p['hold_s']:.0f} s by another process",
                p["fetch_to_applied_s"],
                "s",
                p["hold_s"],
                "hold time",
                f"<= {APPLIED_RATIO:g}x the hold",
                m.at_most(m.ratio(p["fetch_to_applied_s"], p["hold_s"]), APPLIED_RATIO),
                headline=True,
            ),
            row(
                "release -> applied (spool drained)",
                p["release_to_applied_s"],
                "s",
                p["hold_s"],
                "hold time",
            ),
            row("fetch -> spooled (lock_timeout 1 s)", p["fetch_to_spooled_s"], "s"),
        ]
    return out


def run(params: dict[str, Any], workdir: Path, log: Log) -> Result:
    c = {"models": 1000, "threads": 4, "duration": 5.0, "max_requests": 200_000}
    c |= {"snapshots": None, "max_seconds": 120.0, "hold": 60.0, "root": None} | params
    workdir.mkdir(parents=True, exist_ok=True)
    d: dict[str, Any] = {"config": c}
    d["serving"] = m.jsonable(serving(c, workdir, log))
    d["spool"] = spooling(c, workdir, log)
    return Result("ok", rows(d), d)
