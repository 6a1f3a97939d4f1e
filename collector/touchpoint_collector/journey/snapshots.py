"""Map snapshots in ClickHouse (``map_snapshots``): built maps kept as JSON, so the viewer
shows the latest at once and a period comparison reads the previous period instead of
recomputing it."""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

from touchpoint_collector.journey.model import JourneyMap, MapFilters, MapSettings
from touchpoint_collector.store import Store


def filters_key(filters: MapFilters, settings: MapSettings) -> str:
    """Identifies "the same map" across windows: filters other than the window, and settings."""
    shape = msgspec.structs.replace(filters, since=None, until=None)
    blob = msgspec.json.encode([shape, settings])
    return hashlib.sha256(blob).hexdigest()[:16]


def save(store: Store, journey_map: JourneyMap) -> None:
    store.client.insert(
        "map_snapshots",
        [
            [
                journey_map.built_at,
                filters_key(journey_map.filters, journey_map.settings),
                journey_map.filters.since,
                journey_map.filters.until,
                journey_map.coverage.as_of,
                journey_map.coverage.events,
                journey_map.coverage.persons,
                msgspec.json.encode(journey_map).decode(),
            ]
        ],
        column_names=[
            "built_at",
            "filters_key",
            "since",
            "until",
            "as_of",
            "events",
            "persons",
            "map_json",
        ],
    )


def load(
    store: Store,
    filters: MapFilters,
    settings: MapSettings,
    *,
    not_before: datetime | None = None,
) -> JourneyMap | None:
    """The latest snapshot of exactly this map and window (built after `not_before`)."""
    conditions = ["filters_key = {key:String}"]
    params: dict[str, object] = {"key": filters_key(filters, settings)}
    for name in ("since", "until"):
        value = getattr(filters, name)
        if value is None:
            conditions.append(f"isNull({name})")
        else:
            conditions.append(f"{name} = {{{name}:DateTime64(3, 'UTC')}}")
            params[name] = value
    if not_before is not None:
        conditions.append("built_at >= {not_before:DateTime64(3, 'UTC')}")
        params["not_before"] = not_before
    rows = store.query(
        f"SELECT map_json FROM map_snapshots WHERE {' AND '.join(conditions)} "
        "ORDER BY built_at DESC LIMIT 1",
        parameters=params,
    ).result_rows
    return msgspec.json.decode(rows[0][0], type=JourneyMap) if rows else None
