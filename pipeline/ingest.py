"""The ingest stage: plan -> fetch -> parse -> normalise -> write, for one fetch or a
folder of recorded payloads. The CLI and the Prefect flows both call these functions.

    plan_fetch      whether to fetch now, and with which ETag (conditional GET, max-age)
    fetch           the HTTP GET of a plan, the bearer token redacted from what came back
    store_response  record what the upstream answered: a 304, a final 4xx, or a body
    ingest          parse, normalise and diff one body, then write it in one transaction
    snapshot        all of the above, once
    replay          recorded payloads, oldest first, each at the time in its file name
"""

from __future__ import annotations

import functools
import gc
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from weakref import WeakKeyDictionary

import httpx

from pipeline.config import HoldPolicy
from pipeline.errors import (
    BadInput,
    FetchError,
    PayloadRejected,
    StoreError,
    StoreLocked,
    UpstreamError,
    upstream_message,
)
from pipeline.normalise import normalise_items
from pipeline.outcome import IngestResult, Outcome
from pipeline.secrets import redact
from pipeline.sources import SourceSpec, get_source
from pipeline.sources._common import ItemMemo
from pipeline.store import (
    FetchMeta,
    Order,
    SnapshotWrite,
    Store,
    VersionChanges,
    content_hash,
)
from pipeline.store.archive import digest_later
from pipeline.store.history import compact_json
from pipeline.store.locking import db_lock
from pipeline.store.spool import Spool, SpoolEntry
from pipeline.timeutil import iso, looks_timed, time_from_filename, utcnow

if TYPE_CHECKING:
    from pipeline.fetch import FetchResponse

PAYLOAD_SUFFIXES = (".json", ".json.gz")
MAX_FRESH_SECONDS = 86_400  # the longest an upstream's max-age can put off the next poll


@dataclass(frozen=True)
class Skipped:
    """No request was made: the last answer is still fresh (its max-age has not passed)."""

    source: str
    last_fetch: datetime
    fresh_until: datetime


@dataclass(frozen=True)
class FetchPlan:
    """What to ask for: the URL, and the ETag of the last answer (for If-None-Match)."""

    source: str
    kind: str
    url: str
    etag: str | None
    started: datetime


def plan_fetch(
    store: Store,
    *,
    source: str,
    kind: str | None = None,
    url: str | None = None,
    force: bool = False,
    now: Callable[[], datetime] = utcnow,
) -> FetchPlan | Skipped:
    """Decide whether to fetch now, and how (SPEC 3: conditional GET, max-age)."""
    spec = source_adapter(store, source, kind)
    target = url or spec.default_url
    last = store.last_fetch(source, target)
    started = now()
    if last and last.max_age and not force:  # an upstream may not put us off for days
        fresh_until = last.fetched_at + timedelta(seconds=min(last.max_age, MAX_FRESH_SECONDS))
        if started < fresh_until:
            return Skipped(source=source, last_fetch=last.fetched_at, fresh_until=fresh_until)
    etag = last.etag if last and not force else None
    return FetchPlan(source=source, kind=spec.name, url=target, etag=etag, started=started)


def source_adapter(store: Store, source: str, kind: str | None = None) -> SourceSpec:
    """The adapter of `source`: `kind` if given, else the one it was stored with, else
    the adapter of the same name. A kind that contradicts the stored one is an error."""
    stored = store.source_kind(source)
    if kind is not None and stored is not None and get_source(kind).name != stored:
        raise BadInput(
            f"source {source!r} is stored with kind {stored!r}, not {kind!r}; "
            "drop --kind or give the new catalog another --source name"
        )
    return get_source(kind or stored or source)


def record_fetch_error(store: Store, plan: FetchPlan, exc: FetchError) -> IngestResult:
    """Log an upstream failure (`failed`) or an unusable body (`rejected`), keeping any body."""
    outcome = Outcome.REJECTED if isinstance(exc, PayloadRejected) else Outcome.FAILED
    return store.record_attempt(
        IngestResult(source=plan.source, fetched_at=plan.started, outcome=outcome, error=str(exc)),
        FetchMeta(url=plan.url, http_status=exc.status),
        body=exc.body,
    )


