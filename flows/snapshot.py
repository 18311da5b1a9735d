"""Prefect flows: scheduled catalog snapshots, their reports, and staleness alerts.

The tasks wrap the library's stages (`pipeline.ingest`): plan (ETag, max-age), fetch (with
Prefect retries and exponential backoff), store. The flows add what only an orchestrator
gives: retries, artifacts per source, events for automations, schedules.

Events:
    modelwatch.catalog.changed   a snapshot changed the history (counts in the payload)
    modelwatch.catalog.failed    a snapshot failed, was rejected or held as suspect
    modelwatch.source.stale      a source had no success for 3 schedule intervals
    modelwatch.hold.started      a source's first held (suspect) snapshot since it was fine
    modelwatch.hold.resolved     held snapshots were applied (confirmed, or accepted)

After the write, the `alerts` task sends the `[[alerts]]` of the config (SPEC 5b,
`pipeline.alerts`); its result and logs hold alert names and counts, never a URL.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.tasks import exponential_backoff

from pipeline.config import Config, HoldPolicy, SourceConfig, load_config, resolve_db
from pipeline.errors import FetchError, ModelwatchError, PayloadRejected, RunFailed
from pipeline.ingest import FetchPlan, Skipped, Spooled, plan_at, write_at
from pipeline.outcome import NOT_APPLIED, IngestResult, Outcome
from pipeline.store import Store
from pipeline.store.locking import db_lock

LOCK_TIMEOUT = 60.0


def _db(db: str | None, config: Config | None = None) -> Path:
    return resolve_db(db, config)


@task(name="plan-fetch")
def plan_task(db: str, source: SourceConfig, force: bool = False) -> FetchPlan | Skipped:
    """Plan from the store, holding it only to read; a busy store gives a plain GET."""
    return plan_at(
        Path(db),
        source=source.name,
        kind=source.kind,
        url=source.url,
        force=force,
        hold_policy=source.hold,
    )


@task(
    name="fetch",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
)
def fetch_task(plan: FetchPlan, token_env: str | None = None) -> Any:
    """One HTTP attempt per try; Prefect owns the retries (and shows them in the UI)."""
    from pipeline.ingest import fetch

    token = os.environ.get(token_env) if token_env else None
    return fetch(plan, token=token, max_attempts=1)


@task(name="record-failure")
def record_failure_task(db: str, plan: FetchPlan, error: FetchError, private: bool = False) -> str:
    """Record a failed fetch (or spool it while the store is busy); its outcome."""
    with suppress(FetchError):  # recorded (or spooled): the flow raises it itself
        write_at(Path(db), plan, error, private=private, lock_timeout=LOCK_TIMEOUT)
    return str(Outcome.REJECTED if isinstance(error, PayloadRejected) else Outcome.FAILED)


@task(name="store")
def store_task(
    db: str,
    plan: FetchPlan,
    response: Any,
    accept_mass_removal: bool = False,
    private: bool = False,
    hold_policy: HoldPolicy | None = None,
) -> IngestResult | Spooled:
    """Write what was fetched; a store still busy after LOCK_TIMEOUT s gets it spooled."""
    return write_at(
        Path(db),
        plan,
        response,
        private=private,  # fetched with a token: a token-scoped list, never public
        accept_mass_removal=accept_mass_removal,
        hold_policy=hold_policy,
        lock_timeout=LOCK_TIMEOUT,
    )


def changes_markdown(result: IngestResult, price_rows: list[dict[str, Any]]) -> str:
    """The run's "what changed" report. Model ids, the source and the error come from
    outside: ids are shown as code spans that cannot be left (no backtick, no line
    break, `|` escaped in table cells), other text as character references; no string
    can start a block, a table cell or an HTML tag. (Prices are the store's own.)"""
    import unicodedata

    def visible(v: str) -> str:
        """Line breaks and other invisible characters as escapes: one line, always."""
        names = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
        return "".join(
            names.get(c, f"\\u{ord(c):04x}")
            if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
            else c
            for c in v
        )

    def code(v: str, *, cell: bool = False) -> str:
        text = visible(str(v).replace("`", "")).strip() or " "
        return f"`{text.replace('|', chr(92) + '|') if cell else text}`"

    def text(v: object) -> str:
        """Plain markdown text: letters, digits and a few marks as they are, any other
        character as a numeric character reference (so nothing is markup)."""
        return "".join(
            c if c.isalnum() or c in " -.,:/@%+" else f"&#{ord(c)};" for c in visible(str(v))
        )

    def ids(values: list[str]) -> str:
        return ", ".join(code(v) for v in values) or "none"

    lines = [
        f"# {text(result.source)}: {result.outcome} at {result.fetched_at:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"- models: {result.models}",
        f"- added: {ids(result.added)}",
        f"- removed: {ids(result.removed)}",
        f"- returned: {ids(result.returned)}",
        f"- changed: {ids(result.changed)}",
        f"- quarantined rows: {result.quarantined}",
    ]
    if price_rows:
        lines += ["", "| model | price | old | new | change |", "|---|---|---:|---:|---:|"]
        for r in price_rows:
            pct = "" if r["pct_change"] is None else f"{r['pct_change']:+.2f}%"
            lines.append(
                f"| {code(r['model_id'], cell=True)} | {r['price']} | "
                f"{r['old_price']} | {r['new_price']} | {pct} |"
            )
    error = text(result.error or "").strip()
    if error:
        lines += ["", f"**{error}**"]
    return "\n".join(lines)


@task(name="report")
def report_task(db: str, result: IngestResult) -> dict[str, Any]:
    """Artifacts keyed per source (so the UI keeps their history) and an event."""
    key = "".join(c if c.isalnum() else "-" for c in result.source.lower())
    price_rows: list[dict[str, Any]] = []
    holds = 0
    if result.outcome in (Outcome.NEW, Outcome.SUSPECT):
        with db_lock(db, timeout=LOCK_TIMEOUT), Store.open(db, read_only=True) as store:
            price_rows = store.price_changes_at(result.source, result.fetched_at)
            holds = len(store.pending_holds(result.source))
    create_markdown_artifact(
        markdown=changes_markdown(result, price_rows),
        key=f"{key}-changes",
        description=f"What changed in {result.source}",
    )
    create_table_artifact(
        table=price_rows
        or [
            {
                "model_id": None,
                "price": None,
                "old_price": None,
                "new_price": None,
                "pct_change": None,
            }
        ],
        key=f"{key}-price-changes",
        description=f"Price changes in {result.source} at {result.fetched_at:%Y-%m-%d %H:%M}",
    )
    counts = summary_of(result)
    resource = {"prefect.resource.id": f"modelwatch.source.{result.source}"}
    if result.outcome is Outcome.SUSPECT and holds == 1:
        emit_event(event="modelwatch.hold.started", resource=resource, payload=counts)
    if result.released:
        released = [t.isoformat() for t in result.released]
        emit_event(
            event="modelwatch.hold.resolved",
            resource=resource,
            payload={**counts, "applied_fetches": released},
        )
    if result.outcome is Outcome.NEW:
        emit_event(
            event="modelwatch.catalog.changed",
            resource={"prefect.resource.id": f"modelwatch.source.{result.source}"},
            payload={**counts, "price_changes": len(price_rows)},
        )
    return counts


@task(name="alerts")
def alerts_task(db: str, config_path: str | None = None) -> list[dict[str, Any]]:
    """Send the alerts of the config after the write (SPEC 5b): one message per alert.
    Returns names, states and counts, never a URL; a failed delivery fails nothing."""
    from pipeline.alerts import send_alerts

    config = load_config(Path(config_path) if config_path else None)
    return send_alerts(Path(db), config, lock_timeout=LOCK_TIMEOUT).summary()


def _send_alerts(logger: Any, db: str, config: Config, config_path: str | None) -> None:
    if not config.alerts:
        return
    try:
        for outcome in alerts_task(db, config_path):
            level = logger.info if outcome["state"] in ("sent", "baseline") else logger.warning
            level("%s", outcome["line"])
    except Exception as exc:  # never fails the snapshot it follows
        logger.warning("alerts not sent: %s: %s", type(exc).__name__, exc)


@task(name="html-report")
def html_report_task(db: str, source: str, out: str) -> str:
    """Rewrite the HTML report and link it from the run."""
    from prefect.artifacts import create_link_artifact

    from pipeline.report import write_report

    with db_lock(db, timeout=LOCK_TIMEOUT), Store.open(db, read_only=True) as store:
        path = write_report(store, Path(out), source=source).resolve()
    key = "".join(c if c.isalnum() else "-" for c in source.lower())
    create_link_artifact(
        link=path.as_uri(),
        link_text=f"{source} report",
        key=f"{key}-report",
        description="What changed, price trends, capabilities (HTML)",
    )
    return str(path)


def summary_of(result: IngestResult) -> dict[str, Any]:
    return {
        "source": result.source,
        "outcome": str(result.outcome),
        "models": result.models,
        "added": len(result.added),
        "removed": len(result.removed),
        "returned": len(result.returned),
        "changed": len(result.changed),
        "quarantined": result.quarantined,
        "error": result.error,
    }


def _fail_event(source: str, outcome: str, error: str) -> None:
    emit_event(
        event="modelwatch.catalog.failed",
        resource={"prefect.resource.id": f"modelwatch.source.{source}"},
        payload={"outcome": outcome, "error": error},
    )


@flow(name="snapshot-catalog", log_prints=False)
def snapshot_catalog(
    source: str = "aihubmix",
    url: str | None = None,
    db: str | None = None,
    force: bool = False,
    accept_mass_removal: bool = False,
    config_path: str | None = None,
    fetch_retries: int = 3,
    retry_backoff: float = 10.0,
    report_path: str | None = None,
) -> dict[str, Any]:
    """Snapshot one catalog; Failed (never swallowed) if the upstream or its body fails.

    With `report_path`, a run that changed the history also rewrites that HTML report
    and links it as an artifact."""
    logger = get_run_logger()
    config = load_config(Path(config_path) if config_path else None)
    try:
        spec = config.source(source)
    except ModelwatchError:  # not in the config file: the adapter of that name, defaults
        spec = SourceConfig(name=source, kind=source, url=url or plan_default_url(source))
    if url:
        spec = SourceConfig(
            name=spec.name,
            kind=spec.kind,
            url=url,
            schedule=spec.schedule,
            token_env=spec.token_env,
        )
    path = str(_db(db, config))
    spec.token()  # a named token variable that is unset fails the run now, as in the CLI
    plan = plan_task(path, spec, force)
    if isinstance(plan, Skipped):
        logger.info("%s: skipped, fresh until %s", source, plan.fresh_until)
        return {"source": source, "outcome": "skipped"}
    fetch = fetch_task.with_options(
        retries=fetch_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=retry_backoff)
        if retry_backoff > 0
        else 0,
    )
    try:
        response = fetch(plan, spec.token_env)
    except FetchError as exc:
        outcome = record_failure_task(path, plan, exc, bool(spec.token_env))
        _fail_event(source, outcome, str(exc))
        _send_alerts(logger, path, config, config_path)
        raise
    result = store_task(path, plan, response, accept_mass_removal, bool(spec.token_env), spec.hold)
    if isinstance(result, Spooled):
        logger.warning("%s: the store is busy (%s); spooled %s", source, result.reason, result.path)
        return {"source": source, "outcome": "spooled", "path": str(result.path)}
    counts = report_task(path, result)
    report_to = report_path or config.report
    if report_to and result.outcome is Outcome.NEW:
        html_report_task(path, source, report_to)
    logger.info("%s: %s", source, counts)
    _send_alerts(logger, path, config, config_path)
    if result.outcome in (Outcome.REJECTED, Outcome.SUSPECT):
        _fail_event(source, result.outcome, result.error or "")
        raise RunFailed(f"{source}: {result.outcome}: {result.error}")
    return counts


