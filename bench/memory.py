"""Peak RSS of a replay, each in a fresh child process, and the memory bench.

A replay runs in a child started by a launcher that imports nothing, so the child's
`ru_maxrss` (`RUSAGE_CHILDREN` of the launcher) is its own: Linux carries a parent's
high-water mark over fork+exec. The child also reads its own `VmHWM` (and `ru_maxrss`)
at checkpoints. The sources bench replays its histories through `replay` too.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import ROOT, SHARED_DATA, SOURCE, Log, Result
from bench.measure import at_most, db_bytes, fresh, jsonable, ms, ratio, stats
from bench.report import prefixed

RSS_GROWTH = 1.1  # peak RSS after the larger replay / after the smaller one, at most
_LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True); "
    "sys.exit(code)"
)
_CHILD = "import sys; from bench.memory import child; child(sys.argv[1:])"


def _status_kib(field: str) -> int | None:
    """A `/proc/self/status` figure in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _marks() -> tuple[int, int | None]:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _status_kib("VmHWM")


def child(argv: list[str]) -> None:
    """Child process: replay a history into a fresh store; print its figures as JSON."""
    spec = json.loads(argv[0])
    db, snapshots, folder = Path(spec["db"]), spec["snapshots"], spec["folder"]
    from bench.synthetic import catalog_history
    from pipeline.ingest import in_batches, ingest, payload_files, read_payload
    from pipeline.store import Store

    if folder is None:  # every poll changes about 1% of the models
        history: Any = catalog_history(spec["models"], snapshots or 1, 0.01, 1.0, 0)
        source, kind = SOURCE, None
    else:
        files = payload_files(Path(folder))
        files = files[snapshots:] if (snapshots or 0) < 0 else files[:snapshots]  # -n: last n
        history = ((at, read_payload(path)) for at, path in files)
        source, kind = spec["source"], spec["source"]
    rss, hwm = {}, {}
    rss["start"], hwm["start"] = _marks()
    times: list[float] = []
    outcomes: dict[str, int] = {}
    largest = quarantined = 0
    started = time.perf_counter()
    with Store.open(fresh(db)) as store:

        def one(entry: tuple[int, tuple[Any, bytes]]) -> Any:
            """One payload, through the batches `replay` and `backfill` use."""
            nonlocal largest
            index, (fetched_at, body) = entry
            largest = max(largest, len(body))
            t0 = time.perf_counter()
            result = ingest(
                store,
                body,
                source=source,
                kind=kind,
                fetched_at=fetched_at,
                url=f"file:{index}",
                accept_mass_removal=True,  # a recorded history is trusted
            )
            times.append(ms(t0))
            return result

        def done(entry: tuple[int, Any], result: Any) -> None:
            nonlocal quarantined
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            quarantined += result.quarantined
            if entry[0] in spec["checkpoints"]:
                rss[f"after_{entry[0]}"], hwm[f"after_{entry[0]}"] = _marks()

        in_batches(store, enumerate(history, start=1), one, done)
        seconds = time.perf_counter() - started
        summary = store.summary()
    rss["final"], hwm["final"] = _marks()
    figures = {
        "snapshots": len(times),
        "seconds": seconds,
        "ms": stats(times),  # each payload's own work, without its batch's commit
        "ms_per_snapshot": seconds * 1000 / max(len(times), 1),  # everything, commits included
        "first_ms": times[0] if times else None,
        "outcomes": dict(sorted(outcomes.items())),
        "quarantined_rows": quarantined,
        "rss_kib": rss,
        "vm_hwm_kib": hwm,
        "vm_rss_kib": _status_kib("VmRSS"),
        "largest_payload_bytes": largest,
        "summary": jsonable(summary),
        **db_bytes(db),
    }
    print(json.dumps(figures), flush=True)