def store_response(
    store: Store,
    plan: FetchPlan,
    response: FetchResponse,
    *,
    accept_mass_removal: bool = False,
    hold_policy: HoldPolicy | None = None,
) -> IngestResult:
    """Record what the upstream answered: 304, a final 4xx, or a body to ingest."""
    if response.status == 304:
        return store.record_attempt(
            IngestResult(source=plan.source, fetched_at=plan.started, outcome=Outcome.NOT_MODIFIED),
            FetchMeta(
                url=plan.url,
                http_status=304,
                etag=response.etag or plan.etag,
                max_age=response.max_age,
            ),
        )
    body = response.body or b""
    if response.status != 200:
        # a final 4xx: keep the body, record why, quoting the upstream message
        return store.record_attempt(
            IngestResult(
                source=plan.source,
                fetched_at=plan.started,
                outcome=Outcome.REJECTED,
                error=_status_error(response.status, body),
            ),
            FetchMeta(url=plan.url, http_status=response.status),
            body=body,
        )
    return ingest(
        store,
        body,
        source=plan.source,
        kind=plan.kind,
        url=plan.url,
        fetched_at=plan.started,
        http_status=200,
        etag=response.etag,
        max_age=response.max_age,
        accept_mass_removal=accept_mass_removal,
        hold_policy=hold_policy,
    )


def snapshot(
    store: Store,
    *,
    source: str,
    kind: str | None = None,
    url: str | None = None,
    force: bool = False,
    accept_mass_removal: bool = False,
    client: httpx.Client | None = None,
    token: str | None = None,
    max_attempts: int = 4,
    timeout: float | None = None,
    hold_policy: HoldPolicy | None = None,
    now: Callable[[], datetime] = utcnow,
) -> IngestResult | Skipped:
    """Fetch a source once with a conditional GET and store what came back.

    Upstream failures are recorded (`failed`, with any body) before they are raised.
    """
    released = (  # what earlier fetches held applies first, at its own times
        release_holds(store, source, kind=kind) if accept_mass_removal else []
    )
    plan = plan_fetch(store, source=source, kind=kind, url=url, force=force, now=now)
    if isinstance(plan, Skipped):
        return plan
    if token:
        store.mark_private(source, plan.started)
    try:
        response = fetch(
            plan, client=client, token=token, max_attempts=max_attempts, timeout=timeout
        )
    except FetchError as exc:
        record_fetch_error(store, plan, exc)
        raise
    result = store_response(
        store, plan, response, accept_mass_removal=accept_mass_removal, hold_policy=hold_policy
    )
    result.released = [r.fetched_at for r in released] + result.released
    return result


def fetch(
    plan: FetchPlan,
    *,
    client: httpx.Client | None = None,
    token: str | None = None,
    max_attempts: int = 4,
    timeout: float | None = None,
) -> FetchResponse:
    """The conditional GET of a plan. Bodies are kept (archived) even on failure, so an
    upstream that echoes the caller's token gets it replaced first: secrets never reach
    the database."""
    from pipeline.fetch import fetch_catalog

    try:
        response = fetch_catalog(
            plan.url,
            etag=plan.etag,
            client=client,
            token=token,
            max_attempts=max_attempts,
            max_total_seconds=timeout,  # the whole fetch, retries and a slow body included
        )
    except FetchError as exc:
        if token and exc.body:
            exc.body = redact(exc.body, token)
        raise
    if token:
        # an ETag that echoes the token is dropped: it would be stored and sent back
        etag = response.etag
        if etag is not None and redact(etag, token) != etag:
            etag = None
        body = redact(response.body, token) if response.body else response.body
        response = replace(response, body=body, etag=etag)
    return response


def _status_error(status: int, body: bytes) -> str:
    try:
        message = upstream_message(json.loads(body))
    except (UnicodeDecodeError, ValueError, RecursionError):
        message = None
    return f"HTTP {status}" + (f": {message!r}" if message else "")


# -- recorded payloads -----------------------------------------------------------------------


