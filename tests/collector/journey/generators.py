"""Hypothesis strategies for event logs that exercise every rule of the journey map.

A generated :class:`Scenario` is an event log (Segment-style event bodies in insertion
order, each with the source it arrives from), the identity links among its ids, the map's
settings and filters, and the "now" to build as of. What the strategies aim for:

* several persons whose anonymous ids are later identified, and alias chains a -> b -> c
  (and longer, where ``resolve``'s two hops stop short), link ties on ``first_seen``;
* ties in timestamps (broken by ``ingest_seq``, which follows insertion order), consecutive
  repeats of a touchpoint, loops (A B A), explicit stages that move backwards;
* gaps around ``gap_days`` (exactly on it, and a millisecond over), so journeys split;
* "now" close to or far from the last events (in progress vs ended);
* feedback scores, a goal that some journeys reach and some never do;
* resends of the same message (deduplicated by ``FINAL``);
* filters that select a part, or nothing at all.

Timestamps are whole milliseconds (``DateTime64(3)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tests.collector.journey.reference import (
    EVENTS_QUERY,
    IDENTITIES_QUERY,
    EventRow,
    IdentityRow,
)
from touchpoint_collector.enrich import Arrival
from touchpoint_collector.ingest import prepare_batch
from touchpoint_collector.journey.model import MapFilters, MapSettings
from touchpoint_collector.store import Store
from touchpoint_collector.writer import write_rows
from touchpoint_schemas.taxonomy import Taxonomy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECEIVED = T0 + timedelta(days=4000)
"""Arrival time for every batch: after every generated timestamp, so none is clamped."""

MS = 1
SECOND = 1000
HOUR = 3600 * SECOND
DAY = 24 * HOUR

ANONYMOUS_IDS = ("a1", "a2", "a3", "a4")
USER_IDS = ("u1", "u2", "u3")
ALL_IDS = ANONYMOUS_IDS + USER_IDS
SOURCES = ("web", "ios", "crm")
CHANNELS = ("web", "app", "email", "store")
PERSONAS = ("smb", "enterprise")

TOUCHPOINTS = (
    "ad_click",
    "site_visit",
    "email_opened",
    "social_engagement",
    "product_viewed",
    "pricing_viewed",
    "trial_started",
    "demo_requested",
    "cart_added",
    "checkout_started",
    "purchase",
    "app_opened",
    "support_contact",
    "feedback_given",
    "review_posted",
    "referral_made",
)
DEFAULT_STAGE = {tp.name: tp.stage.value for tp in Taxonomy.standard().touchpoints}
STAGE_NAMES = ("awareness", "consideration", "purchase", "retention", "advocacy")

DELTAS_MS = (
    0,
    0,
    MS,
    SECOND,
    HOUR,
    DAY,
    DAY + MS,
    2 * DAY,
    7 * DAY,
    7 * DAY + MS,
    30 * DAY,
    60 * DAY,
    60 * DAY + MS,
)
"""Time between one id's consecutive events: ties, exact day boundaries and one ms past."""

GAP_DAYS = (1.0, 2.0, 7.0, 30.0, 60.0)
END_AFTER_DAYS = (None, None, 0.5, 1.0, 3.0, 30.0)
GOALS = (
    "purchase",
    "purchase",
    "stage:purchase",
    "cart_added",
    "support_contact",
    "review_posted",
)
AS_OF_AFTER_MS = (0, MS, 12 * HOUR, DAY, DAY + MS, 3 * DAY, 40 * DAY, 400 * DAY)
WINDOW_EDGES_MS = (0, DAY, 7 * DAY, 30 * DAY, 61 * DAY, 120 * DAY, 400 * DAY)
PROPERTY_FILTERS = (
    ("plan", "pro"),
    ("plan", "free"),
    ("plan", ""),  # matches no event: none has an empty plan, and a missing key never matches
    ("n", "2"),
    ("n", "1"),
    ("n", "2.0"),  # numbers match by value: 2 and 2.0
    ("n", "1e20"),
    ("n", "true"),
)


@dataclass(frozen=True)
class LogEvent:
    """One event body to send, and the source (request) it arrives with."""

    source: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    events: list[LogEvent]
    settings: MapSettings
    filters: MapFilters
    as_of: datetime

    def describe(self) -> str:
        lines = [f"settings={self.settings!r}", f"filters={self.filters!r}", f"as_of={self.as_of}"]
        lines += [f"{e.source}: {json.dumps(e.body, sort_keys=True)}" for e in self.events]
        return "\n".join(lines)


