"""Alerts (SPEC 5b): after a run commits, one message per `[[alerts]]` table of
`modelwatch.toml`, listing the stored changes that match it; each change is sent at most
once per alert. `send_alerts` is called by `snapshot`, `replay --alerts`, the Prefect
flows and `modelwatch up` once their write has returned, never from inside the ingest.

Which changes an alert sends
----------------------------
Each change has a key: a model change is (source, model, time, kind, field) of
`model_changes`; an outage or a hold is (source, fetch time, kind) of the fetch log; a
stale source is (source, its last success). At each run an alert sends every change
that matches it, was committed after the alert's baseline, and has no delivery row:

- The baseline is the newest fetch id in the store when the alert is first evaluated
  (`alert_baselines`), and that first run sends nothing: what was committed before is
  history, not news, so adding an alert to a store with years of history sends nothing.
  Changing what an alert matches (`on`, its filters, `min_change_pct`; not its `url`)
  starts a new baseline the same way, so widening a filter does not send the past.
- "Committed after" is by fetch id (the order of commits), not by the change's own
  time: a held change applied later (dated from its first fetch) or a spooled fetch
  applied by a later run is news when it is committed.
- A source's first snapshot is its baseline: its rows (every model `added`) are never
  sent, even to an alert older than the source.
- `failed` is the first failed or rejected fetch since the source last answered well,
  `held` the first held (`suspect`) fetch since a catalog was last accepted: later
  attempts of the same outage or hold are not news. `stale` is a source with no
  success for 3 schedule intervals (`pipeline.health`), once per outage, when it became
  stale after the alert's first run. These honour the `source` filter only; `type`,
  `model`, `features` and `modalities` (SPEC 4, `pipeline.query.filters`) and
  `min_change_pct` select model changes.
- A run that commits without sending (`replay` without `--alerts`, `backfill`) leaves
  its changes to the next run that sends: they are still news to the alert.

How a change is sent at most once
---------------------------------
1. With the store written (under `<db>.lock`), the alert's pending changes are claimed:
   rows `sending` in `alert_deliveries`, committed before anything is sent.
2. The store is let go (other processes may use it while a slow service answers) and
   one message goes out through Apprise (`pipeline.notify`).
3. The store is opened again; the rows become `sent`, or `failed` with the reason.

A `failed` row is claimed again by the next run: a retry. A row left `sending` (the
process died between 1 and 3, or the store could not be written at 3) is never sent
again: the message may have left, and for "this changed" a duplicate is worse than a
gap (`modelwatch alerts list` counts them as unconfirmed). When the store cannot be
written at 1 (another process holds it), the run sends nothing and claims nothing, so
the next run sends it all. A delivery failure is one line on stderr: it never fails,
delays or undoes the run that committed the changes.

Secrets: a URL's `${VAR}` is expanded only to send; the store keeps alert names and
change keys, and everything shown uses the URL as written.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl

from pipeline import notify
from pipeline.config import AlertConfig, Config
from pipeline.errors import BadInput, DeliveryFailed, ModelwatchError, StoreError
from pipeline.health import STALE_AFTER_INTERVALS, source_health
from pipeline.query.filters import apply_query, parse_query
from pipeline.query.plausibility import CHECK_THIS, flag_implausible
from pipeline.store import Store
from pipeline.store.alerts import AlertBaseline
from pipeline.store.locking import db_lock
from pipeline.timeutil import iso, utcnow
from schemas.record import PRICE_COLUMNS

MAX_LINES = 20  # changes listed in one message; the rest are counted ("and 3 more")
SETTLE_WAIT = 30.0  # seconds to wait for the store to record what was sent
MODEL_KINDS = ("added", "removed", "returned", "changed", "price_cut", "price_rise")
_VALUE_WIDTH = 80  # characters of a catalog value shown in a message
_ID_WIDTH = 120


# -- what changed, as a person reads it ------------------------------------------------------
def clean(text: object, width: int = _VALUE_WIDTH) -> str:
    """Catalog text as one safe line: control and format characters (line breaks, bidi
    overrides) shown as U+FFFD, at most `width` characters."""
    shown = "".join(
        "\ufffd" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") else c
        for c in str(text)
    )
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def usd(value: float) -> str:
    """`$2.50`, `$0.075`, `$2,500.00`: cents when they say it all, else every digit."""
    if round(value, 2) == value:
        return f"${value:,.2f}"
    return "$" + format(Decimal(repr(value)).normalize(), "f")


def _number(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,g}"


def _listed(value: str | None) -> str:
    return clean(value.replace(",", ", ")) if value else "none"


def describe(row: dict[str, Any]) -> str:
    """One line of a message for one `model_changes` row (with its `check` flag)."""
    model, kind, name = clean(row["model_id"], _ID_WIDTH), row["kind"], row["field"]
    if kind != "changed":
        return f"{kind} {model}"
    label = str(name).replace("_", " ")
    old, new = row["old_number"], row["new_number"]
    if name in PRICE_COLUMNS:
        if old is None:
            text = f"{label} now {usd(new)} per 1M tokens"
        elif new is None:
            text = f"{label} no longer listed (was {usd(old)} per 1M tokens)"
        else:
            pct = row["pct_change"]
            percent = f" ({pct:+.1f}%)" if pct is not None else ""
            text = f"{label} {usd(old)} → {usd(new)} per 1M tokens{percent}"
    elif name in ("context_length", "max_output"):
        text = f"{label} {_number(old)} → {_number(new)}"
    elif name in ("types", "features", "input_modalities"):
        before, after = (_listed(row[k]) for k in ("old_value", "new_value"))
        text = f"{label} {before} → {after}"
    else:  # description, extra: long free text
        text = f"{'other fields' if name == 'extra' else label} changed"
    check = f" — {CHECK_THIS}" if row.get("check") else ""
    return f"{model}: {text}{check}"


@dataclass(frozen=True)
class Change:
    """One thing an alert may send: its key, the fetch that committed it, its line."""

    key: str
    fetch_id: int | None
    source: str
    kind: str  # added ... price_rise, failed, stale, held
    line: str
    model_id: str | None = None
    retry: bool = False  # a failed delivery sent again


def _key(*parts: object) -> str:
    return json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])


def _model_changes(store: Store, alert: AlertConfig, config: Config, after: int) -> list[Change]:
    rows = store.changes_committed_after(after)
    if alert.source:
        rows = rows.filter(pl.col("source") == alert.source)
    if not rows.height:
        return []
    price = pl.col("field").is_in(list(PRICE_COLUMNS))
    changed = pl.col("kind") == "changed"
    rows = rows.with_columns(
        pl.when(changed & price & (pl.col("new_number") < pl.col("old_number")))
        .then(pl.lit("price_cut"))
        .when(changed & price & (pl.col("new_number") > pl.col("old_number")))
        .then(pl.lit("price_rise"))
        .otherwise(pl.col("kind"))
        .alias("label")
    ).filter(pl.col("kind").is_in(list(alert.on)) | pl.col("label").is_in(list(alert.on)))
    if alert.min_change_pct is not None:
        small = price & (pl.col("pct_change").abs() < alert.min_change_pct)
        rows = rows.filter(~small.fill_null(False))
    if any(alert.filters().values()) and rows.height:
        query = parse_query(store.catalog_values(alert.source), **alert.filters())
        rows = apply_query(rows.with_columns(pl.int_range(pl.len()).alias("position")), query)
        rows = rows.sort("position")
    rows = flag_implausible(rows, config.plausibility_factor)
    return [
        Change(
            key=_key("change", r["source"], r["model_id"], r["changed_at"], r["kind"], r["field"]),
            fetch_id=r["fetch_id"],
            source=r["source"],
            kind=r["label"],
            line=describe(r),
            model_id=r["model_id"],
        )
        for r in rows.iter_rows(named=True)
    ]


def _fetch_events(store: Store, alert: AlertConfig, after: int) -> list[Change]:
    rows = store.fetch_events_after(after).filter(pl.col("kind").is_in(list(alert.on)))
    if alert.source:
        rows = rows.filter(pl.col("source") == alert.source)
    changes = []
    for r in rows.iter_rows(named=True):
        error = clean(r["error"] or "no detail", 200)
        what = (
            f"snapshot held at {iso(r['fetched_at'])}, not applied"
            if r["kind"] == "held"
            else f"fetch {r['outcome']} at {iso(r['fetched_at'])}"
        )
        changes.append(
            Change(
                key=_key("fetch", r["source"], r["fetched_at"], r["kind"]),
                fetch_id=r["fetch_id"],
                source=r["source"],
                kind=r["kind"],
                line=f"{clean(r['source'])}: {what}: {error}",
            )
        )
    return changes


def _stale(
    store: Store,
    alert: AlertConfig,
    config: Config,
    baseline: AlertBaseline,
    now: datetime,
    failed: set[str],
) -> list[Change]:
    """Stale sources that became stale after the alert's first run (or whose message
    failed): one change per outage, keyed by the last success."""
    changes = []
    for h in source_health(store, config, now=now):
        reference = h.last_success or h.last_attempt
        if not h.stale or reference is None or alert.source not in (None, h.source):
            continue
        key = _key("stale", h.source, reference)
        if reference + STALE_AFTER_INTERVALS * h.interval <= baseline.since and key not in failed:
            continue  # stale before the alert's first run: not news
        since = f"since {iso(h.last_success)}" if h.last_success else "ever"
        changes.append(
            Change(
                key=key,
                fetch_id=None,
                source=h.source,
                kind="stale",
                line=f"{clean(h.source)}: stale, no successful fetch {since} "
                f"(scheduled every {_every(h.interval)})",
            )
        )
    return changes


def _every(interval: timedelta) -> str:
    minutes = interval.total_seconds() / 60
    if minutes < 60:
        return f"{minutes:g} min"
    return f"{minutes / 60:g} h" if minutes < 24 * 60 else f"{minutes / 1440:g} days"


def pending_changes(
    store: Store, alert: AlertConfig, config: Config, baseline: AlertBaseline, *, now: datetime
) -> list[Change]:
    """What `alert` sends next (the rule in the module docstring), in commit order. A
    filter value SPEC 4 rejects raises `BadParameter`."""
    deliveries = store.alert_deliveries(alert.name)
    failed = {k for k, d in deliveries.items() if d.state == "failed"}
    after = min(
        [baseline.after_fetch]
        + [d.fetch_id - 1 for d in deliveries.values() if d.state == "failed" and d.fetch_id]
    )
    found: list[Change] = []
    if set(alert.on) & set(MODEL_KINDS):
        found += _model_changes(store, alert, config, after)
    if set(alert.on) & {"failed", "held"}:
        found += _fetch_events(store, alert, after)
    if "stale" in alert.on:
        found += _stale(store, alert, config, baseline, now, failed)
    pending = []
    for c in found:
        if c.key in failed:
            pending.append(replace(c, retry=True))
        elif c.key not in deliveries and (c.fetch_id is None or c.fetch_id > baseline.after_fetch):
            pending.append(c)
    return pending


# -- messages ---------------------------------------------------------------------------------
_NOUNS = {
    "failed": ("failed fetch", "failed fetches"),
    "held": ("held snapshot", "held snapshots"),
    "stale": ("stale source", "stale sources"),
}


def counted(changes: list[Change]) -> str:
    """`3 changes`, `1 failed fetch`, `2 changes, 1 held snapshot`."""
    groups: dict[tuple[str, str], int] = {}
    for c in changes:
        noun = _NOUNS.get(c.kind, ("change", "changes"))
        groups[noun] = groups.get(noun, 0) + 1
    return ", ".join(f"{n} {one if n == 1 else many}" for (one, many), n in groups.items())


def model_link(base_url: str, source: str, model_id: str) -> str:
    """The model's page of the served history (SPEC 5 "Pages for people")."""
    return f"{base_url}/models/{quote(model_id, safe='/')}?source={quote(source, safe='')}"


