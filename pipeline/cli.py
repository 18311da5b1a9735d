"""`modelwatch` command line (SPEC 7). Each command opens the store and calls one
library function; errors become one line on stderr and a non-zero exit.

Exit codes: 0 done, 1 error (bad input, rejected or failed fetch), 3 held as suspect.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.errors import BadInput, ModelwatchError, StoreError
from pipeline.outcome import NOT_APPLIED, IngestResult, Outcome
from pipeline.store import Store
from pipeline.timeutil import iso, parse_time

app = typer.Typer(
    name="modelwatch",
    help="Keep a complete, queryable history of AI model catalogs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__

        sys.stdout.write(f"modelwatch {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Keep a complete, queryable history of AI model catalogs."""


# Piped output gets wide tables rather than rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_ERROR = 1
EXIT_SUSPECT = 3
BUNDLED_HISTORY = Path(__file__).resolve().parent.parent / "data" / "aihubmix-modelsdev"

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB file (default: $MODELWATCH_DB, else db in modelwatch.toml, "
        "else data/catalog.duckdb)",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="sources file [default: modelwatch.toml]")
]
SourceOption = Annotated[str, typer.Option("--source", help="catalog source name")]
KindOption = Annotated[
    str | None,
    typer.Option("--kind", help="adapter, when the source is named otherwise (default: --source)"),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def db_path(db: Path | None, config: Any = None) -> Path:
    """SPEC 7's resolution, the same for every command and flow (`resolve_db`)."""
    from pipeline.config import resolve_db

    return resolve_db(db, config)


def _writable(db: Path | None, config: Any = None) -> Path:
    """The database path a writer uses; the default folder is created for it."""
    from pipeline.config import DEFAULT_DB

    path = db_path(db, config)
    if path == DEFAULT_DB:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def open_store(db: Path | None, *, read_only: bool = False, config: Any = None) -> Store:
    """The store; the default folder is created for a writer, and a reader that finds no
    store is told how to make one."""
    from pipeline.config import DEFAULT_DB

    path = db_path(db, config)
    if path == DEFAULT_DB and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not path.exists():
        raise BadInput(
            f"database {str(path)!r} does not exist; create it with `modelwatch demo` "
            "(the bundled history), `modelwatch snapshot` or `modelwatch replay`, "
            "or point --db / MODELWATCH_DB at one"
        )
    return Store.open(path, read_only=read_only)


def _time(value: str | None, name: str) -> datetime | None:
    return None if value is None else parse_time(value, name=name)


def _describe(result: IngestResult) -> str:
    parts = [f"{result.source} {iso(result.fetched_at)}: {result.outcome}"]
    if result.outcome in (Outcome.NEW, Outcome.UNCHANGED, Outcome.SUSPECT):
        parts.append(f"{result.models} models")
    counts = [
        (len(result.added), "added"),
        (len(result.removed), "removed"),
        (len(result.returned), "returned"),
        (len(result.changed), "changed"),
        (result.quarantined, "quarantined"),
    ]
    parts += [f"{n} {label}" for n, label in counts if n]
    if result.unknown_values:
        parts.append(
            "new values "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in result.unknown_values.items())
        )
    if result.released:
        parts.append(
            f"applied {len(result.released)} held fetches from {iso(result.released[0])} on"
        )
    if result.error:
        parts.append(result.error)
    return ", ".join(parts)


