"""`/changes.atom`: the change feed as Atom 1.0 (SPEC 5 "Change feeds").

One entry per change (added, removed, returned, a field changed old -> new), newest
first. Entry ids are tag URIs built from the change itself (source, model, time, kind,
field), so they are the same on every request. ElementTree escapes every catalog string.
A price step beyond the plausibility factor says "check this" in its title and summary;
each entry links to the model's page (`/models/{model}?source=...`), where a person sees
the change among the model's other versions.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote
from xml.etree import ElementTree as ET

import polars as pl

from pipeline.query.filters import apply_query, parse_query
from pipeline.query.plausibility import CHECK_THIS, DEFAULT_FACTOR, flag_implausible
from pipeline.serve.http import Answer
from pipeline.store import Store

ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
FEED_PARAMS = ("source", "type", "model", "features", "modalities", "since")
ENTRIES = 200


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def model_path(model_id: str, source: str) -> str:
    """A model's page: ids may hold `/`, kept as path separators; the rest is quoted."""
    return f"/models/{quote(model_id, safe='/')}?source={quote(source, safe='')}"


def check_note(factor: float) -> str:
    """Why a change is flagged, as feeds and pages say it."""
    return f"{CHECK_THIS} (more than {factor:g}x in one step)"


def _title(row: dict[str, object], factor: float = DEFAULT_FACTOR) -> str:
    model, kind = row["model_id"], row["kind"]
    if kind != "changed":
        return f"{model}: {kind}"
    pct = row["pct_change"]
    percent = f" ({pct:+.1f}%)" if isinstance(pct, float) else ""
    check = f" — {check_note(factor)}" if row.get("check") else ""
    return f"{model}: {row['field']} {row['old_value']} -> {row['new_value']}{percent}{check}"


def feed_rows(
    store: Store,
    *,
    source: str,
    since: datetime | None,
    filters: dict[str, str | None],
    factor: float = DEFAULT_FACTOR,
) -> pl.DataFrame:
    """The newest changes of `source` after `since` matching SPEC 4 `filters`, newest
    first, at most `ENTRIES`, with the plausibility `check` column: the feed's entries
    (and the `/changes` page's rows). A bad filter value raises `BadParameter`."""
    rows = store.changes_with_values(source=source, since=since, limit=ENTRIES * 5)
    if rows.height:
        catalog = rows.with_columns(pl.int_range(pl.len()).alias("position"))
        query = parse_query(catalog, **filters)
        rows = apply_query(catalog, query).sort("position").head(ENTRIES)
    return flag_implausible(rows, factor)


def atom_feed(
    store: Store,
    *,
    source: str,
    since: datetime | None,
    filters: dict[str, str | None],
    base_url: str,
    factor: float = DEFAULT_FACTOR,
) -> Answer:
    """The feed for one source; a bad filter value raises `BadParameter` (a 400)."""
    rows = feed_rows(store, source=source, since=since, filters=filters, factor=factor)
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"tag:modelwatch,2026:changes/{quote(source)}"
    ET.SubElement(feed, f"{{{ATOM}}}title").text = f"modelwatch: what changed in {source}"
    newest = rows["changed_at"].max() if rows.height else None
    updated = newest if isinstance(newest, datetime) else datetime(1970, 1, 1)
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = _stamp(updated)
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "modelwatch"
    ET.SubElement(
        feed, f"{{{ATOM}}}link", rel="self", href=f"{base_url}/changes.atom?source={quote(source)}"
    )
    for row in rows.iter_rows(named=True):
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        key = "/".join(
            quote(str(part), safe="")
            for part in (source, row["model_id"], _stamp(row["changed_at"]), row["kind"])
        )
        field = f"/{row['field']}" if row["field"] else ""
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"tag:modelwatch,2026:{key}{field}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = _title(row, factor)
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _stamp(row["changed_at"])
        page = base_url + model_path(str(row["model_id"]), source)
        ET.SubElement(entry, f"{{{ATOM}}}link", href=page)
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = _title(row, factor)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Answer(200, body, media_type=ATOM_TYPE)