def message(
    alert: AlertConfig, changes: list[Change], *, base_url: str | None, limit: int = MAX_LINES
) -> tuple[str, str]:
    """(title, plain-text body) of the message listing `changes` for `alert`."""
    sources = list(dict.fromkeys(c.source for c in changes))
    title = f"modelwatch: {counted(changes)} in {', '.join(map(clean, sources))} ({alert.name})"
    shown = changes[:limit]
    lines = []
    for i, c in enumerate(shown):
        lines.append((f"[{clean(c.source)}] " if len(sources) > 1 else "") + c.line)
        after = shown[i + 1] if i + 1 < len(shown) else None
        last_of_model = after is None or (after.source, after.model_id) != (c.source, c.model_id)
        if base_url and c.model_id is not None and last_of_model:
            lines.append(f"  {model_link(base_url, c.source, c.model_id)}")
    if len(changes) > limit:
        lines.append(f"and {len(changes) - limit} more")
    return clean(title, 250), "\n".join(lines)


def sample_message(alert: AlertConfig, config: Config) -> tuple[str, str]:
    """What `modelwatch alerts test` sends: the lines a real message would have."""
    example = {"model_id": "openai/gpt-4o", "kind": "changed", "field": "input_price"}
    price = describe(
        {**example, "old_number": 2.5, "new_number": 1.25, "pct_change": -50.0, "check": False}
    )
    changes = [
        Change(
            key="",
            fetch_id=None,
            source="example",
            kind="price_cut",
            line=price,
            model_id="openai/gpt-4o",
        ),
        Change(
            key="",
            fetch_id=None,
            source="example",
            kind="added",
            line=describe({"model_id": "anthropic/claude-x", "kind": "added", "field": None}),
            model_id="anthropic/claude-x",
        ),
    ]
    _, body = message(alert, changes, base_url=config.base_url)
    return (
        f"modelwatch: test message ({alert.name})",
        f"This is a test of the modelwatch alert {alert.name!r}. When stored changes match "
        f"it, a message lists them like this:\n\n{body}",
    )


