"""`modelwatch.toml`: the sources to watch, their URLs, schedules and token variables.

    [defaults]
    db = "data/catalog.duckdb"
    report = "data/report.html"   # optional: rewritten after each run that changed something
    plausibility_factor = 10      # a price moving more than 10x in one step is "check this"
    base_url = "http://127.0.0.1:8000"   # optional: alerts link to {base_url}/models/{model}

    [[sources]]
    name = "aihubmix"            # the source's name in the history
    kind = "aihubmix"            # the adapter (default: the name)
    url = "https://aihubmix.com/api/v1/models"   # default: the adapter's
    schedule = "*/5 * * * *"     # cron, UTC (default: every 5 minutes)
    token_env = "AIHUBMIX_TOKEN" # optional: env variable holding a bearer token
    confirm_fetches = 3          # a held mass removal applies by itself when the same
    confirm_hours = 1            # catalog is seen on 3 fetches over at least 1 hour

    [[alerts]]                   # SPEC 5b: a message when a stored change matches
    name = "cheaper-models"      # required, unique
    url = "json://127.0.0.1:8765/hook/${HOOK_SECRET}"   # any Apprise URL; ${VAR} from the env
    on = ["added", "price_cut"]  # default: every kind (ALERT_KINDS)
    source = "aihubmix"          # optional filters with SPEC 4 semantics:
    type = "llm"                 #   type, model, features, modalities
    min_change_pct = 10          # optional: smaller price changes are not sent

Tokens and alert secrets are read from the environment when they are used: the file
holds only variable names.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.sources import get_source

DEFAULT_CONFIG = Path("modelwatch.toml")
DEFAULT_DB = Path("data/catalog.duckdb")  # relative to where modelwatch runs
DEFAULT_SCHEDULE = "*/5 * * * *"  # AiHubMix answers with max-age=300
DEFAULT_PLAUSIBILITY_FACTOR = 10.0  # a price step beyond this either way is "check this"
SOURCE_KEYS = ("name", "kind", "url", "schedule", "token_env")
ALERT_KINDS = (
    "added",
    "removed",
    "returned",
    "changed",
    "price_cut",
    "price_rise",
    "failed",
    "stale",
    "held",
)
ALERT_FILTERS = ("source", "type", "model", "features", "modalities")
ALERT_KEYS = ("name", "url", "on", *ALERT_FILTERS, "min_change_pct")
_ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
class AlertConfig:
    """One `[[alerts]]` table (SPEC 5b). `url` is kept as written: a `${VAR}` in it is
    expanded only when a message is sent, so the secret is never held here."""

    name: str
    url: str
    on: tuple[str, ...] = ALERT_KINDS
    source: str | None = None
    type: str | None = None
    model: str | None = None
    features: str | None = None
    modalities: str | None = None
    min_change_pct: float | None = None

    def filters(self) -> dict[str, str | None]:
        """SPEC 4's filters of the alert, as `parse_query` takes them."""
        return {
            "type": self.type,
            "model": self.model,
            "features": self.features,
            "modalities": self.modalities,
        }

    def definition(self) -> str:
        """What the alert matches (not where it sends): a new definition is a new baseline."""
        shown = {k: getattr(self, k) for k in ALERT_KEYS if k not in ("name", "url")}
        shown["on"] = sorted(self.on)
        return json.dumps(shown, sort_keys=True)

    def scheme(self) -> str | None:
        """The URL's scheme (`json`, `slack`, ...), unless a `${VAR}` holds it."""
        scheme, sep, _ = self.url.partition("://")
        return None if not sep or "${" in scheme else scheme.lower()

    def secret_names(self) -> list[str]:
        """The environment variables the URL names as `${VAR}`."""
        return _ENV_REFERENCE.findall(self.url)

    def expand_url(self) -> tuple[str, list[str]]:
        """The URL with each `${VAR}` replaced from the environment, and the values put in
        (to redact from anything an upstream echoes). An unset variable is an error."""
        values = []
        for name in self.secret_names():
            value = os.environ.get(name)
            if not value:
                raise BadInput(f"environment variable {name!r} (named in the url) is unset")
            values.append(value)
        found = iter(values)
        return _ENV_REFERENCE.sub(lambda _m: next(found), self.url), values


