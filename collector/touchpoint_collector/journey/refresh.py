"""Keeping the map current inside ClickHouse: a refreshable materialized view rebuilds
``journey_steps`` (the unfiltered map's steps) on a schedule, with no process involved.
Refreshable views need an Atomic database, which the store creates."""

from __future__ import annotations

from touchpoint_collector.journey.model import MapFilters, MapSettings
from touchpoint_collector.journey.steps import steps_sql
from touchpoint_collector.store import Store

VIEW = "journey_steps_refresh"


def install(store: Store, settings: MapSettings, every_seconds: int = 300) -> None:
    """Create or replace the view with the current settings (idempotent)."""
    params: dict[str, object] = {}
    select = steps_sql(MapFilters(), settings.gap_days, params)
    # DDL cannot bind parameters: inline the one numeric value.
    select = select.replace("{gap_ms:Int64}", str(int(params["gap_ms"])))  # type: ignore[call-overload]
    store.command(f"DROP VIEW IF EXISTS {VIEW} SYNC")
    store.command(
        f"CREATE MATERIALIZED VIEW {VIEW} REFRESH EVERY {int(every_seconds)} SECOND "
        f"TO journey_steps AS {select}"
    )


def refresh_now(store: Store) -> None:
    store.command(f"SYSTEM REFRESH VIEW {VIEW}")
    store.command(f"SYSTEM WAIT VIEW {VIEW}")
