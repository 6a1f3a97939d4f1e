"""The comparison with the previous period reads that period's snapshot, until events are
backfilled into it."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.collector.journey.generators import DAY, at, clear, write_log
from tests.collector.journey.test_keeper import SETTINGS, track
from touchpoint_collector.journey import MapFilters
from touchpoint_collector.journey.service import current_map
from touchpoint_collector.store import Store

GRACE = timedelta(milliseconds=50)


def previous_snapshots(store: Store) -> int:
    found = store.query(
        "SELECT count() FROM map_snapshots WHERE until = {until:DateTime64(3, 'UTC')}",
        parameters={"until": at(10 * DAY)},
    ).result_rows
    return int(found[0][0])


def test_a_backfill_into_the_previous_period_rebuilds_its_snapshot(store: Store) -> None:
    clear(store)
    store.command("TRUNCATE TABLE map_snapshots")
    write_log(
        store, [track("u1", "site_visit", 2 * DAY, "m1"), track("u2", "site_visit", 12 * DAY, "m2")]
    )
    filters = MapFilters(since=at(10 * DAY), until=at(20 * DAY))

    def compared() -> int:
        built = current_map(store, filters, SETTINGS, now=at(25 * DAY), inbox_grace=GRACE)
        assert built.comparison is not None
        return built.comparison.persons_before

    assert (compared(), previous_snapshots(store)) == (1, 1)
    time.sleep(0.1)
    # An event after the previous window changes nothing there: its snapshot serves.
    write_log(store, [track("u3", "site_visit", 13 * DAY, "m3")])
    assert (compared(), previous_snapshots(store)) == (1, 1)
    time.sleep(0.1)
    # A backfill into it: built again, and counted.
    write_log(store, [track("u4", "site_visit", 3 * DAY, "m4")])
    assert (compared(), previous_snapshots(store)) == (2, 2)
    time.sleep(0.1)
    assert (compared(), previous_snapshots(store)) == (2, 2)  # and read from then on
