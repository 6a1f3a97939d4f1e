"""Writing prepared rows into a store, as the collector's loader does."""

from __future__ import annotations

from touchpoint_collector.enrich import Arrival
from touchpoint_collector.ingest import Prepared
from touchpoint_collector.store import Store
from touchpoint_collector.writer import write_rows


def write_prepared(
    store: Store, prepared: Prepared, arrival: Arrival, endpoint: str = "/v1/batch"
) -> None:
    write_rows(store, "events", prepared.events)
    write_rows(store, "identities", prepared.identities)
    write_rows(store, "rejected_events", prepared.rejected_rows(arrival, endpoint))