@dataclass(frozen=True)
class Config:
    sources: list[SourceConfig] = field(default_factory=list)
    db: str | None = None
    report: str | None = None  # rewrite this HTML report after runs that change something
    plausibility_factor: float = DEFAULT_PLAUSIBILITY_FACTOR
    alerts: list[AlertConfig] = field(default_factory=list)
    base_url: str | None = None  # where `modelwatch serve` is reached: links in alerts

    def hold_policy(self, name: str) -> HoldPolicy:
        """How held changes of `name` confirm themselves (the default if not configured)."""
        return next((s.hold for s in self.sources if s.name == name), HoldPolicy())

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise BadInput(f"source {name!r} is not configured; configured: {known}")

    def alert(self, name: str) -> AlertConfig:
        for a in self.alerts:
            if a.name == name:
                return a
        known = ", ".join(a.name for a in self.alerts) or "none"
        raise BadInput(f"alert {name!r} is not configured; configured: {known}")


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
    factor = defaults.get("plausibility_factor", DEFAULT_PLAUSIBILITY_FACTOR)
    if not isinstance(factor, int | float) or isinstance(factor, bool) or factor <= 1:
        raise BadInput(
            f"{target}: defaults.plausibility_factor must be a number > 1, not {factor!r}"
        )
    base_url = defaults.get("base_url")
    if base_url is not None and (
        not isinstance(base_url, str) or not re.match(r"https?://[^/\s]", base_url)
    ):
        raise BadInput(
            f"{target}: defaults.base_url must be an http:// or https:// URL, not {base_url!r}"
        )
    return Config(
        sources=sources,
        db=defaults.get("db"),
        report=defaults.get("report"),
        plausibility_factor=float(factor),
        alerts=_alerts(target, doc.get("alerts", [])),
        base_url=base_url.rstrip("/") if base_url else None,
    )


def _alerts(target: Path, entries: object) -> list[AlertConfig]:
    """The `[[alerts]]` tables, checked: one line naming the first bad value."""
    if not isinstance(entries, list):
        raise BadInput(f"{target}: alerts must be [[alerts]] tables")
    alerts = []
    for i, entry in enumerate(entries):
        where = f"{target}: alerts[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadInput(f"{where} needs a name")
        name = entry["name"].strip()
        if not name:
            raise BadInput(f"{where} needs a name")
        where = f"{target}: alert {name!r}"
        unknown = set(entry) - set(ALERT_KEYS)
        if unknown:
            raise BadInput(
                f"{where} has unknown keys: {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(ALERT_KEYS)}"
            )
        url = entry.get("url")
        if not isinstance(url, str) or not url.strip():
            raise BadInput(f"{where} needs a url (any Apprise URL)")
        _check_url(where, url.strip())
        on = entry.get("on", list(ALERT_KINDS))
        if isinstance(on, str):
            on = [on]
        if not isinstance(on, list) or not on or not all(isinstance(k, str) for k in on):
            raise BadInput(f"{where}: on must be a list of kinds: {', '.join(ALERT_KINDS)}")
        bad = [k for k in on if k not in ALERT_KINDS]
        if bad:
            raise BadInput(
                f"{where}: on has an unknown kind {bad[0]!r}; accepted: {', '.join(ALERT_KINDS)}"
            )
        for key in ALERT_FILTERS:
            if key in entry and not isinstance(entry[key], str):
                raise BadInput(f"{where}: {key} must be a string, not {entry[key]!r}")
        pct = entry.get("min_change_pct")
        if pct is not None and (
            not isinstance(pct, int | float) or isinstance(pct, bool) or not 0 <= pct < 1e9
        ):
            raise BadInput(f"{where}: min_change_pct must be a number >= 0, not {pct!r}")
        alerts.append(
            AlertConfig(
                name=name,
                url=url.strip(),
                on=tuple(dict.fromkeys(on)),
                min_change_pct=None if pct is None else float(pct),
                **{k: entry[k].strip() or None for k in ALERT_FILTERS if k in entry},
            )
        )
    names = [a.name for a in alerts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInput(f"{target}: alert names repeat: {', '.join(repeated)}")
    return alerts


def _check_url(where: str, url: str) -> None:
    """`${VAR}` references name variables and the URL has a scheme. Whether Apprise knows
    the scheme is checked where alerts are used (`pipeline.alerts.check_scheme`): loading
    Apprise's plugins would slow every command that reads the config."""
    for ref in _ENV_REFERENCE.findall(url):
        if not _ENV_NAME.fullmatch(ref):
            raise BadInput(f"{where}: url has ${{{ref}}}, which is not a variable name")
    if "${" in _ENV_REFERENCE.sub("", url):
        raise BadInput(f"{where}: url has an unclosed ${{")
    scheme, sep, _ = url.partition("://")
    if "${" in (scheme if sep else url):
        return  # a variable holds the scheme (or the whole URL)
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise BadInput(f"{where}: url is not an Apprise URL (scheme://...)")
