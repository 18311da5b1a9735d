"""`/changes.atom`: the change feed as Atom 1.0 (SPEC 5 "Change feeds").

One entry per change (added, removed, returned, a field changed old -> new), newest
first. Entry ids are tag URIs built from the change itself (source, model, time, kind,
field), so they are the same on every request. ElementTree escapes every catalog string.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote
from xml.etree import ElementTree as ET

import polars as pl

from pipeline.query.filters import apply_query, parse_query
from pipeline.serve.http import Answer
from pipeline.store import Store

ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
FEED_PARAMS = ("source", "type", "model", "features", "modalities", "since")
ENTRIES = 200


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _title(row: dict[str, object]) -> str:
    model, kind = row["model_id"], row["kind"]
    if kind != "changed":
        return f"{model}: {kind}"
    pct = row["pct_change"]
    percent = f" ({pct:+.1f}%)" if isinstance(pct, float) else ""
    return f"{model}: {row['field']} {row['old_value']} -> {row['new_value']}{percent}"


def atom_feed(
    store: Store,
    *,
    source: str,
    since: datetime | None,
    filters: dict[str, str | None],
    base_url: str,
) -> Answer:
    """The feed for one source; a bad filter value raises `BadParameter` (a 400)."""
    rows = store.changes_with_values(source=source, since=since, limit=ENTRIES * 5)
    if rows.height:
        catalog = rows.with_columns(pl.int_range(pl.len()).alias("position"))
        query = parse_query(catalog, **filters)
        rows = apply_query(catalog, query).sort("position").head(ENTRIES)
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
        ET.SubElement(entry, f"{{{ATOM}}}title").text = _title(row)
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _stamp(row["changed_at"])
        ET.SubElement(
            entry,
            f"{{{ATOM}}}link",
            href=f"{base_url}/v1/models/{quote(str(row['model_id']), safe='/')}",
        )
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = _title(row)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Answer(200, body, media_type=ATOM_TYPE)
