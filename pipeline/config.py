"""`modelwatch.toml`: the sources to watch, their URLs, schedules and token variables.

    [defaults]
    db = "data/catalog.duckdb"
    report = "data/report.html"   # optional: rewritten after each run that changed something
    plausibility_factor = 10      # a price moving more than 10x in one step is "check this"

    [[sources]]
    name = "aihubmix"            # the source's name in the history
    kind = "aihubmix"            # the adapter (default: the name)
    url = "https://aihubmix.com/api/v1/models"   # default: the adapter's
    schedule = "*/5 * * * *"     # cron, UTC (default: every 5 minutes)
    token_env = "AIHUBMIX_TOKEN" # optional: env variable holding a bearer token
    confirm_fetches = 3          # a held mass removal applies by itself when the same
    confirm_hours = 1            # catalog is seen on 3 fetches over at least 1 hour

Tokens are read from the environment at fetch time: the file holds only variable names.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.query.plausibility import DEFAULT_FACTOR
from pipeline.sources import get_source

DEFAULT_CONFIG = Path("modelwatch.toml")
DEFAULT_DB = Path("data/catalog.duckdb")  # relative to where modelwatch runs
DEFAULT_SCHEDULE = "*/5 * * * *"  # AiHubMix answers with max-age=300
SOURCE_KEYS = ("name", "kind", "url", "schedule", "token_env")


@dataclass(frozen=True)
class HoldPolicy:
    """When a held change applies by itself (SPEC 3): the same catalog seen on `fetches`
    held fetches at least `span` apart from the first to the last. An outage that ends
    (an accepted fetch in between) is forgotten."""

    fetches: int = 3
    span: timedelta = timedelta(hours=1)

    def describe(self, seen: int, since: datetime, now: datetime) -> str:
        hours = (now - since).total_seconds() / 3600
        return f"{seen}/{self.fetches} fetches, {hours:.1f}/{self.span.total_seconds() / 3600:g} h"


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    url: str
    schedule: str = DEFAULT_SCHEDULE
    token_env: str | None = None
    hold: HoldPolicy = field(default_factory=HoldPolicy)

    def token(self) -> str | None:
        """The bearer token, from the environment; a named but unset variable is an error."""
        if self.token_env is None:
            return None
        value = os.environ.get(self.token_env)
        if not value:
            raise BadInput(
                f"source {self.name!r}: environment variable {self.token_env!r} is unset"
            )
        return value

    def interval(self) -> timedelta:
        """The time between two scheduled runs (the smallest gap of the next few)."""
        return schedule_interval(self.schedule)


@dataclass(frozen=True)
class Config:
    sources: list[SourceConfig] = field(default_factory=list)
    db: str | None = None
    report: str | None = None  # rewrite this HTML report after runs that change something
    plausibility_factor: float = DEFAULT_FACTOR  # a price step beyond this is "check this"

    def hold_policy(self, name: str) -> HoldPolicy:
        """How held changes of `name` confirm themselves (the default if not configured)."""
        return next((s.hold for s in self.sources if s.name == name), HoldPolicy())

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise BadInput(f"source {name!r} is not configured; configured: {known}")


def schedule_interval(cron: str) -> timedelta:
    from cronsim import CronSim, CronSimError

    try:
        it = CronSim(cron, datetime(2026, 1, 1))
        fires = [next(it) for _ in range(6)]
    except (CronSimError, StopIteration, ValueError) as exc:
        raise BadInput(f"schedule {cron!r} is not a valid cron expression ({exc})") from None
    return min(b - a for a, b in zip(fires, fires[1:], strict=False))


def default_config() -> Config:
    spec = get_source("aihubmix")
    return Config(sources=[SourceConfig(name="aihubmix", kind="aihubmix", url=spec.default_url)])


def config_file(path: Path | None = None) -> tuple[Path, bool]:
    """The config file to read and whether it was named: `--config`, else
    `$MODELWATCH_CONFIG`, else `./modelwatch.toml` (which may be absent)."""
    if path is not None:
        return path, True
    env = os.environ.get("MODELWATCH_CONFIG")
    return (Path(env), True) if env else (DEFAULT_CONFIG, False)


def resolve_db(db: str | Path | None = None, config: Config | None = None) -> Path:
    """The database every command and flow uses (SPEC 7): `--db`, else
    `$MODELWATCH_DB`, else `db` in the config file, else `data/catalog.duckdb`."""
    if db:
        return Path(db)
    env = os.environ.get("MODELWATCH_DB")
    if env:
        return Path(env)
    cfg = config if config is not None else load_config()
    return Path(cfg.db) if cfg.db else DEFAULT_DB


def load_config(path: Path | None = None) -> Config:
    """Read the config file; with none, watch AiHubMix every 5 minutes."""
    target, named = config_file(path)
    if not target.exists():
        if named:
            raise BadInput(f"config file {str(target)!r} does not exist")
        return default_config()
    try:
        doc = tomllib.loads(target.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"config file {str(target)!r} is not valid TOML: {exc}") from None
    sources = []
    for i, entry in enumerate(doc.get("sources", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadInput(f"{target}: sources[{i}] needs a name")
        unknown = set(entry) - {*SOURCE_KEYS, "confirm_fetches", "confirm_hours"}
        if unknown:
            raise BadInput(f"{target}: sources[{i}] has unknown keys: {', '.join(sorted(unknown))}")
        kind = str(entry.get("kind", entry["name"]))
        for key in SOURCE_KEYS[1:]:
            if key in entry and not isinstance(entry[key], str):
                raise BadInput(f"{target}: sources[{i}].{key} must be a string")
        fetches, hours = entry.get("confirm_fetches", 3), entry.get("confirm_hours", 1)
        if not isinstance(fetches, int) or isinstance(fetches, bool) or fetches < 1:
            raise BadInput(f"{target}: sources[{i}].confirm_fetches must be a whole number >= 1")
        if not isinstance(hours, int | float) or isinstance(hours, bool) or hours < 0:
            raise BadInput(f"{target}: sources[{i}].confirm_hours must be a number >= 0")
        spec = get_source(kind)
        source = SourceConfig(
            name=entry["name"],
            kind=spec.name,
            url=entry.get("url", spec.default_url),
            schedule=entry.get("schedule", DEFAULT_SCHEDULE),
            token_env=entry.get("token_env"),
            hold=HoldPolicy(fetches=fetches, span=timedelta(hours=hours)),
        )
        source.interval()  # validate the cron now, not at 3 a.m.
        sources.append(source)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise BadInput(f"{target}: source names repeat: {', '.join(names)}")
    defaults = doc.get("defaults", {})
    factor = defaults.get("plausibility_factor", DEFAULT_FACTOR)
    if not isinstance(factor, int | float) or isinstance(factor, bool) or factor <= 1:
        raise BadInput(
            f"{target}: defaults.plausibility_factor must be a number > 1, not {factor!r}"
        )
    return Config(
        sources=sources,
        db=defaults.get("db"),
        report=defaults.get("report"),
        plausibility_factor=float(factor),
    )