@app.command()
def snapshot(
    source: SourceOption = "aihubmix",
    kind: KindOption = None,
    url: Annotated[str | None, typer.Option(help="catalog URL (default: the source's)")] = None,
    force: Annotated[
        bool, typer.Option(help="fetch even within max-age; no If-None-Match")
    ] = False,
    accept_mass_removal: Annotated[
        bool, typer.Option(help="apply a snapshot that removes over half the models")
    ] = False,
    retries: Annotated[
        int, typer.Option(min=0, max=10, help="retries on 5xx, 429, network errors")
    ] = 3,
    token_env: Annotated[
        str | None, typer.Option(help="name of an env variable holding a bearer token")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds for the whole fetch, retries included")
    ] = 60.0,
    wait: Annotated[
        float, typer.Option(min=0, help="seconds to wait for a busy store before spooling")
    ] = 10.0,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Fetch a catalog once (conditional GET) and store it.

    The store is held only to plan and to write: while another process holds it, the
    answer is spooled beside it and applied by the next run (exit 0). Then the alerts
    of modelwatch.toml send what changed."""
    from pipeline.config import load_config
    from pipeline.ingest import Skipped, Spooled, snapshot_at

    token = os.environ.get(token_env) if token_env else None
    if token_env and not token:
        raise BadInput(f"environment variable {token_env!r} is not set")
    cfg = load_config(config)
    path = _writable(db, cfg)
    with err.status(f"{source}: fetching", spinner="dots") if err.is_terminal else nullcontext():
        result = snapshot_at(
            path,
            source=source,
            kind=kind,
            url=url,
            force=force,
            accept_mass_removal=accept_mass_removal,
            token=token,
            max_attempts=retries + 1,
            timeout=timeout,
            hold_policy=cfg.hold_policy(source),
            lock_timeout=wait,
        )
    if isinstance(result, Spooled):  # the store is busy: the alerts wait for the next run
        out.print(
            f"{source} {iso(result.fetched_at)}: spooled, the store is busy "
            f"({result.reason}); the next run that can write applies it",
            markup=False,
        )
        return
    if isinstance(result, Skipped):
        out.print(
            f"{source}: skipped, the last answer ({iso(result.last_fetch)}) is fresh "
            f"until {iso(result.fresh_until)}; use --force to fetch anyway"
        )
        _send_alerts(path, cfg, wait)  # retries, and sources gone stale
        return
    _send_alerts(path, cfg, wait)
    _finish([result])


def _send_alerts(path: Path, cfg: Any, wait: float = 10.0) -> None:
    """The alerts of `cfg` after a run committed (SPEC 5b): one line each on stderr; a
    delivery that fails never changes the run's exit code."""
    if not cfg.alerts:
        return
    from pipeline.alerts import send_alerts

    try:
        lines = send_alerts(path, cfg, lock_timeout=wait).lines()
    except Exception as exc:  # a bug in sending must not fail a committed snapshot
        lines = [f"alerts: not sent: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"]
    for line in lines:
        err.print(line, markup=False)


def _finish(results: list[IngestResult]) -> None:
    failed = [r for r in results if r.outcome in (Outcome.REJECTED, Outcome.FAILED)]
    suspect = _still_held(results)
    if len(results) == 1:
        line = _describe(results[0])
        (err if failed or suspect else out).print(line)
    if failed:
        raise typer.Exit(EXIT_ERROR)
    if suspect:
        raise typer.Exit(EXIT_SUSPECT)


@app.command()
def replay(
    directory: Annotated[Path, typer.Argument(help="folder of <YYYY-MM-DDTHH-MM-SSZ>_*.json[.gz]")],
    source: SourceOption = "aihubmix",
    kind: KindOption = None,
    accept_mass_removal: Annotated[
        bool, typer.Option(help="apply snapshots that remove over half the models")
    ] = False,
    alerts: Annotated[
        bool, typer.Option("--alerts", help="then send the alerts of modelwatch.toml")
    ] = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Ingest recorded payloads, oldest first, each as fetched at the time in its name.

    Silent unless --alerts: then the alerts of modelwatch.toml send what it committed."""
    from pipeline.config import load_config

    cfg = load_config(config)
    path = db_path(db, cfg)
    results = _replay(
        directory,
        source=source,
        kind=kind,
        accept_mass_removal=accept_mass_removal,
        db=path,
        config=config,
    )
    if alerts:
        _send_alerts(path, cfg)
    _print_replay_summary(results)
    _report_not_applied(results, "payloads")
    _return_free_space(path)
    _finish(results)


def _report_not_applied(results: list[IngestResult], what: str) -> None:
    bad = [r for r in results if r.outcome in (Outcome.REJECTED, Outcome.FAILED)]
    bad += _still_held(results)
    bad.sort(key=lambda r: r.fetched_at)
    if bad:
        first = bad[0]
        err.print(
            f"{len(bad)} of {len(results)} {what} not applied; first: "
            f"{iso(first.fetched_at)} {first.outcome}: {first.error}",
            markup=False,
        )


def _replay(
    directory: Path,
    *,
    source: str,
    accept_mass_removal: bool,
    db: Path | None,
    kind: str | None = None,
    config: Path | None = None,
) -> list[IngestResult]:
    from pipeline.ingest import replay as run_replay
    from pipeline.ingest import scan_payloads

    files, others = scan_payloads(directory)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        err.print(f"not payloads, left alone: {shown}", markup=False)
    with _writing(db, "replay", source, kind, accept_mass_removal, len(files)) as (
        store,
        advance,
    ):
        return run_replay(
            store,
            files,
            source=source,
            kind=kind,
            accept_mass_removal=accept_mass_removal,
            hold_policy=_hold_policy(source, config),
            on_result=lambda _p, _r: advance(),
        )


def _hold_policy(source: str, config: Path | None = None) -> Any:
    from pipeline.config import load_config

    return load_config(config).hold_policy(source)


@contextmanager
def _writing(
    db: Path | None,
    label: str,
    source: str,
    kind: str | None,
    accept_mass_removal: bool,
    total: int | None,
) -> Iterator[tuple[Store, Callable[..., None]]]:
    """The store opened to write many fetches, with a progress bar on stderr: the spool
    and (with --accept-mass-removal) the holds of earlier runs are applied first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.ingest import drain_spool, release_holds

    with (
        open_store(db) as store,
        Progress(
            TextColumn(f"{label} {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress,
    ):
        drain_spool(store, store.path)  # fetches spooled while the store was busy go first
        if accept_mass_removal:  # what earlier runs held applies first, at its own times
            _say_released(source, release_holds(store, source, kind=kind))
        task = progress.add_task(source, total=total)

        def advance(step: int = 1, **update: Any) -> None:
            progress.update(task, advance=step, **update)

        yield store, advance


def _return_free_space(path: str | Path) -> None:
    """After a long write (`replay`, `backfill`): the blocks it freed go back
    (`store.return_free_space`); a store another process took meanwhile is left for
    `modelwatch compact`."""
    from pipeline.store import return_free_space

    try:
        done = return_free_space(path)
    except StoreError as exc:
        err.print(f"free space not returned ({exc}); run `modelwatch compact` later", markup=False)
        return
    if done is not None:
        err.print(f"{path}: free space returned, {done[0] / 1e6:.2f} MB -> {done[1] / 1e6:.2f} MB")


def _say_released(source: str, released: list[IngestResult]) -> None:
    if released:
        err.print(
            f"{source}: applied what was held, {len(released)} fetches from "
            f"{iso(released[0].fetched_at)} to {iso(released[-1].fetched_at)} again",
            markup=False,
        )


def _still_held(results: list[IngestResult]) -> list[IngestResult]:
    """Suspect results that no later fetch of the run applied by confirming them."""
    released = {at for r in results for at in r.released}
    return [r for r in results if r.outcome is Outcome.SUSPECT and r.fetched_at not in released]


def _print_replay_summary(
    results: list[IngestResult], *, title: str = "replay", what: str = "payloads"
) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    shown = [Outcome.NEW, Outcome.UNCHANGED, Outcome.DUPLICATE, *NOT_APPLIED]
    table = Table(title=title, show_edge=False)
    for name in (what, *shown):
        table.add_column(name, justify="right")
    table.add_row(str(len(results)), *(str(counts.get(k, 0)) for k in shown))
    out.print(table)


@app.command()
def backfill(
    repo: Annotated[Path, typer.Argument(help="a local git clone holding the catalog")],
    path: Annotated[
        str,
        typer.Option(
            "--path",
            help="the catalog file in the repository, or a folder in models.dev's "
            "providers/ layout (read with --kind modelsdev)",
        ),
    ],
    source: SourceOption = "aihubmix",
    kind: KindOption = None,
    since: Annotated[
        str | None, typer.Option(help="only commits from this time on (ISO time or date, UTC)")
    ] = None,
    rev: Annotated[str, typer.Option(help="the commit (branch, tag, sha) to read up to")] = "HEAD",
    accept_mass_removal: Annotated[
        bool, typer.Option(help="apply snapshots that remove over half the models")
    ] = False,
    db: DbOption = None,
) -> None:
    """Day-one history from a catalog kept in git: every commit that changed --path,
    oldest first, ingested as a fetch at its committer time (UTC), as `replay` would;
    re-running adds only newer commits."""
    from pipeline.backfill import backfill as run_backfill

    with _writing(db, "backfill", source, kind, accept_mass_removal, None) as (store, advance):
        written = store.path
        results = run_backfill(
            store,
            repo,
            path=path,
            source=source,
            kind=kind,
            since=_time(since, "--since"),
            rev=rev,
            accept_mass_removal=accept_mass_removal,
            hold_policy=_hold_policy(source),
            on_start=lambda n: advance(0, total=n),
            on_result=lambda _c, _r: advance(),
        )
    _print_replay_summary(results, title="backfill", what="commits")
    _report_not_applied(results, "commits")
    _return_free_space(written)
    _finish(results)


@app.command()
def models(
    source: SourceOption = "aihubmix",
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time or date (UTC)")] = None,
    type: Annotated[str | None, typer.Option(help="one type, e.g. llm (aliases: t2t...)")] = None,
    modalities: Annotated[str | None, typer.Option(help="all of these, e.g. text,image")] = None,
    model: Annotated[str | None, typer.Option(help="fuzzy id match: gpt4o finds gpt-4o")] = None,
    features: Annotated[str | None, typer.Option(help="all of these, e.g. tools,thinking")] = None,
    sort_by: Annotated[
        str | None, typer.Option(help="order, context_length, model_ratio or coding")
    ] = None,
    sort_order: Annotated[str | None, typer.Option(help="asc or desc")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv")] = Format.table,
    db: DbOption = None,
) -> None:
    """The catalog as of a time, filtered and sorted like /api/v1/models.

    `--format json` prints exactly the body /api/v1/models would serve."""
    from pipeline.query import models as query_models

    when = _time(as_of, "--as-of")
    with open_store(db, read_only=True) as store:
        frame = query_models(
            store,
            source=source,
            as_of=when,
            type=type,
            modalities=modalities,
            model=model,
            features=features,
            sort_by=sort_by,
            sort_order=sort_order,
        )
        first = store.snapshot_times(source)["observed_at"].min() if frame.height == 0 else None
    _print_models(frame, fmt)
    if isinstance(first, datetime) and when is not None and when < first:
        err.print(f"the {source} history starts at {iso(first)}; try --as-of {iso(first)}")


def _print_frame(frame: Any, fmt: Format, title: str | None = None) -> None:
    """A result frame as a rich table, JSON records, or CSV."""
    import json

    import polars as pl

    flat = frame.with_columns(
        *(pl.col(c).list.join(",") for c, t in frame.schema.items() if t == pl.List(pl.String))
    )
    if fmt is Format.json:
        rows = flat.with_columns(
            *(
                pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
                for c, t in flat.schema.items()
                if t.is_temporal()
            )
        ).to_dicts()
        out.print(json.dumps(rows, ensure_ascii=False, indent=1), markup=False)
        return
    if fmt is Format.csv:
        sys.stdout.write(flat.write_csv())
        return
    table = Table(title=title, show_edge=False)
    for name, dtype in flat.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left", overflow="fold")
    for row in flat.iter_rows():
        table.add_row(
            *(
                ""
                if v is None
                else iso(v)
                if isinstance(v, datetime)
                else f"{v:g}"
                if isinstance(v, float)
                else str(v)
                for v in row
            )
        )
    out.print(table)


@app.command()
def changes(
    since: Annotated[str | None, typer.Option(help="after this time (ISO or date)")] = None,
    until: Annotated[str | None, typer.Option(help="up to and including this time")] = None,
    source: Annotated[str | None, typer.Option(help="one source (default: all)")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv")] = Format.table,
    db: DbOption = None,
) -> None:
    """What changed: models added, removed, returned; each changed field, old -> new."""
    from pipeline.query import changes as query_changes

    start, end = _time(since, "--since"), _time(until, "--until")
    with open_store(db, read_only=True) as store:
        frame = query_changes(store, since=start, until=end, source=source)
    if fmt is Format.table:
        frame = frame.drop("old_number", "new_number")
    _print_frame(frame, fmt, title=f"{frame.height} changes")


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="model id (exact, or unique ignoring case)")],
    source: Annotated[str | None, typer.Option(help="source, if the id is in several")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv")] = Format.table,
    db: DbOption = None,
) -> None:
    """A model's price and limit history: one row per version, with valid_from/valid_to."""
    from pipeline.query import price_history

    with open_store(db, read_only=True) as store:
        frame = price_history(store, model, source=source)
    _print_frame(frame, fmt, title=f"{model}: {frame.height} versions")


@app.command()
def cost(
    model: Annotated[str, typer.Argument(help="model id")],
    input_tokens: Annotated[int, typer.Option(help="input tokens, cached ones included")],
    output_tokens: Annotated[int, typer.Option(help="output tokens")],
    cached_tokens: Annotated[int, typer.Option(help="input tokens read from cache")] = 0,
    at: Annotated[str | None, typer.Option(help="prices in force at this time")] = None,
    source: Annotated[str | None, typer.Option(help="source, if the id is in several")] = None,
    db: DbOption = None,
) -> None:
    """The USD cost of a request at the prices in force at a date."""
    from pipeline.query import cost as query_cost

    with open_store(db, read_only=True) as store:
        result = query_cost(
            store,
            model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            at=_time(at, "--at"),
            source=source,
        )
    out.print(
        f"{result['model_id']} ({result['source']}) at {iso(result['at'])}: "
        f"${result['usd']:.6f} = {result['input_tokens'] - result['cached_tokens']:,} in x "
        f"${result['input_price']:g} + {result['cached_tokens']:,} cached x "
        f"${result['cache_read_price']:g} + {result['output_tokens']:,} out x "
        f"${result['output_price']:g} (USD per 1M tokens)"
    )


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="folder to write (created if missing)")],
    fmt: Annotated[str, typer.Option("--format", help="parquet")] = "parquet",
    db: DbOption = None,
) -> None:
    """Write every history table as Parquet, for other engines."""
    if fmt != "parquet":
        raise BadInput(f"export format {fmt!r} is not supported; accepted: parquet")
    with open_store(db, read_only=True) as store:
        written = store.export_parquet(directory)
    for path, rows in written.items():
        out.print(f"{path}: {rows} rows")


def _print_models(frame: Any, fmt: Format) -> None:
    from pipeline.query.render import catalog_body

    if fmt is Format.json:
        sys.stdout.buffer.write(catalog_body(frame) + b"\n")
        sys.stdout.flush()
        return
    if fmt is Format.csv:
        flat = frame.with_columns(
            *(frame[c].list.join(",").alias(c) for c in ("types", "features", "input_modalities"))
        )
        sys.stdout.write(flat.write_csv())
        return
    table = Table(show_edge=False)
    for name in ("model_id", "types", "features", "modalities", "context", "in $/1M", "out $/1M"):
        table.add_column(
            name, overflow="fold", justify="right" if "$" in name or name == "context" else "left"
        )
    for r in frame.iter_rows(named=True):
        table.add_row(
            r["model_id"],
            ",".join(r["types"]),
            ",".join(r["features"]),
            ",".join(r["input_modalities"]),
            f"{r['context_length']:,}" if r["context_length"] else "?",
            "?" if r["input_price"] is None else f"{r['input_price']:g}",
            "?" if r["output_price"] is None else f"{r['output_price']:g}",
        )
    out.print(table)
    err.print(f"{frame.height} models")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free one)")] = 8000,
    source: SourceOption = "aihubmix",
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds a client has to send its request headers")
    ] = 10.0,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="sources whose health /healthz reports (modelwatch.toml)"),
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve the history as the AiHubMix API (/api/v1/models, /v1/models, /v1/models/{id})
    and as pages for people (/, /models/{id}, /changes)."""
    from pipeline.config import config_file, load_config
    from pipeline.serve import create_app
    from pipeline.serve.server import run

    path, named = config_file(config)
    cfg = load_config(config) if named or path.exists() else None
    store_path = db_path(db, cfg)
    if not store_path.exists():
        open_store(db, read_only=True, config=cfg)  # raises the one-line "how to make one"

    def ready(bound_host: str, bound_port: int) -> None:
        where = _address(bound_host, bound_port)
        err.print(f"serving {store_path} ({source}) on {where}  (Ctrl-C to stop)", markup=False)

    app_ = create_app(store_path, source=source, config=cfg)
    run(app_, host=host, port=port, header_timeout=header_timeout, on_ready=ready)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free one)")] = 8000,
    source: SourceOption = "aihubmix",
    config: ConfigOption = None,
    every: Annotated[
        float | None,
        typer.Option(min=0.1, help="seconds between snapshots of every source (testing)"),
    ] = None,
    db: DbOption = None,
) -> None:
    """Run the configured schedule and the served API in one process, without Prefect.

    The store is held only while reading or writing, so notebooks and the duckdb shell
    can open it between writes; SIGTERM or Ctrl-C stops both cleanly."""
    from datetime import timedelta

    from pipeline.config import load_config
    from pipeline.serve import create_app
    from pipeline.serve.server import run
    from pipeline.service import Schedule

    cfg = load_config(config)
    path = _writable(db, cfg)

    def said(name: str, result: Any) -> None:
        err.print(_describe_any(name, result), markup=False)

    schedule = Schedule(
        path,
        cfg,
        interval=timedelta(seconds=every) if every else None,
        on_result=said,
        on_alert=lambda line: err.print(line, markup=False),
    )

    def ready(bound_host: str, bound_port: int) -> None:
        sources = ", ".join(
            f"{s.name} ({s.schedule if not every else f'every {every:g}s'})" for s in cfg.sources
        )
        err.print(
            f"watching {sources} into {path}; serving on {_address(bound_host, bound_port)}",
            markup=False,
        )
        schedule.start()

    try:
        run(create_app(path, source=source, config=cfg), host=host, port=port, on_ready=ready)
    finally:
        if not schedule.stop():
            err.print("stopped with a snapshot still in flight (its answer, if any, is spooled)")


def _address(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _describe_any(name: str, result: Any) -> str:
    from pipeline.ingest import Skipped, Spooled

    if isinstance(result, IngestResult):
        return _describe(result)
    if isinstance(result, Spooled):
        return f"{name} {iso(result.fetched_at)}: spooled, the store is busy"
    if isinstance(result, Skipped):
        return f"{name}: skipped, fresh until {iso(result.fresh_until)}"
    return f"{name}: error: {result}"


tokens_app = typer.Typer(
    help="Bearer tokens for the served /v1/models (only hashes are kept).", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="a name for the token's holder")],
    models: Annotated[str | None, typer.Option(help="comma list of model ids it may list")] = None,
    group: Annotated[str | None, typer.Option(help="a group: default, or a source name")] = None,
    db: DbOption = None,
) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    from pipeline.serve.tokens import add_token

    with open_store(db) as store:
        token = add_token(
            store, name, models=models.split(",") if models is not None else None, group=group
        )
    err.print(f"token {name!r} created; it is shown once, store it now:")
    sys.stdout.write(token + "\n")


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="the token's name")],
    db: DbOption = None,
) -> None:
    """Delete a token: requests with it get 401 from now on."""
    from pipeline.serve.tokens import revoke_token

    with open_store(db) as store:
        revoke_token(store, name)
    err.print(f"token {name!r} revoked")


@tokens_app.command("list")
def tokens_list(db: DbOption = None) -> None:
    """Token names and scopes (never the tokens)."""
    from pipeline.serve.tokens import list_tokens

    with open_store(db, read_only=True) as store:
        rows = list_tokens(store)
    table = Table(show_edge=False)
    for name in ("name", "scope", "created"):
        table.add_column(name)
    for r in rows:
        scope = f"models: {', '.join(r['models'])}" if r["models"] else f"group: {r['group']}"
        table.add_row(r["name"], scope, iso(r["created_at"]))
    out.print(table)


alerts_app = typer.Typer(
    help="Messages sent when stored changes match an alert of modelwatch.toml (SPEC 5b).",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """Each alert: its destination (secrets shown as ${VAR}), kinds and filters, when it
    last sent, and how many changes wait (pending) or wait for a retry (failed)."""
    from rich.text import Text

    from pipeline.alerts import alert_status, check_scheme
    from pipeline.config import ALERT_KINDS, load_config
    from pipeline.timeutil import utcnow

    cfg = load_config(config)
    for alert in cfg.alerts:
        check_scheme(alert)  # a URL Apprise cannot use is a config error here
    if db_path(db, cfg).exists():
        with open_store(db, read_only=True, config=cfg) as store:
            rows = alert_status(store, cfg, now=utcnow())
    else:
        rows = alert_status(None, cfg, now=utcnow())
    table = Table(show_edge=False)
    for name in ("name", "destination", "on", "filters", "last sent", "pending", "failed"):
        right = name in ("pending", "failed")
        table.add_column(name, overflow="fold", justify="right" if right else "left")
    for r in rows:
        kinds = "all" if set(r.alert.on) == set(ALERT_KINDS) else ", ".join(r.alert.on)
        table.add_row(
            Text(r.alert.name),
            Text(r.alert.url),
            kinds,
            Text(r.filters()),
            iso(r.last_sent) or "never",
            "-" if r.pending is None else str(r.pending),
            str(r.failed),
        )
    out.print(table)
    if not cfg.alerts:
        err.print("no alerts configured: add [[alerts]] tables to modelwatch.toml", markup=False)
    for r in rows:
        if r.error:
            err.print(f"alert {r.alert.name!r}: {r.error}", markup=False)
        if r.unconfirmed:
            err.print(
                f"alert {r.alert.name!r}: {r.unconfirmed} changes were being sent when a run "
                "stopped; they are not sent again",
                markup=False,
            )


@alerts_app.command("test")
def alerts_test(
    name: Annotated[str, typer.Argument(help="the alert's name in modelwatch.toml")],
    config: ConfigOption = None,
) -> None:
    """Send a sample message to the alert's destination now; exit 1 if it is not delivered."""
    from pipeline.alerts import send_sample
    from pipeline.config import load_config

    cfg = load_config(config)
    alert = cfg.alert(name)
    send_sample(alert, cfg)
    out.print(f"alert {name!r}: sample message sent to {alert.url}", markup=False)