def check_scheme(alert: AlertConfig) -> None:
    """`BadInput` naming the alert when Apprise has no plugin for its URL's scheme."""
    scheme = alert.scheme()
    if scheme is not None and not notify.known_scheme(scheme):
        raise BadInput(
            f"alert {alert.name!r}: url scheme {scheme + '://'!r} is not one Apprise knows "
            "(e.g. json://, form://, slack://, discord://, ntfy://, mailto://)"
        )


def deliver(alert: AlertConfig, title: str, body: str) -> str | None:
    """Send one message to the alert's URL: None when delivered, else why not (one
    line, no secret). The URL's `${VAR}` are expanded here and nowhere else."""
    try:
        url, secrets = alert.expand_url()
    except BadInput as exc:
        return str(exc)
    return notify.send(url, title=title, body=body, secrets=secrets)


def send_sample(alert: AlertConfig, config: Config) -> None:
    """Send the sample message now (`alerts test`); `DeliveryFailed` if it did not go."""
    check_scheme(alert)
    title, body = sample_message(alert, config)
    error = deliver(alert, title, body)
    if error:
        raise DeliveryFailed(f"alert {alert.name!r}: {error}")


# -- a run ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertOutcome:
    alert: str
    state: str  # baseline, sent, failed, error, unrecorded
    changes: str = ""  # counted: "3 changes"
    error: str | None = None

    def line(self) -> str:
        name = repr(self.alert)
        if self.state == "baseline":
            return f"alert {name}: first run, nothing sent; it sends what is committed from now on"
        if self.state == "sent":
            return f"alert {name}: sent {self.changes}"
        if self.state == "failed":
            return f"alert {name}: {self.changes} not delivered ({self.error}); retried next run"
        if self.state == "unrecorded":
            return (
                f"alert {name}: the store could not record what became of {self.changes} "
                f"({self.error}); they are not sent again"
            )
        said = str(self.error)
        return said if said.startswith(f"alert {name}: ") else f"alert {name}: {said}"


