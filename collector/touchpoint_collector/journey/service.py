"""Building a map the way users ask for it: with the comparison to the previous period,
read from a snapshot when one exists, and the result saved as a snapshot in turn."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from touchpoint_collector.journey import snapshots
from touchpoint_collector.journey.build import build_map
from touchpoint_collector.journey.compare import compare
from touchpoint_collector.journey.keeper import MapKeeper
from touchpoint_collector.journey.model import JourneyMap, MapFilters, MapSettings
from touchpoint_collector.journey.params import previous_period
from touchpoint_collector.store import Store
from touchpoint_schemas.taxonomy import Taxonomy


def current_map(
    store: Store,
    filters: MapFilters,
    settings: MapSettings,
    *,
    taxonomy: Taxonomy | None = None,
    now: datetime | None = None,
    with_comparison: bool = True,
    save: bool = True,
    keeper: MapKeeper | None = None,
    previous: MapFilters | None = None,
) -> JourneyMap:
    """`keeper`: builds the map by updating the rows it kept from its previous build
    (its own settings apply) instead of from scratch. `previous`: the window to compare
    with, when not the one of the same length just before (``previous_period``)."""
    now = now or datetime.now(UTC)
    if keeper is not None:
        journey_map = keeper.build(filters, as_of=now)
    else:
        journey_map = build_map(store, filters, settings, as_of=now, taxonomy=taxonomy)
    before_filters = (previous or previous_period(filters, now)) if with_comparison else None
    if before_filters is not None:
        # A snapshot of the previous window is valid once built after that window closed.
        before = snapshots.load(store, before_filters, settings, not_before=before_filters.until)
        if before is None:
            before = build_map(store, before_filters, settings, as_of=now, taxonomy=taxonomy)
            if save:
                snapshots.save(store, before)
        journey_map = msgspec.structs.replace(journey_map, comparison=compare(journey_map, before))
    if save:
        snapshots.save(store, journey_map)
    return journey_map
