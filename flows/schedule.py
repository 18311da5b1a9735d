"""Deployments for `modelwatch schedule`: each configured source on its cron, plus the
staleness check, served by this process (`prefect.serve`) against a Prefect server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from flows.snapshot import check_staleness, snapshot_catalog
from pipeline.config import Config
from pipeline.errors import BadInput

STALENESS_CRON = "*/15 * * * *"


def deployments(
    config: Config, *, db: str, config_path: str | None = None, interval: timedelta | None = None
) -> list[Any]:
    """One deployment per source (its cron, or `interval` for all), and the staleness check."""
    made = []
    for source in config.sources:
        timing: dict[str, Any] = {"interval": interval} if interval else {"cron": source.schedule}
        made.append(
            snapshot_catalog.to_deployment(
                name=f"snapshot-{source.name}",
                parameters={"source": source.name, "db": db, "config_path": config_path},
                description=f"Snapshot {source.name} ({source.url})",
                tags=["modelwatch", source.name],
                concurrency_limit=1,
                **timing,
            )
        )
    made.append(
        check_staleness.to_deployment(
            name="check-staleness",
            parameters={"db": db, "config_path": config_path},
            **({"interval": interval} if interval else {"cron": STALENESS_CRON}),
            tags=["modelwatch"],
        )
    )
    return made


def serve_all(
    config: Config, *, db: Path, config_path: str | None = None, interval: timedelta | None = None
) -> None:
    """Serve the deployments against the Prefect server of `PREFECT_API_URL`. Without one,
    Prefect would start a temporary server that schedules nothing: refuse instead."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise BadInput(
            "modelwatch schedule needs a Prefect server: run `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (or use cron with `modelwatch snapshot`)"
        )

    serve(*deployments(config, db=str(db), config_path=config_path, interval=interval))