@dataclass
class AlertRun:
    """What one run's alerts did; `skipped` says why none was evaluated."""

    outcomes: list[AlertOutcome] = field(default_factory=list)
    skipped: str | None = None

    def lines(self) -> list[str]:
        if self.skipped:
            return [f"alerts: nothing sent, the store is busy ({self.skipped}); the next run sends"]
        return [o.line() for o in self.outcomes]

    def summary(self) -> list[dict[str, Any]]:
        """Alert names, states, counts and lines (never a URL): for flow results."""
        if self.skipped:
            return [{"alert": None, "state": "skipped", "line": self.lines()[0]}]
        return [
            {"alert": o.alert, "state": o.state, "changes": o.changes, "line": o.line()}
            for o in self.outcomes
        ]


def send_alerts(
    db: Path | str,
    config: Config,
    *,
    now: Callable[[], datetime] = utcnow,
    lock_timeout: float = 10.0,
    limit: int = MAX_LINES,
) -> AlertRun:
    """Evaluate every configured alert against the store at `db` and send one message
    per alert with pending changes (the protocol in the module docstring). Never raises
    for a delivery or a busy store: the outcome says what happened."""
    if not config.alerts:
        return AlertRun()
    run = AlertRun()
    claimed: list[tuple[AlertConfig, list[Change]]] = []
    try:
        with db_lock(db, timeout=lock_timeout), Store.open(db, lock_timeout=lock_timeout) as store:
            at = now()
            for alert in config.alerts:
                try:
                    check_scheme(alert)
                    with store.transaction():
                        baseline = store.alert_baseline(alert.name)
                        if baseline is None or baseline.definition != alert.definition():
                            store.start_alert(alert.name, definition=alert.definition(), now=at)
                            run.outcomes.append(AlertOutcome(alert.name, "baseline"))
                            continue
                        changes = pending_changes(store, alert, config, baseline, now=at)
                        if changes:
                            store.claim_deliveries(
                                alert.name,
                                [c.key for c in changes],
                                [c.fetch_id for c in changes],
                                at=at,
                            )
                            claimed.append((alert, changes))
                except BadInput as exc:  # a filter value SPEC 4 rejects: this alert only
                    run.outcomes.append(AlertOutcome(alert.name, "error", error=str(exc)))
                except Exception as exc:  # its claim rolled back; what others claimed goes
                    error = notify.one_line(f"{type(exc).__name__}: {exc}")
                    run.outcomes.append(AlertOutcome(alert.name, "error", error=error))
                    if isinstance(exc, StoreError):
                        break  # the store failed: the next run evaluates the rest
    except ModelwatchError as exc:  # busy (or unreadable) when opened: nothing was claimed
        return AlertRun(skipped=str(exc))
    sent = []
    for alert, changes in claimed:
        title, body = message(alert, changes, base_url=config.base_url, limit=limit)
        sent.append((alert, changes, deliver(alert, title, body)))
    if not sent:
        return run
    try:
        with (
            db_lock(db, timeout=SETTLE_WAIT),
            Store.open(db, lock_timeout=SETTLE_WAIT) as store,
            store.transaction(),
        ):
            for alert, changes, failure in sent:
                store.settle_deliveries(
                    alert.name, [c.key for c in changes], sent=failure is None, error=failure
                )
    except ModelwatchError as exc:
        run.outcomes += [
            AlertOutcome(a.name, "unrecorded", counted(c), notify.one_line(str(exc)))
            for a, c, _ in sent
        ]
        return run
    run.outcomes += [
        AlertOutcome(a.name, "sent" if e is None else "failed", counted(c), e) for a, c, e in sent
    ]
    return run