def iso(ms: int) -> str:
    """T0 + ms as an ISO timestamp with milliseconds."""
    return (T0 + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def id_fields(raw_id: str) -> dict[str, str]:
    return {"anonymousId": raw_id} if raw_id.startswith("a") else {"userId": raw_id}


@st.composite
def track_events(draw: st.DrawFn, goal: str = "purchase") -> tuple[list[LogEvent], int]:
    """Touchpoint events on per-id clocks; returns them and the latest timestamp (ms)."""
    if draw(st.booleans()):
        pool = draw(st.lists(st.sampled_from(TOUCHPOINTS), min_size=2, max_size=10, unique=True))
    else:  # every touchpoint of one or two stages: crowded stages, `other` buckets, self-loops
        stages = draw(st.lists(st.sampled_from(STAGE_NAMES), min_size=1, max_size=2, unique=True))
        pool = [tp for tp in TOUCHPOINTS if DEFAULT_STAGE[tp] in stages]
    if goal in TOUCHPOINTS and goal not in pool and draw(st.integers(0, 3)) > 0:
        pool.append(goal)  # most logs can reach the goal, some cannot
    # Sometimes one touchpoint is a hub between the others (derived cross-cutting).
    hub = draw(st.sampled_from(pool)) if draw(st.integers(0, 3)) == 0 else None
    ids = draw(st.lists(st.sampled_from(ALL_IDS), min_size=2, max_size=6, unique=True))
    clock = {raw: draw(st.sampled_from((0, 0, 5 * DAY, 20 * DAY))) for raw in ids}
    previous: dict[str, str] = {}
    events: list[LogEvent] = []
    sent: list[LogEvent] = []
    for index in range(draw(st.integers(min_value=1, max_value=40))):
        if sent and draw(st.integers(0, 19)) == 0:
            events.append(draw(st.sampled_from(sent)))  # an SDK retry: same bytes again
            continue
        raw = draw(st.sampled_from(ids))
        clock[raw] += draw(st.sampled_from(DELTAS_MS))
        if raw in previous and draw(st.integers(0, 3)) == 0:
            touchpoint = previous[raw]  # a consecutive repeat (unless another id interleaves)
        elif hub is not None and previous.get(raw) != hub and draw(st.booleans()):
            touchpoint = hub
        else:
            touchpoint = draw(st.sampled_from(pool))
        previous[raw] = touchpoint
        body: dict[str, Any] = {
            "type": "track",
            "event": touchpoint.replace("_", " ").title(),
            "touchpoint": touchpoint,
            "messageId": f"m{index}",
            "timestamp": iso(clock[raw]),
            **id_fields(raw),
        }
        if draw(st.integers(0, 5)) == 0:
            body["stage"] = draw(st.sampled_from(STAGE_NAMES))
        if draw(st.integers(0, 3)) == 0:
            body["channel"] = draw(st.sampled_from(CHANNELS))
        properties: dict[str, Any] = {}
        if draw(st.booleans()):
            properties["plan"] = draw(st.sampled_from(("free", "pro")))
        if draw(st.booleans()):
            properties["n"] = draw(st.sampled_from((1, 2, 2.0, 1e20, True)))
        if touchpoint == "feedback_given":
            properties["score"] = draw(st.integers(1, 10))
        if properties:
            body["properties"] = properties
        event = LogEvent(source=draw(st.sampled_from(SOURCES)), body=body)
        events.append(event)
        sent.append(event)
    latest = max(clock.values())
    return events, latest


@st.composite
def identity_events(draw: st.DrawFn, latest: int) -> list[LogEvent]:
    """identify / alias calls: links (possibly chained or repeated) and persona traits."""
    events: list[LogEvent] = []
    times = (0, DAY, 10 * DAY, max(latest, 0), 10 * DAY + MS)
    count = draw(st.integers(min_value=0, max_value=6))
    for index in range(count):
        old = draw(st.sampled_from(ALL_IDS))
        new = draw(st.sampled_from(ALL_IDS))
        when = iso(draw(st.sampled_from(times)))
        traits: dict[str, Any] = {}
        persona = draw(st.sampled_from((None, "", *PERSONAS)))
        if persona is not None:
            traits["persona"] = persona
        kind = draw(st.sampled_from(("identify", "alias", "identify_only")))
        body: dict[str, Any]
        if old == new or kind == "identify_only":
            body = {"type": "identify", "userId": new, "traits": traits}
        elif kind == "identify":
            body = {"type": "identify", "anonymousId": old, "userId": new, "traits": traits}
        else:
            body = {"type": "alias", "previousId": old, "userId": new}
        body["messageId"] = f"i{index}"
        body["timestamp"] = when
        events.append(LogEvent(source=draw(st.sampled_from(SOURCES)), body=body))
    return events


@st.composite
def chain_events(draw: st.DrawFn) -> list[LogEvent]:
    """Sometimes an explicit alias chain a1 -> u1 -> u2 -> u3 (resolve stops after 2 hops)."""
    length = draw(st.integers(min_value=0, max_value=3))
    hops = [("a1", "u1"), ("u1", "u2"), ("u2", "u3")][:length]
    when = draw(st.sampled_from((0, DAY)))
    return [
        LogEvent(
            source="web",
            body={
                "type": "alias",
                "previousId": old,
                "userId": new,
                "messageId": f"c{index}",
                "timestamp": iso(when + index),
            },
        )
        for index, (old, new) in enumerate(hops)
    ]


@st.composite
def map_settings(draw: st.DrawFn) -> MapSettings:
    end_after_days = draw(st.sampled_from(END_AFTER_DAYS))
    gap_choices = GAP_DAYS if end_after_days is None else (0.5, *GAP_DAYS)
    return MapSettings(
        gap_days=draw(st.sampled_from(gap_choices)),
        end_after_days=end_after_days,
        goal=draw(st.sampled_from(GOALS)),
        top_n=draw(st.sampled_from((1, 2, 2, 8))),
        min_support=draw(st.sampled_from((1, 2, 5))),
        path_limit=draw(st.sampled_from((3, 10))),
        max_path_steps=draw(st.sampled_from((2, 3, 20))),
        cross_cutting=draw(st.sampled_from((("support_contact",), ()))),
    )


@st.composite
def map_filters(draw: st.DrawFn) -> MapFilters:
    """No filter half the time; otherwise one or two kinds of filter."""
    if draw(st.integers(0, 9)) < 5:
        return MapFilters()
    kinds = draw(
        st.lists(
            st.sampled_from(
                ("since", "until", "window", "sources", "channels", "persona", "props")
            ),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    since = until = None
    if "since" in kinds or "window" in kinds:
        since = at(draw(st.sampled_from(WINDOW_EDGES_MS)))
    if "until" in kinds or "window" in kinds:
        until = at(draw(st.sampled_from(WINDOW_EDGES_MS)))
    sources: tuple[str, ...] = ()
    if "sources" in kinds:
        sources = tuple(draw(st.lists(st.sampled_from(SOURCES), min_size=1, unique=True)))
    channels: tuple[str, ...] = ()
    if "channels" in kinds:
        channels = tuple(draw(st.lists(st.sampled_from(CHANNELS), min_size=1, unique=True)))
    persona = draw(st.sampled_from(PERSONAS)) if "persona" in kinds else None
    properties: tuple[tuple[str, str], ...] = ()
    if "props" in kinds:
        properties = (draw(st.sampled_from(PROPERTY_FILTERS)),)
    return MapFilters(
        since=since,
        until=until,
        sources=sources,
        channels=channels,
        persona=persona,
        properties=properties,
    )


@st.composite
def scenarios(draw: st.DrawFn, *, filtered: bool = True) -> Scenario:
    map_settings_ = draw(map_settings())
    tracks, latest = draw(track_events(map_settings_.goal))
    identities = draw(identity_events(latest)) + draw(chain_events())
    log = tracks + identities
    # Insertion order decides ingest_seq, which breaks timestamp ties: mix it up.
    order = draw(st.sampled_from(("as_drawn", "identities_first", "reversed", "shuffled")))
    if order == "identities_first":
        log = identities + tracks
    elif order == "reversed":
        log = log[::-1]
    elif order == "shuffled":
        log = draw(st.permutations(log))
    as_of = at(latest + draw(st.sampled_from(AS_OF_AFTER_MS)))
    filters = draw(map_filters()) if filtered else MapFilters()
    return Scenario(events=list(log), settings=map_settings_, filters=filters, as_of=as_of)


# --- the store ------------------------------------------------------------------------------


def write_log(store: Store, events: list[LogEvent]) -> None:
    """Send each event as its own batch, in order (so ``ingest_seq`` follows the list)."""
    taxonomy = Taxonomy.standard()
    event_rows: list[tuple[Any, ...]] = []
    identity_rows: list[tuple[Any, ...]] = []
    for event in events:
        arrival = Arrival(source=event.source, received_at=RECEIVED, collector_id="test")
        body = json.dumps({"batch": [event.body]}).encode()
        prepared, _ = prepare_batch(body, arrival, taxonomy)
        assert not prepared.rejections, [r.as_dict() for r in prepared.rejections]
        event_rows += prepared.events
        identity_rows += prepared.identities
    write_rows(store, "events", event_rows)
    write_rows(store, "identities", identity_rows)


def clear(store: Store) -> None:
    store.command("TRUNCATE TABLE events")
    store.command("TRUNCATE TABLE identities")
    store.command("TRUNCATE TABLE journey_inbox")


def read_rows(store: Store) -> tuple[list[EventRow], list[IdentityRow]]:
    events = [EventRow(*row) for row in store.rows(EVENTS_QUERY)]
    identities = [IdentityRow(*row) for row in store.rows(IDENTITIES_QUERY)]
    return events, identities