def plan_default_url(source: str) -> str:
    from pipeline.sources import get_source

    return get_source(source).default_url


@flow(name="snapshot-all")
def snapshot_all(
    db: str | None = None,
    config_path: str | None = None,
    fetch_retries: int = 3,
    retry_backoff: float = 10.0,
) -> dict[str, Any]:
    """Every configured source at once, isolated: one failing source stops no other."""
    config = load_config(Path(config_path) if config_path else None)
    futures = {
        s.name: snapshot_task.submit(s.name, db, config_path, fetch_retries, retry_backoff)
        for s in config.sources
    }
    results: dict[str, Any] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result()
        except Exception as exc:  # reported per source; the others still ran
            results[name] = {"source": name, "outcome": Outcome.FAILED, "error": str(exc)}
    failed = [n for n, r in results.items() if r.get("outcome") in NOT_APPLIED]
    if failed:
        raise RunFailed(
            f"sources failed: {', '.join(failed)}; others: "
            f"{', '.join(n for n in results if n not in failed) or 'none'}"
        )
    return results


@task(name="snapshot-source")
def snapshot_task(
    source: str,
    db: str | None,
    config_path: str | None,
    fetch_retries: int = 3,
    retry_backoff: float = 10.0,
) -> dict[str, Any]:
    return snapshot_catalog(
        source=source,
        db=db,
        config_path=config_path,
        fetch_retries=fetch_retries,
        retry_backoff=retry_backoff,
    )


@flow(name="check-staleness")
def check_staleness(db: str | None = None, config_path: str | None = None) -> list[str]:
    """Emit `modelwatch.source.stale` for each source without a success in 3 intervals."""
    from pipeline.health import source_health

    config = load_config(Path(config_path) if config_path else None)
    path = _db(db, config)
    with db_lock(path, timeout=LOCK_TIMEOUT), Store.open(path, read_only=True) as store:
        health = source_health(store, config)
    stale = [h for h in health if h.stale]
    for h in stale:
        emit_event(
            event="modelwatch.source.stale",
            resource={"prefect.resource.id": f"modelwatch.source.{h.source}"},
            payload={
                "last_success": h.last_success.isoformat() if h.last_success else None,
                "interval_seconds": h.interval.total_seconds(),
            },
        )
    return [h.source for h in stale]