# -- what `modelwatch alerts list` shows ---------------------------------------------------
@dataclass(frozen=True)
class AlertStatus:
    alert: AlertConfig
    last_sent: datetime | None = None
    pending: int | None = None  # None: not evaluated yet (or its definition changed)
    failed: int = 0
    unconfirmed: int = 0  # left `sending` by a run that died: never sent again
    error: str | None = None

    def filters(self) -> str:
        a = self.alert
        shown = [f"{k}={v}" for k, v in {"source": a.source, **a.filters()}.items() if v]
        if a.min_change_pct is not None:
            shown.append(f"min_change_pct={a.min_change_pct:g}")
        return " ".join(shown) or "-"


def alert_status(store: Store | None, config: Config, *, now: datetime) -> list[AlertStatus]:
    """Each configured alert: when it last sent, what waits, what failed (read only)."""
    summary = store.alert_summary() if store is not None else {}
    rows = []
    for alert in config.alerts:
        done = summary.get(alert.name, {})
        pending, error = None, None
        baseline = store.alert_baseline(alert.name) if store is not None else None
        if store is not None and baseline and baseline.definition == alert.definition():
            try:
                pending = sum(
                    not c.retry for c in pending_changes(store, alert, config, baseline, now=now)
                )
            except BadInput as exc:
                error = str(exc)
        rows.append(
            AlertStatus(
                alert,
                last_sent=done.get("last_sent"),
                pending=pending,
                failed=done.get("failed", 0),
                unconfirmed=done.get("sending", 0),
                error=error,
            )
        )
    return rows