def replay(
    db: Path,
    *,
    source: str = "synthetic",
    folder: Path | None = None,
    snapshots: int | None = None,
    models: int = 1000,
    checkpoints: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Replay `snapshots` snapshots (all when None; the last n when -n) of a recorded
    folder, or of the synthetic catalog, in a fresh child; its figures and its peak RSS
    in bytes."""
    spec = {"db": str(db), "source": source, "snapshots": snapshots, "models": models}
    spec |= {"folder": str(folder) if folder else None, "checkpoints": list(checkpoints)}
    argv = [sys.executable, "-c", _CHILD, json.dumps(spec)]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the replay child exited {proc.returncode}: {proc.stderr[-1500:]}")
    *_, payload, maxrss = proc.stdout.strip().splitlines()
    figures = json.loads(payload)
    figures["ru_maxrss_kib"] = int(maxrss)  # KiB on Linux
    figures["peak_rss_bytes"] = int(maxrss) * 1024
    return figures


def largest_history(source: str, root: Path) -> tuple[str, Path] | None:
    """The recorded history with the most bytes (or the one named by `source`), if any."""
    if source == "synthetic":
        return None
    names = ("openrouter", "litellm") if source == "auto" else (source,)
    sizes = {sum(p.stat().st_size for p in (root / n).glob("*.json*")): n for n in names}
    return (sizes[max(sizes)], root / sizes[max(sizes)]) if max(sizes) > 0 else None


def run(params: dict[str, Any], workdir: Path, log: Log) -> Result:
    """Peak RSS of replaying 1, `small` and `large` snapshots, each in a fresh child: of the
    largest recorded history (whose catalog and payloads grow), and of a synthetic one whose
    catalog keeps its size (so only the history's length grows)."""
    workdir.mkdir(parents=True, exist_ok=True)
    small, large = params["snapshots"]
    histories: list[tuple[str, str, Path | None]] = []
    real = largest_history(params.get("source", "auto"), Path(params.get("root") or SHARED_DATA))
    if real is not None:
        histories.append((f"{real[0]} history", real[0], real[1]))
    histories.append((f"synthetic {params['models']:,} models", "synthetic", None))
    rows, measured = [], []
    for label, source, folder in histories:
        runs = {}
        # a recorded catalog grows (OpenRouter: 200 -> 400 models, 0.3 -> 0.7 MB bodies):
        # its last `small` snapshots tell the history's length from the payloads' size
        last = (-small,) if folder is not None else ()
        for n in (1, small, large, *last):
            log(f"  memory: {label}, {n} snapshot(s) in a child process")
            db = fresh(workdir / f"rss-{n}.duckdb")
            runs[n] = replay(db, source=source, folder=folder, snapshots=n, models=params["models"])
        one, a, b = runs[1], runs[small], runs[large]
        growth = ratio(b["peak_rss_bytes"], a["peak_rss_bytes"])
        tail = runs.get(-small)
        r = prefixed(f"{label}: peak RSS replaying ")
        rows += [
            r(
                f"{a['snapshots']} snapshots",
                a["peak_rss_bytes"],
                "B",
                one["peak_rss_bytes"],
                "the first snapshot alone",
                headline=True,
            ),
            r(
                f"{b['snapshots']} snapshots",
                b["peak_rss_bytes"],
                "B",
                a["peak_rss_bytes"],
                f"{a['snapshots']} snapshots",
                f"<= {RSS_GROWTH:g}x the {small}-snapshot peak",
                at_most(growth, RSS_GROWTH),
                headline=True,
                why=(
                    "a recorded catalog grows (its last payloads are twice its first): the "
                    "peak follows the payload; see the row against the last snapshots"
                ),
            ),
            *(
                [
                    r(
                        f"{b['snapshots']} snapshots vs its last {small} alone (the same "
                        "payload sizes: the length of the history, nothing else)",
                        b["peak_rss_bytes"],
                        "B",
                        tail["peak_rss_bytes"],
                        f"the last {small} snapshots",
                        f"<= {RSS_GROWTH:g}x",
                        at_most(ratio(b["peak_rss_bytes"], tail["peak_rss_bytes"]), RSS_GROWTH),
                        headline=True,
                    )
                ]
                if tail is not None
                else []
            ),
        ]
        measured.append(
            {"label": label, "source": source, "folder": str(folder or ""), "runs": runs}
        )
    return Result("ok", rows, {"histories": jsonable(measured)})
