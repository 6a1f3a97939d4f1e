"""Small event logs with every expected figure worked out by hand (in the comments).

Each fixture is built with ``build_map`` (ClickHouse) and compared with the numbers below;
the pure-Python reference must produce the same numbers too, so a wrong hand count, a wrong
reference and a wrong query cannot all agree by accident.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from typing import Any

from tests.collector.journey.generators import T0, LogEvent, clear, read_rows, write_log
from tests.collector.journey.reference import differences, plain, reference_map
from touchpoint_collector.journey import JourneyMap, MapFilters, MapSettings, build_map
from touchpoint_collector.store import Store

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_ids = itertools.count()


def at(offset: timedelta) -> str:
    return (T0 + offset).isoformat(timespec="milliseconds")


def track(raw_id: str, touchpoint: str, when: timedelta, **extra: Any) -> LogEvent:
    who = {"anonymousId": raw_id} if raw_id.startswith("anon") else {"userId": raw_id}
    body = {
        "type": "track",
        "event": touchpoint,
        "touchpoint": touchpoint,
        "messageId": f"f{next(_ids)}",
        "timestamp": at(when),
        **who,
        **extra,
    }
    return LogEvent(source="web", body=body)


def identify(anonymous_id: str, user_id: str, when: timedelta, persona: str) -> LogEvent:
    body = {
        "type": "identify",
        "anonymousId": anonymous_id,
        "userId": user_id,
        "traits": {"persona": persona},
        "messageId": f"f{next(_ids)}",
        "timestamp": at(when),
    }
    return LogEvent(source="web", body=body)


def build(
    store: Store,
    log: list[LogEvent],
    settings: MapSettings,
    as_of: datetime,
    filters: MapFilters | None = None,
) -> JourneyMap:
    """The SQL map of `log`, after checking that the reference agrees with it."""
    filters = filters or MapFilters()
    clear(store)
    write_log(store, log)
    events, identities = read_rows(store)
    built = build_map(store, filters, settings, as_of=as_of)
    expected = reference_map(events, identities, filters, settings, as_of)
    assert differences(expected, plain(built)) == []
    return built


def approx(value: float | None, expected: float) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=1e-9)


def node_table(built: JourneyMap) -> list[tuple[Any, ...]]:
    return [
        (n.id, n.kind, n.stage, n.persons, n.steps, n.events, round(n.reach, 6))
        for n in built.nodes
    ]


def edge_table(built: JourneyMap) -> list[tuple[Any, ...]]:
    return [(e.source, e.target, e.transitions, e.persons, round(e.p_next, 6)) for e in built.edges]


def test_stitching_gap_split_and_repeats(store: Store) -> None:
    """anon1 browses, then logs in as u1 and buys; u1 comes back 19 days later; u2 browses.

    Person u1 (anon1 resolves to u1 through the identify link):
      journey 1 (stitched: its first events carry anon1): site_visit x2 (one step,
        repeats 2) at d0 00:00, product_viewed d0 01:00, cart_added d1 00:00,
        purchase d1 00:05;
      journey 2: app_opened at d20: 18d 23h55m after the purchase > gap_days 7, so it splits.
    Person u2: site_visit d0 00:00, product_viewed d0 01:00.
    The identify call has no touchpoint: not an event of the map.

    events = 3 + 2 + 1 + 2 = 8; persons 2; journeys 3; stitched 1 -> share 1/3.
    end_after 1 day, as_of d30: every journey ended. converted: u1 -> goal_rate 1/2.
    """
    log = [
        track("anon1", "site_visit", 0 * HOUR),
        track("anon1", "site_visit", 10 * timedelta(minutes=1)),
        track("anon1", "product_viewed", 1 * HOUR),
        identify("anon1", "u1", 2 * HOUR, persona="smb"),
        track("u1", "cart_added", DAY),
        track("u1", "purchase", DAY + 5 * timedelta(minutes=1)),
        track("u1", "app_opened", 20 * DAY),
        track("u2", "site_visit", 0 * HOUR),
        track("u2", "product_viewed", 1 * HOUR),
    ]
    settings = MapSettings(gap_days=7, end_after_days=1, goal="purchase", min_support=1)
    built = build(store, log, settings, as_of=T0 + 30 * DAY)

    cov = built.coverage
    assert (cov.events, cov.persons, cov.journeys, cov.stitched_journeys) == (8, 2, 3, 1)
    assert approx(cov.stitched_share, 1 / 3)
    assert (cov.ended_journeys, cov.in_progress_journeys, cov.converted_persons) == (3, 0, 1)
    assert approx(cov.goal_rate, 0.5)
    assert cov.end_after_seconds == 86400
    assert (cov.first_event, cov.last_event) == (T0, T0 + 20 * DAY)

    # Funnel: awareness -> consideration for both (1h each); consideration -> purchase for
    # u1 only (d0 01:00 -> d1 00:00 = 23h); u2 drops in consideration, u1's journey 1 ends
    # in purchase, journey 2 in retention.
    rows = {row.stage: row for row in built.stages}
    assert (rows["awareness"].persons, rows["awareness"].converted_persons) == (2, 2)
    assert rows["awareness"].median_seconds_to_next == 3600
    assert (rows["consideration"].converted_persons, rows["consideration"].dropped_persons) == (
        1,
        1,
    )
    assert rows["consideration"].median_seconds_to_next == 23 * 3600
    assert approx(rows["consideration"].dropoff_rate, 0.5)
    assert (rows["purchase"].persons, rows["purchase"].dropped_persons) == (1, 1)
    assert rows["purchase"].conversion_rate == 0
    assert (rows["retention"].persons, rows["retention"].dropped_persons) == (1, 1)
    assert (rows["advocacy"].persons, rows["advocacy"].conversion_rate) == (0, None)

    # site_visit: 2 persons, 2 steps, 3 events; u1's step repeats -> repeat_rate 1/2.
    site = next(n for n in built.nodes if n.id == "site_visit")
    assert (site.persons, site.steps, site.events) == (2, 2, 3)
    assert approx(site.repeat_rate, 0.5)
    # START: one step per journey (u1 has 2), END: all 3 journeys ended.
    assert node_table(built) == [
        ("START", "start", "", 2, 3, 0, 1.0),
        ("site_visit", "touchpoint", "awareness", 2, 2, 3, 1.0),
        ("product_viewed", "touchpoint", "consideration", 2, 2, 2, 1.0),
        ("cart_added", "touchpoint", "purchase", 1, 1, 1, 0.5),
        ("purchase", "touchpoint", "purchase", 1, 1, 1, 0.5),
        ("app_opened", "touchpoint", "retention", 1, 1, 1, 0.5),
        ("END", "end", "", 2, 3, 0, 1.0),
    ]
    # START -> site_visit twice (u1 j1, u2), START -> app_opened once (u1 j2).
    edges = {(e.source, e.target): e for e in built.edges}
    assert approx(edges[("START", "site_visit")].p_next, 2 / 3)
    assert edges[("START", "site_visit")].goal_after_persons == 1  # u1 j1 reaches purchase
    assert edges[("START", "app_opened")].goal_after_persons == 0
    assert edges[("site_visit", "product_viewed")].median_seconds == 3600
    assert edges[("cart_added", "purchase")].goal_after_persons == 1  # goal at B itself
    assert edges[("purchase", "END")].goal_after_persons == 0  # END: never

    # Variants, 1 journey each: ties by joined text.
    assert [(p.steps, p.journeys, p.goal_journeys) for p in built.paths] == [
        (["app_opened"], 1, 0),
        (["site_visit", "product_viewed"], 1, 0),
        (["site_visit", "product_viewed", "cart_added", "purchase"], 1, 1),
    ]
    assert built.path_to_goal is not None
    assert built.path_to_goal.steps == ["site_visit", "product_viewed", "cart_added", "purchase"]
    assert approx(built.path_to_goal.coverage, 1 / 3)

    # Drivers: u1 converted (first goal d1 00:05), u2 not.
    #   cart_added: a=1 (u1, before the goal), b=0, c=0, d=1 (u2): OR = 2*2 / (1*1) = 4
    #   product_viewed, site_visit: a=1, b=1, c=0, d=0: OR = 2/2 = 1
    #   app_opened: u1's is after the goal -> not had: a=0, b=0: below min_support 1
    assert [(d.touchpoint, d.persons_with, d.odds_ratio) for d in built.drivers] == [
        ("cart_added", 1, 4.0),
        ("product_viewed", 2, 1.0),
        ("site_visit", 2, 1.0),
    ]
    spread = 1.96 * math.sqrt(1 / 2 + 1 / 1 + 1 / 1 + 1 / 2)
    assert approx(built.drivers[0].ci_low, math.exp(math.log(4) - spread))
    assert approx(built.drivers[0].ci_high, math.exp(math.log(4) + spread))

    # The persona filter keeps u1 (persona smb, set on anon1's identify that resolves to u1).
    smb = build(store, log, settings, T0 + 30 * DAY, MapFilters(persona="smb"))
    assert (smb.coverage.persons, smb.coverage.events, smb.coverage.journeys) == (1, 6, 2)


def test_in_progress_vs_ended_and_backward_moves(store: Store) -> None:
    """p1: ad_click d0 00:00, product_viewed 02:00, ad_click 06:00, product_viewed d1 00:00.
    p2: site_visit d0, pricing_viewed d3.   p3: product_viewed d10 00:00, site_visit 01:00.

    Gaps between steps (s): p1 7200, 14400, 64800; p2 259200; p3 3600. Sorted, n = 5,
    q(0.95) = sorted[floor(4.75)] = sorted[4] = 259200 (3 days), inside [1 day, 30 days]:
    end_after = 259200 s. as_of d10 12:00: p1 (last d1) and p2 (last d3) ended; p3 (last
    d10 01:00, 11 h ago) in progress.
    """
    log = [
        track("p1", "ad_click", 0 * HOUR),
        track("p1", "product_viewed", 2 * HOUR),
        track("p1", "ad_click", 6 * HOUR),
        track("p1", "product_viewed", DAY),
        track("p2", "site_visit", 0 * HOUR),
        track("p2", "pricing_viewed", 3 * DAY),
        track("p3", "product_viewed", 10 * DAY),
        track("p3", "site_visit", 10 * DAY + HOUR),
    ]
    settings = MapSettings(gap_days=30, end_after_days=None, goal="purchase")
    built = build(store, log, settings, as_of=T0 + 10 * DAY + 12 * HOUR)

    cov = built.coverage
    assert cov.end_after_seconds == 259200
    assert (cov.journeys, cov.ended_journeys, cov.in_progress_journeys) == (3, 2, 1)
    assert (cov.converted_persons, cov.goal_rate) == (0, 0)

    # awareness: p1, p2, p3. Converted to consideration: p1 (step 1 -> 2, 7200 s) and p2
    # (step 1 -> 2, 259200 s); p3's first awareness step is its last. Times [7200, 259200]:
    # median = sorted[floor(1.0)] = 259200, p90 = sorted[floor(1.8)] = 259200.
    # Drop-off counts ended journeys only: p3 ends in awareness but is in progress -> 0.
    aware, consider = built.stages[0], built.stages[1]
    assert (aware.persons, aware.converted_persons, aware.dropped_persons) == (3, 2, 0)
    assert approx(aware.conversion_rate, 2 / 3)
    assert (aware.median_seconds_to_next, aware.p90_seconds_to_next) == (259200, 259200)
    assert aware.dropoff_rate == 0
    # consideration: p1, p2, p3; nobody reaches purchase; p1 and p2 end there (ended).
    assert (consider.persons, consider.converted_persons, consider.dropped_persons) == (3, 0, 2)
    assert approx(consider.dropoff_rate, 2 / 3)
    assert consider.median_seconds_to_next is None

    # Backward: p1 product_viewed -> ad_click, p3 product_viewed -> site_visit.
    assert [(b.from_stage, b.to_stage, b.transitions, b.persons) for b in built.backward_moves] == [
        ("consideration", "awareness", 2, 2)
    ]

    ends = {
        (e.source, e.target): e.transitions
        for e in built.edges
        if e.target in ("END", "IN_PROGRESS")
    }
    assert ends == {
        ("product_viewed", "END"): 1,  # p1
        ("pricing_viewed", "END"): 1,  # p2
        ("site_visit", "IN_PROGRESS"): 1,  # p3: not a drop-off
    }
    # ad_click -> product_viewed: p1 twice, 7200 s and 64800 s: median = sorted[1] = 64800.
    loop = next(e for e in built.edges if (e.source, e.target) == ("ad_click", "product_viewed"))
    assert (loop.transitions, loop.persons, loop.median_seconds) == (2, 1, 64800)
    # product_viewed: p1 two steps (a loop), p3 one -> repeat_rate 1/2.
    product = next(n for n in built.nodes if n.id == "product_viewed")
    assert (product.persons, product.steps) == (2, 3)
    assert approx(product.repeat_rate, 0.5)
    assert [n.id for n in built.nodes][-2:] == ["END", "IN_PROGRESS"]
    assert built.path_to_goal is None


def test_top_n_other_bucket_with_a_self_loop(store: Store) -> None:
    """top_n = 1 per stage. q1: ad_click, email_opened, site_visit, purchase; q2: ad_click,
    email_opened, site_visit; q3: ad_click, newsletter_signup (flagged cross-cutting). One
    hour between steps, all ended.

    Awareness persons: ad_click 3, email_opened 2, site_visit 2, newsletter_signup 1. ad_click
    keeps its node; newsletter_signup keeps it (cross-cutting); email_opened and site_visit
    become other:awareness, so email_opened -> site_visit is a self-loop (q1, q2).
    No derived cross-cutting: 5 touchpoints seen, nobody is adjacent to 3 of the 4 others.
    """
    log = []
    for person, touchpoints in (
        ("q1", ["ad_click", "email_opened", "site_visit", "purchase"]),
        ("q2", ["ad_click", "email_opened", "site_visit"]),
        ("q3", ["ad_click", "newsletter_signup"]),
    ):
        log += [track(person, tp, i * HOUR) for i, tp in enumerate(touchpoints)]
    settings = MapSettings(
        gap_days=60,
        end_after_days=1,
        goal="purchase",
        top_n=1,
        cross_cutting=("newsletter_signup",),
    )
    built = build(store, log, settings, as_of=T0 + 5 * DAY)

    # Order: START, awareness by persons desc then id, purchase stage, END.
    assert node_table(built) == [
        ("START", "start", "", 3, 3, 0, 1.0),
        ("ad_click", "touchpoint", "awareness", 3, 3, 3, 1.0),
        ("other:awareness", "other", "awareness", 2, 4, 4, round(2 / 3, 6)),
        ("newsletter_signup", "touchpoint", "awareness", 1, 1, 1, round(1 / 3, 6)),
        ("purchase", "touchpoint", "purchase", 1, 1, 1, round(1 / 3, 6)),
        ("END", "end", "", 3, 3, 0, 1.0),
    ]
    other = built.nodes[2]
    assert other.repeat_rate == 1.0  # q1 and q2 each have two steps there
    assert [n.id for n in built.nodes if n.cross_cutting] == ["newsletter_signup"]

    # other:awareness leaves 4 times: itself 2, purchase 1, END 1.
    # Ties on transitions: by source, then target ("END" sorts before "purchase").
    assert edge_table(built) == [
        ("START", "ad_click", 3, 3, 1.0),
        ("ad_click", "other:awareness", 2, 2, round(2 / 3, 6)),
        ("other:awareness", "other:awareness", 2, 2, 0.5),
        ("ad_click", "newsletter_signup", 1, 1, round(1 / 3, 6)),
        ("newsletter_signup", "END", 1, 1, 1.0),
        ("other:awareness", "END", 1, 1, 0.25),
        ("other:awareness", "purchase", 1, 1, 0.25),
        ("purchase", "END", 1, 1, 1.0),
    ]
    # The self-loop: 3600 s each; q1 reaches the goal at step 4 >= B's position 3.
    loop = built.edges[2]
    assert (loop.median_seconds, loop.p90_seconds) == (3600, 3600)
    assert (loop.goal_after_persons, loop.goal_after_rate) == (1, 0.5)


def test_drivers_odds_ratio_and_path_to_goal(store: Store) -> None:
    """r1, r2: site_visit, pricing_viewed, purchase; r3: site_visit, purchase, pricing_viewed;
    r4: site_visit, pricing_viewed; r5: site_visit; r6: ad_click. Converted: r1, r2, r3.

    site_visit: had = r1, r2, r3 (before the goal), r4, r5: a=3, b=2, c=0, d=1;
      OR = (4 * 2) / (3 * 1) = 8/3; with 5 of 6, goal rate 3/5, without 0/1.
    pricing_viewed: r3's comes after its goal, so not had: a=2 (r1, r2), b=1 (r4),
      c=1 (r3), d=2 (r5, r6); OR = (3 * 3) / (2 * 2) = 9/4.
    ad_click: persons_with 1 < min_support 2: not listed.
    """
    log = []
    for person, touchpoints in (
        ("r1", ["site_visit", "pricing_viewed", "purchase"]),
        ("r2", ["site_visit", "pricing_viewed", "purchase"]),
        ("r3", ["site_visit", "purchase", "pricing_viewed"]),
        ("r4", ["site_visit", "pricing_viewed"]),
        ("r5", ["site_visit"]),
        ("r6", ["ad_click"]),
    ):
        log += [track(person, tp, i * HOUR) for i, tp in enumerate(touchpoints)]
    settings = MapSettings(end_after_days=1, goal="purchase", min_support=2, path_limit=3)
    built = build(store, log, settings, as_of=T0 + 5 * DAY)

    assert [(d.touchpoint, d.persons_with, d.persons_without) for d in built.drivers] == [
        ("site_visit", 5, 1),
        ("pricing_viewed", 3, 3),
    ]
    site, pricing = built.drivers
    assert approx(site.odds_ratio, 8 / 3)
    assert (site.goal_rate_with, site.goal_rate_without) == (0.6, 0.0)
    spread = 1.96 * math.sqrt(1 / 4 + 1 / 3 + 1 / 1 + 1 / 2)
    assert approx(site.ci_low, math.exp(math.log(8 / 3) - spread))
    assert approx(site.ci_high, math.exp(math.log(8 / 3) + spread))
    assert approx(pricing.odds_ratio, 9 / 4)
    assert approx(pricing.goal_rate_with, 2 / 3) and approx(pricing.goal_rate_without, 1 / 3)
    spread = 1.96 * math.sqrt(1 / 3 + 1 / 2 + 1 / 2 + 1 / 3)
    assert approx(pricing.ci_low, math.exp(math.log(9 / 4) - spread))
    assert not site.cross_cutting and not pricing.cross_cutting

    # Goal prefixes: r1, r2 [site_visit, pricing_viewed, purchase], r3 [site_visit, purchase].
    to_goal = built.path_to_goal
    assert to_goal is not None
    assert (to_goal.steps, to_goal.journeys, to_goal.goal_rate) == (
        ["site_visit", "pricing_viewed", "purchase"],
        2,
        1.0,
    )
    assert approx(to_goal.coverage, 2 / 6)
    # Top 3 variants: the one with 2 journeys, then ties by joined text ("ad_click" first,
    # "site_visit" before its own extensions).
    assert [(p.steps, p.journeys, p.goal_journeys) for p in built.paths] == [
        (["site_visit", "pricing_viewed", "purchase"], 2, 2),
        (["ad_click"], 1, 0),
        (["site_visit"], 1, 0),
    ]
    assert approx(built.coverage.goal_rate, 0.5)

    # The same goal as a stage: purchase is the only purchase-stage touchpoint, so the map is
    # the same; `purchase` itself is a candidate driver now, but nobody had it before their
    # first goal step (it is that step), so it has no support.
    by_stage = build(
        store,
        log,
        MapSettings(end_after_days=1, goal="stage:purchase", min_support=2, path_limit=3),
        as_of=T0 + 5 * DAY,
    )
    assert [d.touchpoint for d in by_stage.drivers] == ["site_visit", "pricing_viewed"]
    assert by_stage.path_to_goal == built.path_to_goal


def test_derived_cross_cutting_touchpoint_keeps_its_node(store: Store) -> None:
    """p1, p2: ad_click. p3: product_viewed, site_visit, pricing_viewed, site_visit,
    trial_started, site_visit, cart_added (one hour apart). top_n = 1, nothing flagged.

    Seen: 6 touchpoints. site_visit is adjacent to product_viewed, pricing_viewed,
    trial_started and cart_added: 4 of the 5 others >= 60% -> cross-cutting (derived). In
    awareness ad_click (2 persons) outranks site_visit (1), but a cross-cutting touchpoint
    always keeps its own node, and as a driver it is flagged cross-cutting.
    """
    log = [track("p1", "ad_click", 0 * HOUR), track("p2", "ad_click", 0 * HOUR)]
    log += [
        track("p3", tp, i * HOUR)
        for i, tp in enumerate(
            [
                "product_viewed",
                "site_visit",
                "pricing_viewed",
                "site_visit",
                "trial_started",
                "site_visit",
                "cart_added",
            ]
        )
    ]
    settings = MapSettings(
        top_n=1, cross_cutting=(), goal="purchase", min_support=1, end_after_days=1
    )
    clear(store)
    write_log(store, log)
    built = build_map(store, MapFilters(), settings, as_of=T0 + 5 * DAY)

    site = [n for n in built.nodes if n.id == "site_visit"]
    assert len(site) == 1 and site[0].cross_cutting and site[0].kind == "touchpoint"
    assert (site[0].persons, site[0].steps) == (1, 3)
    assert "other:awareness" not in {n.id for n in built.nodes}
    drivers = {d.touchpoint: d.cross_cutting for d in built.drivers}
    assert drivers["site_visit"] is True
    assert [tp for tp, flag in drivers.items() if flag] == ["site_visit"]
    # ... and the reference says the same.
    events, identities = read_rows(store)
    expected = reference_map(events, identities, MapFilters(), settings, T0 + 5 * DAY)
    assert differences(expected, plain(built)) == []


def test_working_table_on_disk_gives_the_same_map(store: Store, monkeypatch: Any) -> None:
    """Past `IN_MEMORY_MAX_EVENTS` the build's working table is a MergeTree on disk; the map
    must not change with where it lives."""
    from touchpoint_collector.journey import context

    log = [
        track("anon1", "site_visit", 0 * HOUR),
        track("anon1", "product_viewed", 1 * HOUR),
        identify("anon1", "u1", 2 * HOUR, persona="smb"),
        track("u1", "purchase", DAY),
        track("u1", "support_contact", 2 * DAY, properties={"score": 3}),
        track("u2", "site_visit", 0 * HOUR),
        track("u2", "site_visit", 2 * HOUR),
    ]
    settings = MapSettings(gap_days=7, end_after_days=1, min_support=1)
    in_memory = build(store, log, settings, as_of=T0 + 30 * DAY)
    engines: list[str] = []
    original = context.BuildContext.engine

    def spy(self: context.BuildContext) -> str:
        engines.append(original(self))
        return engines[-1]

    monkeypatch.setattr(context, "IN_MEMORY_MAX_EVENTS", 0)
    monkeypatch.setattr(context.BuildContext, "engine", spy)
    on_disk = build_map(store, MapFilters(), settings, as_of=T0 + 30 * DAY)
    assert engines and engines[0].startswith("MergeTree")
    ignore = {"built_at", "build_seconds"}
    assert {k: v for k, v in plain(on_disk).items() if k not in ignore} == {
        k: v for k, v in plain(in_memory).items() if k not in ignore
    }


def test_a_crashed_builds_working_table_is_swept(store: Store) -> None:
    """A build killed mid-way leaves its working table behind; the next build's sweep
    drops it once it is old enough, and leaves other tables alone."""
    from touchpoint_collector.journey.context import sweep_stale

    store.command("CREATE TABLE `_map_0123456789ab_persons` (x UInt8) ENGINE = Memory")
    store.command("CREATE TABLE `_map_notes` (x UInt8) ENGINE = Memory")
    assert sweep_stale(store) == []  # young: may be another process's live build
    assert sweep_stale(store, older_than_seconds=-60) == ["_map_0123456789ab_persons"]
    names = {
        row[0]
        for row in store.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
    }
    assert "_map_0123456789ab_persons" not in names
    assert "_map_notes" in names


def test_feedback_scores_feelings_and_low_score_pain_points(store: Store) -> None:
    """Scores sit among unscored events; each is about the step before it (its own when
    first).

    u1: site_visit, product_viewed, purchase, feedback_given (score 3), support_contact.
      The 3 is about purchase (purchase stage). The support contact's previous step is
      feedback_given (retention), so retention has one negative person.
    u2: site_visit, feedback_given (score 9): the 9 is about site_visit (awareness).
    u3: feedback_given (score 2), the first step: about itself (retention).

    Grid mean scores: awareness 9, consideration none, purchase 3, retention 2, advocacy
    none. Retention persons: u1, u2, u3 (feedback_given), so the negative rate is 1/3.
    Low scores (<= 4): u1 about purchase, u3 about feedback_given; 2 of 3 scoring persons
    -> baseline 2/3. Each is the only score about its touchpoint: rate 1.
    """
    minute = timedelta(minutes=1)
    log = [
        track("u1", "site_visit", 0 * HOUR),
        track("u1", "product_viewed", 1 * HOUR),
        track("u1", "purchase", 2 * HOUR),
        track("u1", "feedback_given", 3 * HOUR, properties={"score": 3}),
        track("u1", "support_contact", 4 * HOUR),
        track("u2", "site_visit", 0 * HOUR),
        track("u2", "feedback_given", 30 * minute, properties={"score": 9}),
        track("u3", "feedback_given", 0 * HOUR, properties={"score": 2}),
    ]
    settings = MapSettings(gap_days=60, end_after_days=1, min_support=1, low_score_max=4)
    built = build(store, log, settings, as_of=T0 + 30 * DAY)

    grid = {column.stage: column for column in built.grid}
    assert {stage: column.mean_score for stage, column in grid.items()} == {
        "awareness": 9.0,
        "consideration": None,
        "purchase": 3.0,
        "retention": 2.0,
        "advocacy": None,
    }
    assert approx(grid["retention"].negative_signal_rate, 1 / 3)
    assert grid["awareness"].negative_signal_rate == 0.0
    assert approx(grid["purchase"].sentiment, (3.0 - 5.5) / 4.5)

    low = {p.touchpoint: p for p in built.pain_points if p.kind == "low_score"}
    assert set(low) == {"purchase", "feedback_given"}
    assert (low["purchase"].persons, low["purchase"].examples) == (1, ["u1"])
    assert (low["feedback_given"].persons, low["feedback_given"].examples) == (1, ["u3"])
    assert all(p.rate == 1.0 and approx(p.baseline, 2 / 3) for p in low.values())


def test_a_shared_device_stays_with_the_first_user_it_was_linked_to(store: Store) -> None:
    """anon3 (a shared device) is linked to u1 on day 0, to u2 on day 1, and to u1 again on
    day 2. Every sighting is a row (migration 0007), so u1's day-0 link is the earliest
    and anon3 resolves to u1: persons u1 (anon3's visit) and u2 (their own visit). Before,
    a link kept only its latest sighting (u1's day 2), and anon3 went to u2: one person.
    Merges must not change that: the map is built again after OPTIMIZE ... FINAL."""

    def link(anonymous_id: str, user_id: str, when: timedelta) -> LogEvent:
        return identify(anonymous_id, user_id, when, persona="smb")

    log = [
        link("anon3", "u1", 0 * DAY),
        link("anon3", "u2", 1 * DAY),
        link("anon3", "u1", 2 * DAY),
        link("anon3", "u1", 2 * DAY),  # a resend: the same sighting, one row
        track("anon3", "site_visit", 3 * DAY),
        track("u2", "product_viewed", 3 * DAY),
    ]
    settings = MapSettings(gap_days=7, end_after_days=1, min_support=1)
    built = build(store, log, settings, as_of=T0 + 30 * DAY)
    assert (built.coverage.persons, built.coverage.stitched_journeys) == (2, 1)
    assert sorted(tuple(p.steps) for p in built.paths) == [("product_viewed",), ("site_visit",)]
    store.command("OPTIMIZE TABLE identities FINAL")
    rows = store.query(
        "SELECT user_id, count() FROM identities FINAL GROUP BY user_id ORDER BY user_id"
    ).result_rows
    assert [tuple(r) for r in rows] == [("u1", 2), ("u2", 1)]
    again = build_map(store, MapFilters(), settings, as_of=T0 + 30 * DAY)
    assert (again.coverage.persons, again.coverage.stitched_journeys) == (2, 1)


def test_property_filters_match_numbers_by_value_and_never_a_missing_key(store: Store) -> None:
    """Six persons, one event each, with the property n as 2, 2.0, 1e20, "2", true, and
    none. Senders write numbers differently (JavaScript has no integers): n = 2 matches
    2 and 2.0 (and the string "2"), n = 1e20 matches 1e20 written either way, true
    matches true, and no value, not even an empty one, matches the event without n."""
    stored = [2, 2.0, 1e20, "2", True, None]
    log = [
        track(f"u{i}", "site_visit", HOUR, **({} if n is None else {"properties": {"n": n}}))
        for i, n in enumerate(stored)
    ]
    settings = MapSettings(gap_days=7, end_after_days=1, min_support=1)
    expected = {
        "2": 3,  # 2, 2.0 and "2"
        "2.0": 2,  # the numbers 2 and 2.0
        "1e20": 1,
        "100000000000000000000": 1,
        "true": 1,
        "": 0,
        "02": 0,  # not a JSON number: compared as text, and no string is "02"
        "-0": 0,  # a JSON number, of another value than every one stored
    }
    for value, persons in expected.items():
        filters = MapFilters(properties=(("n", value),))
        built = build(store, log, settings, as_of=T0 + 30 * DAY, filters=filters)
        assert built.coverage.persons == persons, value


def test_a_step_with_no_stage_takes_no_part_in_the_funnel(store: Store) -> None:
    """Rows written by a log replay or by hand may have no stage. u1: product_viewed
    (consideration), then a site_visit whose stage is blanked, then pricing_viewed
    (consideration): consideration is reached by one person, awareness by none, and the
    blank step is no backward move. (The funnel's stage bits once shifted by -1 for it,
    which ClickHouse refuses: the whole build failed.)"""
    log = [
        track("u1", "product_viewed", 0 * DAY),
        track("u1", "site_visit", 1 * DAY),
        track("u1", "pricing_viewed", 2 * DAY),
    ]
    clear(store)
    write_log(store, log)
    store.command(
        "ALTER TABLE events UPDATE stage = '' WHERE touchpoint = 'site_visit'",
        settings={"mutations_sync": 2},
    )
    settings = MapSettings(gap_days=7, end_after_days=1, min_support=1)
    as_of = T0 + 30 * DAY
    built = build_map(store, MapFilters(), settings, as_of=as_of)
    events, identities = read_rows(store)
    assert (
        differences(reference_map(events, identities, MapFilters(), settings, as_of), plain(built))
        == []
    )
    reached = {row.stage: row.persons for row in built.stages}
    assert reached["consideration"] == 1 and reached["awareness"] == 0
    assert built.backward_moves == []
