"""Pipeline stages a person (or a flow) runs: take a snapshot, replay recorded payloads.

Each is a plain function over a `Store`; the CLI and the Prefect flows only call these.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from pipeline.fetch import FetchResponse

from pipeline.errors import BadInput, PayloadRejected, UpstreamError
from pipeline.sources import get_source
from pipeline.store import IngestResult, Store
from pipeline.timeutil import looks_timed, time_from_filename, utcnow

PAYLOAD_SUFFIXES = (".json", ".json.gz")


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
    spec = get_source(kind or source)
    target = url or spec.default_url
    last = store.last_fetch(source, target)
    started = now()
    if last and last.max_age and not force:
        fresh_until = last.fetched_at + timedelta(seconds=last.max_age)
        if started < fresh_until:
            return Skipped(source=source, last_fetch=last.fetched_at, fresh_until=fresh_until)
    etag = last.etag if last and not force else None
    return FetchPlan(source=source, kind=spec.name, url=target, etag=etag, started=started)


def record_fetch_error(store: Store, plan: FetchPlan, exc: Exception) -> IngestResult:
    """Log an upstream failure (`failed`) or an unusable body (`rejected`), keeping any body."""
    outcome = "rejected" if isinstance(exc, PayloadRejected) else "failed"
    return store.record_attempt(
        source=plan.source,
        url=plan.url,
        fetched_at=plan.started,
        outcome=outcome,
        http_status=getattr(exc, "status", None),
        error=str(exc),
        body=getattr(exc, "body", None),
    )


def store_response(
    store: Store, plan: FetchPlan, response: FetchResponse, *, accept_mass_removal: bool = False
) -> IngestResult:
    """Record what the upstream answered: 304, a final 4xx, or a body to ingest."""
    if response.status == 304:
        return store.record_attempt(
            source=plan.source,
            url=plan.url,
            fetched_at=plan.started,
            outcome="not_modified",
            http_status=304,
            etag=response.etag or plan.etag,
            max_age=response.max_age,
        )
    body = response.body or b""
    if response.status != 200:
        # a final 4xx: keep the body, record why, quoting the upstream message
        return store.record_attempt(
            source=plan.source,
            url=plan.url,
            fetched_at=plan.started,
            outcome="rejected",
            http_status=response.status,
            error=_status_error(response.status, body),
            body=body,
        )
    return store.ingest(
        body,
        source=plan.source,
        kind=plan.kind,
        url=plan.url,
        fetched_at=plan.started,
        http_status=200,
        etag=response.etag,
        max_age=response.max_age,
        accept_mass_removal=accept_mass_removal,
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
    now: Callable[[], datetime] = utcnow,
) -> IngestResult | Skipped:
    """Fetch a source once with a conditional GET and store what came back.

    Upstream failures are recorded (`failed`, with any body) before they are raised.
    """
    plan = plan_fetch(store, source=source, kind=kind, url=url, force=force, now=now)
    if isinstance(plan, Skipped):
        return plan
    try:
        response = fetch(plan, client=client, token=token, max_attempts=max_attempts)
    except (UpstreamError, PayloadRejected) as exc:
        record_fetch_error(store, plan, exc)
        raise
    return store_response(store, plan, response, accept_mass_removal=accept_mass_removal)


def fetch(
    plan: FetchPlan,
    *,
    client: httpx.Client | None = None,
    token: str | None = None,
    max_attempts: int = 4,
) -> FetchResponse:
    """The conditional GET of a plan. Bodies are kept (archived) even on failure, so an
    upstream that echoes the caller's token gets it replaced first: secrets never reach
    the database."""
    from pipeline.fetch import fetch_catalog

    try:
        response = fetch_catalog(
            plan.url, etag=plan.etag, client=client, token=token, max_attempts=max_attempts
        )
    except (UpstreamError, PayloadRejected) as exc:
        if token and exc.body:
            exc.body = redact(exc.body, token)
        raise
    if token and response.body:
        response = replace(response, body=redact(response.body, token))
    return response


def redact(body: bytes, token: str) -> bytes:
    return body.replace(token.encode(), b"[REDACTED]")


def _status_error(status: int, body: bytes) -> str:
    from pipeline.sources.aihubmix import parse_json

    try:
        doc = parse_json(body)
        message = doc.get("message") if isinstance(doc, dict) else None
    except PayloadRejected:
        message = None
    return f"HTTP {status}" + (f": {' '.join(str(message).split())!r}" if message else "")


def payload_files(directory: Path) -> list[tuple[datetime, Path]]:
    """Recorded payloads in a folder, oldest first, each with the time in its name.

    Other files (an `index.json`, a README) are not payloads and are left alone; see
    `other_files`."""
    if not directory.is_dir():
        raise BadInput(f"replay folder {str(directory)!r} does not exist or is not a folder")
    files = [p for p in directory.iterdir()
             if p.name.endswith(PAYLOAD_SUFFIXES) and looks_timed(p.name)]
    if not files:
        raise BadInput(
            f"no payloads named <YYYY-MM-DDTHH-MM-SSZ>_*.json[.gz] in {str(directory)!r}"
        )
    return sorted(
        ((time_from_filename(p.name), p) for p in files), key=lambda tp: (tp[0], tp[1].name)
    )


def other_files(directory: Path) -> list[str]:
    """Names in a replay folder that are not timed payloads (reported, not ingested)."""
    return sorted(p.name for p in directory.iterdir()
                  if p.is_file() and not (p.name.endswith(PAYLOAD_SUFFIXES)
                                          and looks_timed(p.name)))


def read_payload(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise BadInput(f"{path.name}: not a valid gzip file ({exc})") from None
    return data


def replay(
    store: Store,
    files: Iterable[tuple[datetime, Path]],
    *,
    source: str,
    kind: str | None = None,
    accept_mass_removal: bool = False,
    on_result: Callable[[Path, IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest recorded payloads oldest first; files already stored are skipped (a no-op)."""
    get_source(kind or source)
    results = []
    for fetched_at, path in files:
        result = store.ingest(
            read_payload(path),
            source=source,
            fetched_at=fetched_at,
            kind=kind,
            url=f"file:{path.name}",
            accept_mass_removal=accept_mass_removal,
        )
        results.append(result)
        if on_result is not None:
            on_result(path, result)
    return results