def scan_payloads(directory: Path) -> tuple[list[tuple[datetime, Path]], list[str]]:
    """Recorded payloads in a folder, oldest first, each with the time in its name; and
    the names of the other files (an `index.json`, a README), which are left alone."""
    if not directory.is_dir():
        raise BadInput(f"replay folder {str(directory)!r} does not exist or is not a folder")
    payloads, others = [], []
    for path in directory.iterdir():
        if path.name.endswith(PAYLOAD_SUFFIXES) and looks_timed(path.name):
            payloads.append((time_from_filename(path.name), path))
        elif path.is_file():
            others.append(path.name)
    if not payloads:
        raise BadInput(
            f"no payloads named <YYYY-MM-DDTHH-MM-SSZ>_*.json[.gz] in {str(directory)!r}"
        )
    return sorted(payloads, key=lambda tp: (tp[0], tp[1].name)), sorted(others)


def payload_files(directory: Path) -> list[tuple[datetime, Path]]:
    """The timed payloads of a folder, oldest first (see `scan_payloads`)."""
    return scan_payloads(directory)[0]


try:  # Intel's ISA-L inflates 3x as fast as zlib: 0.18 ms an OpenRouter payload, not 0.54
    from isal.igzip import decompress as _gunzip
except ImportError:  # pragma: no cover - a platform without its wheel
    from gzip import decompress as _gunzip


