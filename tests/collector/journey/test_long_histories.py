"""A person with tens of thousands of events (a bot, a shared test account, a B2B buyer
whose whole company logs in as one user) must cost the map what their events cost, not
their square. A ClickHouse lambda copies every array it captures once per element it maps,
so one lambda over a person's steps that captures another array of theirs costs n² values:
30,000 events took 29 s and 12 GB. The builds below run under a 1 GiB query memory limit,
which that would exceed by far."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest

from tests.collector.journey.generators import DAY, at, clear, read_rows, write_log
from tests.collector.journey.reference import differences, plain, reference_map
from tests.collector.journey.test_keeper import (
    GRACE,
    PAST_GRACE,
    assert_same_map,
    identify,
    track,
)
from touchpoint_collector.journey import MapFilters, MapSettings, build_map
from touchpoint_collector.journey.keeper import MapKeeper
from touchpoint_collector.journey.steps import steps_sql
from touchpoint_collector.store import Store

EVENTS = 30_000
TOUCHPOINTS = ("site_visit", "product_viewed", "pricing_viewed", "cart_added")
SETTINGS = MapSettings(gap_days=30, end_after_days=2, min_support=1)
AS_OF = at(90 * DAY)
MEMORY_LIMIT = 1 << 30


@pytest.fixture
def limited(store: Store) -> Iterator[Store]:
    """`store`, whose clients (the build's and its second lane's) refuse any query that
    needs more than :data:`MEMORY_LIMIT`."""
    clients = [store.client, store.lane().client]
    for client in clients:
        client.set_client_setting("max_memory_usage", MEMORY_LIMIT)
    yield store
    for client in clients:
        client.set_client_setting("max_memory_usage", 0)


def add_heavy_person(
    store: Store, tag: str = "h", start: int = 0, journey_every: int = 0, events: int = EVENTS
) -> None:
    """User ``heavy``: `events` events a minute apart from `start` (ms), cycling
    through four touchpoints (no repeats to collapse: as many steps as events), in one
    journey, or with 20 minutes more after every `journey_every` events; their message ids
    start with `tag`."""
    pause = (
        f" + toIntervalMinute(intDiv(nums.number + 1, {journey_every}) * 20)"
        if journey_every
        else ""
    )
    write_log(store, [track("heavy", TOUCHPOINTS[0], start, f"{tag}-seed")])
    stages = ("awareness", "consideration", "consideration", "purchase")
    store.command(
        f"""INSERT INTO events
        SELECT one.* REPLACE (
            concat('{tag}-', toString(nums.number)) AS message_id,
            one.timestamp + toIntervalMinute(nums.number + 1){pause} AS timestamp,
            {list(TOUCHPOINTS)}[(nums.number + 1) % 4 + 1] AS touchpoint,
            {list(stages)}[(nums.number + 1) % 4 + 1] AS stage,
            one.ingest_seq + nums.number + 1 AS ingest_seq
        )
        FROM (SELECT * FROM events WHERE message_id = '{tag}-seed') AS one
        CROSS JOIN numbers({events - 1}) AS nums"""
    )


def test_a_person_with_30000_events_builds_within_a_small_memory_limit(limited: Store) -> None:
    clear(limited)
    write_log(limited, [track("u1", "site_visit", 0, "m1"), track("u1", "purchase", DAY, "m2")])
    add_heavy_person(limited)
    built = build_map(limited, MapFilters(), SETTINGS, as_of=AS_OF)
    assert (built.coverage.persons, built.coverage.events) == (2, EVENTS + 2)
    steps = {n.id: n.steps for n in built.nodes}
    assert [steps[t] for t in TOUCHPOINTS] == [
        EVENTS // 4 + 1,
        EVENTS // 4,
        EVENTS // 4,
        EVENTS // 4,
    ]
    (visit_to_view,) = [
        e for e in built.edges if (e.source, e.target) == ("site_visit", "product_viewed")
    ]
    assert (visit_to_view.transitions, visit_to_view.persons) == (EVENTS // 4, 1)
    assert visit_to_view.median_seconds == 60.0
    (consideration,) = [s for s in built.stages if s.stage == "consideration"]
    assert consideration.converted_persons == 1  # heavy, on to cart_added (purchase)


def test_a_kept_map_appends_to_a_person_with_30000_events(limited: Store) -> None:
    clear(limited)
    add_heavy_person(limited)
    time.sleep(PAST_GRACE)  # so that the next build re-reads none of these
    keeper = MapKeeper(limited, SETTINGS, inbox_grace=GRACE, full_above_share=10.0)
    keeper.build(as_of=AS_OF)
    write_log(limited, [track("heavy", "review_posted", 60 * DAY, "h-last")])
    time.sleep(PAST_GRACE)
    built = keeper.build(as_of=AS_OF)
    assert keeper.last is not None and keeper.last.persons_appended == 1
    assert built.coverage.events == EVENTS + 1
    assert_same_map(built, limited, SETTINGS, MapFilters(), AS_OF)
    keeper.forget()


def test_a_kept_map_recomputes_a_person_with_30000_new_events(limited: Store) -> None:
    """A device identified as ``heavy`` in the same batch as 30,000 more of its events:
    the person is recomputed from all 60,000, and the build remembers which of the new
    events its row holds (one set of (person, message) pairs, not each new event
    joined to a copy of the row's messages)."""
    clear(limited)
    add_heavy_person(limited)
    time.sleep(PAST_GRACE)
    keeper = MapKeeper(limited, SETTINGS, inbox_grace=GRACE, full_above_share=10.0)
    keeper.build(as_of=AS_OF)
    add_heavy_person(limited, tag="g", start=EVENTS * 60_000)
    write_log(
        limited,
        [
            track("a-dev", "site_visit", 0, "d1"),
            identify("a-dev", "heavy", DAY, "d2"),
        ],
    )
    time.sleep(PAST_GRACE)
    built = keeper.build(as_of=AS_OF)
    assert keeper.last is not None and keeper.last.persons_recomputed == 1
    assert (built.coverage.persons, built.coverage.events) == (1, 2 * EVENTS + 1)
    assert_same_map(built, limited, SETTINGS, MapFilters(), AS_OF)
    time.sleep(PAST_GRACE)
    keeper.build(as_of=AS_OF)  # the new events were remembered: nobody to recompute
    assert keeper.last is not None and keeper.last.persons_recomputed == 0
    keeper.forget()


def test_a_person_with_20000_journeys_equals_the_reference(limited: Store) -> None:
    """60,000 events in 20,000 journeys (a short inactivity gap). The person row finds
    what a step's journey holds by scanning, not by looking it up in an array of the
    whole person (the stage funnel's lookup asked for 2 GiB at 3,000 journeys of 30,000
    events), and the views read a journey's last step or goal steps the same way, not by
    slicing the person's arrays once per journey (1.1 GiB here); every figure equals the
    Python reference."""
    clear(limited)
    write_log(limited, [track("u1", "site_visit", 0, "m1"), track("u1", "purchase", DAY, "m2")])
    add_heavy_person(limited, journey_every=3, events=2 * EVENTS)  # and u1's two: a day apart
    settings = msgspec.structs.replace(SETTINGS, gap_days=0.01)  # 14.4 minutes
    events, identities = read_rows(limited)
    args = (events, identities, MapFilters(), settings, AS_OF)
    built = build_map(limited, MapFilters(), settings, as_of=AS_OF)
    assert built.coverage.journeys == 2 * EVENTS // 3 + 2
    found = differences(reference_map(*args), plain(built))
    assert not found, "SQL != reference:\n" + "\n".join(found)


def test_journey_steps_of_a_person_with_30000_events(limited: Store) -> None:
    """The analysts' ``journey_steps`` has its own SQL (``steps.steps_sql``): the same
    limit holds for it."""
    clear(limited)
    add_heavy_person(limited)
    params: dict[str, object] = {}
    select = steps_sql(MapFilters(), SETTINGS.gap_days, params)
    rows = limited.rows(
        f"SELECT touchpoint, count(), max(step), max(repeats) FROM ({select}) GROUP BY touchpoint",
        params,
    )
    assert sorted(rows) == sorted(
        (t, EVENTS // 4, EVENTS - 3 + i, 1) for i, t in enumerate(TOUCHPOINTS)
    )