@app.command()
def report(
    source: SourceOption = "aihubmix",
    since: Annotated[str | None, typer.Option(help="period start (default: the beginning)")] = None,
    until: Annotated[
        str | None, typer.Option(help="period end (default: the last snapshot)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
    db: DbOption = None,
) -> None:
    """Write one self-contained HTML report: what changed, price trends, capabilities."""
    from pipeline.report import write_report

    start, end = _time(since, "--since"), _time(until, "--until")
    with open_store(db, read_only=True) as store:
        path = write_report(store, out, source=source, since=start, until=end)
    sys.stdout.write(f"{path}\n")


@app.command()
def status(config: ConfigOption = None, db: DbOption = None) -> None:
    """Per source: last attempt, last success, last change; stale or failing (exit 1)."""
    from pipeline.config import load_config
    from pipeline.health import source_health

    cfg = load_config(config)
    with open_store(db, read_only=True, config=cfg) as store:
        rows = source_health(store, cfg)
    table = Table(show_edge=False)
    for name in (
        "source",
        "state",
        "last attempt",
        "outcome",
        "last success",
        "last change",
        "every",
    ):
        table.add_column(name)
    for h in rows:
        table.add_row(
            h.source,
            h.state,
            iso(h.last_attempt) or "-",
            h.last_outcome or "-",
            iso(h.last_success) or "-",
            iso(h.last_change) or "-",
            str(h.interval),
        )
    out.print(table)
    from pipeline.store.spool import Spool

    waiting = Spool(db_path(db, cfg)).entries()
    if waiting:
        err.print(
            f"{len(waiting)} fetches wait in the spool (the store was busy), oldest "
            f"{iso(waiting[0].fetched_at)}; the next snapshot or replay applies them",
            markup=False,
        )
    for h in rows:
        if h.hold:
            err.print(f"{h.source}: held {h.hold}", markup=False)
        elif h.failing and h.last_error:
            err.print(f"{h.source}: {h.last_outcome}: {h.last_error}", markup=False)
    if any(h.stale or h.failing for h in rows):
        raise typer.Exit(EXIT_ERROR)


@app.command()
def schedule(
    config: ConfigOption = None,
    db: DbOption = None,
    every: Annotated[
        int | None, typer.Option(help="seconds between runs for every source (testing)")
    ] = None,
) -> None:
    """Run every configured source on its cron schedule via Prefect (needs PREFECT_API_URL)."""
    from datetime import timedelta

    from pipeline.config import load_config

    cfg = load_config(config)
    path = db_path(db, cfg)
    serve_all = _scheduler()
    serve_all(
        cfg,
        db=path,
        config_path=str(config) if config else None,
        interval=timedelta(seconds=every) if every else None,
    )


def _scheduler() -> Any:
    """The orchestrator's entry point, found through package metadata so that the library
    never imports its orchestrator (`flows/` registers itself in pyproject.toml)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="modelwatch.scheduler"):
        return entry.load()
    raise BadInput("no scheduler is installed; install one with: pip install 'modelwatch[flows]'")


@app.command()
def compact(
    wait: Annotated[
        float, typer.Option(min=0, help="seconds to wait for another process to let go")
    ] = 10.0,
    db: DbOption = None,
) -> None:
    """Rewrite the store into a fresh file: free space returned, current storage settings
    (16 KiB blocks, zstd); checked table by table before it replaces the original."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.store import compact as rewrite

    path = db_path(db)
    with Progress(
        TextColumn("compact: raw payloads re-encoded"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("compact", total=None)
        before, after = rewrite(
            path,
            lock_timeout=wait,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    out.print(f"{path}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")


@app.command()
def info(db: DbOption = None) -> None:
    """What the store holds: fetches, snapshots, models, versions, raw bytes."""
    with open_store(db, read_only=True) as store:
        _print_summary(store.summary())


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(show_header=False, show_edge=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        elif isinstance(value, datetime):
            value = iso(value)
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)


@app.command()
def demo(db: DbOption = None) -> None:
    """Replay the bundled AiHubMix history into the database and show what it holds."""
    from pipeline.ingest import payload_files

    files = payload_files(BUNDLED_HISTORY)
    out.print(
        f"Replaying {len(files)} recorded AiHubMix catalogs "
        f"({iso(files[0][0])} .. {iso(files[-1][0])}) into {db_path(db)}"
    )
    # The recorded history is trusted: its one mass rename is applied, and reported.
    results = _replay(BUNDLED_HISTORY, source="aihubmix", accept_mass_removal=True, db=db)
    _print_replay_summary(results)
    with open_store(db) as store:
        summary = store.summary()
    _print_summary(summary)
    changes = sum(len(r.added) + len(r.removed) + len(r.returned) + len(r.changed) for r in results)
    from pipeline.report import write_report

    report_path = db_path(db).parent / "report.html"
    with open_store(db, read_only=True) as store:
        write_report(store, report_path, source="aihubmix")
    out.print(
        f"{changes} model changes across {summary['snapshots']} snapshots. "
        f"Try: modelwatch models --as-of 2026-01-01 --db {db_path(db)}"
    )
    out.print(f"Report: {report_path.resolve()}")


@app.command()
def compare(
    model: Annotated[str, typer.Argument(help="model id in any source's spelling, e.g. gpt-4o")],
    at: Annotated[str | None, typer.Option(help="catalogs as of this time (default: now)")] = None,
    history: Annotated[
        bool, typer.Option("--history", help="each listing's price steps over time")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv")] = Format.table,
    db: DbOption = None,
) -> None:
    """The same model across sources (gpt-4o = openai/gpt-4o = azure/gpt-4o-2024-08-06):
    prices side by side, USD per 1M tokens."""
    from pipeline.query.compare import compare as compare_sources
    from pipeline.query.compare import compare_history

    with open_store(db, read_only=True) as store:
        if history:
            frame = compare_history(store, model)
        else:
            frame = compare_sources(store, model, at=_time(at, "--at"))
    key = frame["canonical_key"][0]
    what = "price steps" if history else "listings"
    _print_frame(frame.drop("canonical_key"), fmt, title=f"{key}: {frame.height} {what}")


def main() -> None:
    """Entry point: every error is one line on stderr and an exit code, never a traceback.

    0 done, 1 an error (a user mistake, a rejected or failed fetch), 2 a usage error,
    3 a snapshot held as suspect. `MODELWATCH_DEBUG=1` shows the traceback of a bug."""
    try:
        code = app(standalone_mode=False)  # click returns the code of a typer.Exit here
    except ModelwatchError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):  # click's usage errors (vendored)
            show()
            sys.exit(exit_code)
        if os.environ.get("MODELWATCH_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:300]
        err.print(
            f"error: unexpected {type(exc).__name__}: {detail} "
            "(set MODELWATCH_DEBUG=1 to see where)",
            markup=False,
        )
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