def read_payload(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            return _gunzip(data)
        except (OSError, EOFError) as exc:
            raise BadInput(f"{path.name}: not a valid gzip file ({exc})") from None
    return data


T = TypeVar("T")

# Payloads a replay applies in one transaction (a re-run after a crash redoes at most these).
# Since a batch holds its log rows, versions and bodies for one INSERT each, 25 is 7-8%
# faster than 10 on OpenRouter's 400 snapshots (6.4 vs 6.9 ms a snapshot, two runs each);
# the peak stays flat in the history's length (`python -m bench --only memory`).
REPLAY_BATCH = 25


def replay(
    store: Store,
    files: Iterable[tuple[datetime, Path]],
    *,
    source: str,
    kind: str | None = None,
    accept_mass_removal: bool = False,
    hold_policy: HoldPolicy | None = None,
    on_result: Callable[[Path, IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest recorded payloads oldest first (`in_batches`); files already stored are
    skipped (a no-op)."""
    source_adapter(store, source, kind)

    def one(entry: tuple[datetime, Path]) -> IngestResult:
        fetched_at, path = entry
        return ingest(
            store,
            read_payload(path),
            source=source,
            fetched_at=fetched_at,
            kind=kind,
            url=f"file:{path.name}",
            accept_mass_removal=accept_mass_removal,
            hold_policy=hold_policy,
        )

    def done(entry: tuple[datetime, Path], result: IngestResult) -> None:
        if on_result is not None:
            on_result(entry[1], result)

    return in_batches(store, files, one, done)


_frozen = 0
_frozen_lock = threading.Lock()


@contextmanager
def old_objects_left_alone() -> Iterator[None]:
    """While bodies are ingested, the objects alive before (the imported libraries: polars,
    pyarrow, duckdb and pandera make most of a million) are left out of the garbage
    collector's full passes (`gc.freeze`), which walked them all: a fifth of a replay's
    time. A parsed catalog is a tree, freed by reference counting as it goes, and
    whatever is made meanwhile is still collected. Blocks nest; the objects are handed
    back to the collector when the outermost one ends."""
    global _frozen
    with _frozen_lock:
        if _frozen == 0:
            gc.freeze()
        _frozen += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen -= 1
            if _frozen == 0:
                gc.unfreeze()


P = ParamSpec("P")
R = TypeVar("R")


def _old_objects_left_alone_while(run: Callable[P, R]) -> Callable[P, R]:
    """`run`, inside `old_objects_left_alone()`."""

    @functools.wraps(run)
    def running(*args: P.args, **kwargs: P.kwargs) -> R:
        with old_objects_left_alone():
            return run(*args, **kwargs)

    return running


def in_batches(
    store: Store,
    entries: Iterable[T],
    one: Callable[[T], IngestResult],
    done: Callable[[T, IngestResult], None],
) -> list[IngestResult]:
    """`one(entry)` for each entry, `REPLAY_BATCH` entries to a transaction.

    A snapshot's own work is the same as alone, but a batch pays for one commit, not one
    each. A batch is all or nothing: a crash loses at most the batch in progress and a
    re-run resumes after the last one committed. If a batch fails, it is rolled back and
    applied again one entry at a time, so the failing entry is recorded as `failed` (its
    body kept) exactly as it would be outside a batch, and the entries before it stand.
    A COMMIT the disk refuses (`StoreError`) stops the run: nothing of that batch stands.
    `done(entry, result)` is called once per entry, after its batch committed.
    """
    results: list[IngestResult] = []

    def finish(batch: list[T], batch_results: list[IngestResult]) -> None:
        results.extend(batch_results)
        for entry, result in zip(batch, batch_results, strict=False):
            done(entry, result)

    pending = iter(entries)
    with old_objects_left_alone():
        while batch := list(islice(pending, REPLAY_BATCH)):
            try:
                with store.batch():
                    batch_results = [one(entry) for entry in batch]
            except StoreError:
                raise
            except Exception:  # noqa: BLE001 - whatever it was, the one-by-one pass meets it
                batch_results = []
                try:
                    for entry in batch:
                        batch_results.append(one(entry))
                finally:
                    finish(batch, batch_results)
                continue
            finish(batch, batch_results)
    return results


# -- parse, normalise, diff, write: one body into the history ------------------------------

# The last body's normaliser cache per store and source: the next snapshot re-normalises
# only the items that changed. Held here (not in the store) and dropped with the store.
_ITEM_CACHES: WeakKeyDictionary[Store, dict[str, dict[str, Any]]] = WeakKeyDictionary()
# The adapter's conversions of the last body per store and source (`ItemMemo`).
_MEMOS: WeakKeyDictionary[Store, dict[str, ItemMemo]] = WeakKeyDictionary()


@_old_objects_left_alone_while
def ingest(
    store: Store,
    body: bytes,
    *,
    source: str,
    fetched_at: datetime,
    kind: str | None = None,
    url: str | None = None,
    http_status: int = 200,
    etag: str | None = None,
    max_age: int | None = None,
    accept_mass_removal: bool = False,
    hold_policy: HoldPolicy | None = None,
) -> IngestResult:
    """Store one fetched body: archive it, validate it, and apply it to the history.

    Outcomes: `new` (the history changed), `unchanged`, `rejected` (not a catalog),
    `suspect` (empty, or removes more than half the models: held, not applied), and
    `duplicate` (this very body at this very time is already stored: nothing written).
    A held change confirmed by `hold_policy` (default `HoldPolicy()`) is applied from its
    first fetch on; the result then lists those fetch times in `released`.
    """
    spec = source_adapter(store, source, kind)
    started = time.perf_counter()
    state = store.source_state(source)
    in_force = store.is_current_body(source, body)
    hashing: Future[str] | None = None
    if in_force:
        digest: str | None = state.last_accepted
    elif in_force is False and (state.newest is None or fetched_at > state.newest):
        # a new body at a new time (a poll that changed, a replay): it is neither the
        # catalog in force nor a repeat, so its digest is needed only to write it, and is
        # computed on the worker thread while the body is parsed
        digest, hashing = None, digest_later(body)
    else:
        digest = content_hash(body)
    result = IngestResult(
        source=source, fetched_at=fetched_at, outcome=Outcome.NEW, content_hash=digest
    )
    meta = FetchMeta(url=url, http_status=http_status, etag=etag, max_age=max_age)

    # only a fetch no newer than the newest stored can be a repeat (a replay re-run); a
    # failed attempt is no repeat: its write did not happen, so the retry applies it
    same_time = (
        []
        if state.newest is None or fetched_at > state.newest
        else [(h, o) for h, o in store.fetches_at(source, fetched_at) if o != Outcome.FAILED]
    )
    if any(h == digest for h, _ in same_time):
        result.outcome = Outcome.DUPLICATE
        return result
    if state.newest is not None and fetched_at < state.newest:
        raise BadInput(
            f"{source} fetch at {iso(fetched_at)} is older than the newest one stored "
            f"({iso(state.newest)}); history is written oldest first"
        )
    if same_time:  # another body at this very instant: snapshots must be totally ordered
        result.error = (
            f"another {source} payload was fetched at the same time ({iso(fetched_at)}); "
            "the first one stored stands"
        )
        return store.write(
            SnapshotWrite(result=replace(result, outcome=Outcome.REJECTED), meta=meta, body=body)
        )
    base = state.last_accepted

    def write(outcome: Outcome, **parts: Any) -> IngestResult:
        if hashing is not None:
            result.content_hash = hashing.result()
        result.outcome = outcome
        result.duration_ms = (time.perf_counter() - started) * 1000
        return store.write(
            SnapshotWrite(result=result, meta=meta, body=body, kind=spec.name, **parts)
        )

    # 1. the same bytes as the catalog in force: one small log row, nothing else
    if state.last_accepted == digest:
        result.models = len(state.current)
        return write(Outcome.UNCHANGED, raw_base=digest)

    # 2. not a catalog: keep the bytes, say why
    store.prepare_raw(body, base)  # its delta is computed while it is parsed
    try:
        items = spec.parse(body, _MEMOS.setdefault(store, {}).setdefault(source, ItemMemo()))
    except PayloadRejected as exc:
        result.error = str(exc)
        return write(Outcome.REJECTED)

    caches = _ITEM_CACHES.setdefault(store, {})
    norm = normalise_items(items, source=source, cache=caches.get(source))
    rows = norm.rows
    result.models = len(rows)
    result.quarantined = len(norm.quarantine)
    result.unknown_values = norm.unknown_values

    current = state.current
    ids = norm.ids
    positions = [r["position"] for r in rows]
    new_hashes = dict(zip(ids, norm.hashes, strict=True))
    result.removed = sorted(set(current) - set(new_hashes))
    result.changed = sorted(m for m, h in new_hashes.items() if m in current and current[m] != h)
    appeared = [m for m in ids if m not in current]
    if appeared:
        seen_before = store.seen_before(source, appeared)
        result.returned = sorted(m for m in appeared if m in seen_before)
        result.added = sorted(m for m in appeared if m not in seen_before)
    order = Order.of(source, ids, positions)
    snapshot_order = order.digest
    result.catalog_hash = catalog_digest(new_hashes, snapshot_order)

    # 3. held: an outage must not erase the catalog, unless the upstream keeps meaning it
    mass_removal = len(result.removed) * 2 > len(current)
    if (not rows or mass_removal) and not accept_mass_removal:
        policy = hold_policy or HoldPolicy()
        earlier = store.pending_holds(source)
        same = [at for at, h in _trailing_same(earlier, result.catalog_hash)]
        first = same[0] if same else fetched_at
        result.error = (
            "empty catalog"
            if not rows
            else f"would remove {len(result.removed)} of {len(current)} models"
        ) + (
            f" (held as suspect since {iso(first)}: "
            f"{policy.describe(len(same) + 1, first, fetched_at)} to apply it by itself; "
            "pass --accept-mass-removal to apply it now)"
        )
        write(Outcome.SUSPECT, raw_base=base, quarantine=norm.quarantine)
        caches[source] = norm.cache
        if len(same) + 1 >= policy.fetches and fetched_at - first >= policy.span:
            released = release_holds(store, source, since=first, kind=kind)
            confirmed = released[-1]
            confirmed.released = [r.fetched_at for r in released]
            confirmed.error = None
            return confirmed
        return result

    touched = set(result.changed) | set(result.added) | set(result.returned)
    if not touched and not result.removed and snapshot_order == state.order_hash:
        write(Outcome.UNCHANGED, raw_base=base, quarantine=norm.quarantine)
        caches[source] = norm.cache
        return result

    changes = VersionChanges(
        closing=sorted(set(result.changed) | set(result.removed)),
        fresh=[(r, h) for r, h in zip(rows, norm.hashes, strict=True) if r["model_id"] in touched],
        ids=ids,
        order=order,
        order_is_new=snapshot_order != state.order_hash,
        current=new_hashes,
    )
    write(Outcome.NEW, raw_base=base, quarantine=norm.quarantine, changes=changes)
    caches[source] = norm.cache
    return result


def catalog_digest(hashes: dict[str, str], snapshot_order: str) -> str:
    """One digest for a normalised catalog: its models' values and its order."""
    canon = compact_json([snapshot_order, sorted(hashes.items())], ensure_ascii=True)
    return content_hash(canon.encode())[:32]


def _trailing_same(
    holds: list[tuple[datetime, str | None]], digest: str | None
) -> list[tuple[datetime, str | None]]:
    """The held fetches at the end of `holds` that showed the catalog `digest`."""
    run: list[tuple[datetime, str | None]] = []
    for at, h in reversed(holds):
        if h != digest:
            break
        run.insert(0, (at, h))
    return run


def release_holds(
    store: Store, source: str, *, since: datetime | None = None, kind: str | None = None
) -> list[IngestResult]:
    """Apply held snapshots of `source` from the raw archive, at their own fetch times,
    so the history equals one that accepted them from the start (SPEC 3).

    From `since` (default: the first pending hold) every later fetch is undone and
    applied again in order, held ones accepted; all in one transaction."""
    holds = store.pending_holds(source)
    if since is None:
        if not holds:
            return []
        since = holds[0][0]
    results: list[IngestResult] = []
    with store.transaction():
        for row in store.rewind(source, since):
            outcome = Outcome(row["outcome"])
            meta = FetchMeta(
                url=row["url"],
                http_status=row["http_status"],
                etag=row["etag"],
                max_age=row["max_age"],
            )
            if outcome not in (Outcome.NEW, Outcome.UNCHANGED, Outcome.SUSPECT):
                # nothing was applied from it: it is logged again as it was
                again = IngestResult(
                    source=source,
                    fetched_at=row["fetched_at"],
                    outcome=outcome,
                    content_hash=row["content_hash"],
                    error=row["error"],
                )
                store.write(SnapshotWrite(result=again, meta=meta))
                continue
            results.append(
                ingest(
                    store,
                    store.raw_payload(row["content_hash"]),
                    source=source,
                    fetched_at=row["fetched_at"],
                    kind=kind,
                    url=meta.url,
                    http_status=meta.http_status or 200,
                    etag=meta.etag,
                    max_age=meta.max_age,
                    accept_mass_removal=True,
                )
            )
    return results


# -- a fetch against a database file: never lost to a busy store ---------------------------


@dataclass(frozen=True)
class Spooled:
    """The store could not be written: the fetch's answer waits in the spool."""

    source: str
    fetched_at: datetime
    path: Path
    reason: str


def plan_at(
    db: Path,
    *,
    source: str,
    kind: str | None = None,
    url: str | None = None,
    force: bool = False,
    hold_policy: HoldPolicy | None = None,
    now: Callable[[], datetime] = utcnow,
    lock_timeout: float = 2.0,
) -> FetchPlan | Skipped:
    """Plan a fetch of `source` from the store at `db`, holding it only to read (and to
    apply what the spool holds). A busy store gives an unconditional fetch: the plan
    never waits for it."""
    try:
        with db_lock(db, timeout=lock_timeout), Store.open(db, lock_timeout=lock_timeout) as store:
            drain_spool(store, db, hold_policy=hold_policy)
            return plan_fetch(store, source=source, kind=kind, url=url, force=force, now=now)
    except StoreLocked:
        spec = get_source(kind or source)
        return FetchPlan(
            source=source, kind=spec.name, url=url or spec.default_url, etag=None, started=now()
        )


def write_at(
    db: Path,
    plan: FetchPlan,
    answer: FetchResponse | FetchError,
    *,
    private: bool = False,
    accept_mass_removal: bool = False,
    hold_policy: HoldPolicy | None = None,
    lock_timeout: float = 10.0,
) -> IngestResult | Spooled:
    """Write what a fetch got into the store at `db`, waiting up to `lock_timeout` s for
    it; if it still cannot be written the answer goes to the spool (SPEC 3). A fetch that
    failed is recorded (or spooled) and then raised."""
    try:
        with db_lock(db, timeout=lock_timeout), Store.open(db, lock_timeout=lock_timeout) as store:
            drain_spool(store, db, hold_policy=hold_policy)
            if private:
                store.mark_private(plan.source, plan.started)
            released = (  # what earlier fetches held applies first, at its own times
                release_holds(store, plan.source, kind=plan.kind) if accept_mass_removal else []
            )
            if isinstance(answer, FetchError):
                record_fetch_error(store, plan, answer)
                raise answer
            result = store_response(
                store,
                plan,
                answer,
                accept_mass_removal=accept_mass_removal,
                hold_policy=hold_policy,
            )
            result.released = [r.fetched_at for r in released] + result.released
            return result
    except StoreError as exc:
        path = Spool(db).put(_spool_entry(plan, answer, private=private))
        if not isinstance(exc, StoreLocked):
            raise StoreError(f"{exc}; the answer is kept in {path} for the next run") from exc
        if isinstance(answer, FetchError):
            raise answer from None
        return Spooled(plan.source, plan.started, path, reason=str(exc))


def snapshot_at(
    db: Path,
    *,
    source: str,
    kind: str | None = None,
    url: str | None = None,
    force: bool = False,
    accept_mass_removal: bool = False,
    client: httpx.Client | None = None,
    token: str | None = None,
    max_attempts: int = 4,
    timeout: float | None = None,
    hold_policy: HoldPolicy | None = None,
    now: Callable[[], datetime] = utcnow,
    lock_timeout: float = 10.0,
) -> IngestResult | Skipped | Spooled:
    """`snapshot` against a database file, holding the store only to plan and to write:
    a fetch made while another process holds it is spooled, never lost."""
    plan = plan_at(
        db,
        source=source,
        kind=kind,
        url=url,
        force=force,
        hold_policy=hold_policy,
        now=now,
        lock_timeout=min(lock_timeout, 2.0),
    )
    if isinstance(plan, Skipped):
        return plan
    answer: FetchResponse | FetchError
    try:
        answer = fetch(plan, client=client, token=token, max_attempts=max_attempts, timeout=timeout)
    except FetchError as exc:
        answer = exc
    return write_at(
        db,
        plan,
        answer,
        private=bool(token),
        accept_mass_removal=accept_mass_removal,
        hold_policy=hold_policy,
        lock_timeout=lock_timeout,
    )


def _spool_entry(
    plan: FetchPlan, answer: FetchResponse | FetchError, *, private: bool
) -> SpoolEntry:
    entry = SpoolEntry(
        source=plan.source,
        kind=plan.kind,
        url=plan.url,
        fetched_at=plan.started,
        sent_etag=plan.etag,
        private=private,
        status=answer.status,
        body=answer.body,
    )
    if isinstance(answer, FetchError):
        failure = "rejected" if isinstance(answer, PayloadRejected) else "failed"
        return replace(entry, failure=failure, error=str(answer))
    return replace(entry, etag=answer.etag, max_age=answer.max_age)


def drain_spool(
    store: Store, db: Path | str, *, hold_policy: HoldPolicy | None = None
) -> list[IngestResult]:
    """Apply what the spool beside `db` holds, oldest fetch first, each at its own time;
    an entry the store already has (a kill between writing and deleting) is dropped."""
    from pipeline.fetch import FetchResponse

    spool = Spool(db)
    results: list[IngestResult] = []
    for entry in spool.entries():
        digest = content_hash(entry.body) if entry.body is not None else None
        logged = store.fetches_at(entry.source, entry.fetched_at)
        if any(
            h == digest and (o != Outcome.FAILED or entry.failure == "failed") for h, o in logged
        ):
            spool.remove(entry)
            continue
        plan = FetchPlan(
            source=entry.source,
            kind=entry.kind,
            url=entry.url,
            etag=entry.sent_etag,
            started=entry.fetched_at,
        )
        if entry.private:
            store.mark_private(entry.source, entry.fetched_at)
        try:
            if entry.failure is not None:
                kind = PayloadRejected if entry.failure == "rejected" else UpstreamError
                failure = kind(entry.error or "", status=entry.status, body=entry.body)
                results.append(record_fetch_error(store, plan, failure))
            else:
                response = FetchResponse(
                    url=entry.url,
                    status=entry.status or 200,
                    body=entry.body,
                    etag=entry.etag,
                    max_age=entry.max_age,
                    attempts=1,
                )
                results.append(store_response(store, plan, response, hold_policy=hold_policy))
        except BadInput as exc:  # e.g. older than a fetch another process stored since
            spool.set_aside(entry, str(exc))
            continue
        spool.remove(entry)
    return results
