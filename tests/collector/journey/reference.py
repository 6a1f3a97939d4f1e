"""A pure-Python reference implementation of the journey map (``docs/journey-map.md``).

Written from the spec alone, independently of the ClickHouse queries, and kept simple:
every figure is computed the most direct way the spec's wording suggests, over plain rows
read back from the store. Speed does not matter here; readability does.

Readings of the spec where it leaves room (each is listed in the test report as well):

* ``link(x)`` takes the smallest ``first_seen`` over the ``identities`` rows of ``x``
  deduplicated with FINAL, as the spec says: every sighting of a link is a row, and only
  resends of one call (same time) collapse. (Before migration 0007 a re-sighted link kept
  only its latest sighting; the property tests found a log where reading the rows as
  stored then disagreed.)
* Persona "as text": a string trait as itself, any other JSON value as its compact JSON.
* A ``properties`` filter pair matches only events whose properties have the key; a
  number matches a value written as a JSON number of the same value (2 and 2.0).
* Nodes are listed only when they have steps (an empty map has no START node either).
* ``repeat_rate`` applies to START / END / IN_PROGRESS as to any node (persons with two or
  more of their steps there, i.e. two or more journeys).
* top_n ranks every touchpoint of a node stage; the goal and cross-cutting touchpoints keep
  their node in addition, whatever their rank.
* "cross-cutting" is one notion everywhere (nodes, buckets, drivers): flagged in
  ``settings.cross_cutting``, or adjacent to at least 60% of the other touchpoints seen when
  at least 5 touchpoints are seen ("at least 5 of them" could also mean 5 *other* ones).
* Drivers: for a ``stage:S`` goal every touchpoint is a candidate; "before their first
  goal step" is strictly earlier in (ts, journey, step) order.
* Backward moves: the spec names no order; compared as a set (sorted by stage order).
* The stage funnel's last stage (no next stage) has ``converted_persons = 0`` and null
  ``conversion_rate`` and time-to-next: there is nothing to convert to.
* Path to goal prefixes are not truncated by ``max_path_steps``.
* ``goal_rate`` is 0 when there are no persons.
* Pain points: the drop-off baseline leaves the goal touchpoint out of its stage's sums (as
  the touchpoint itself is left out); a step's score is its run's first event's score; the
  grid's texts (pain point details, opportunities) are presentation, not compared.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import msgspec

from touchpoint_collector.journey.model import MapFilters, MapSettings
from touchpoint_schemas.taxonomy import STAGES

STAGE_NAMES: list[str] = [stage.value for stage in STAGES]
STAGE_ORDER: dict[str, int] = {name: i for i, name in enumerate(STAGE_NAMES)}
ELLIPSIS = "…"
START, END, IN_PROGRESS = "START", "END", "IN_PROGRESS"

EVENTS_QUERY = (
    "SELECT person_id, message_id, touchpoint, stage, channel, timestamp, ingest_seq, "
    "source, properties, type, traits, score FROM events FINAL"
)
IDENTITIES_QUERY = "SELECT anonymous_id, user_id, first_seen FROM identities FINAL"
"""The identities rows as the spec reads them: deduplicated (resends collapse)."""


@dataclass(frozen=True)
class EventRow:
    person_id: str
    message_id: str
    touchpoint: str
    stage: str
    channel: str
    timestamp: datetime
    ingest_seq: int
    source: str
    properties: str
    type: str
    traits: str
    score: float | None = None


@dataclass(frozen=True)
class IdentityRow:
    anonymous_id: str
    user_id: str
    first_seen: datetime


@dataclass(frozen=True)
class Step:
    person: str
    journey: int
    number: int
    touchpoint: str
    stage: str
    channel: str
    ts: datetime
    repeats: int
    last_ts: datetime | None = None
    """The timestamp of the run's last event."""
    score: float | None = None
    """The run's first event's score."""


@dataclass
class Journey:
    person: str
    number: int
    events: list[EventRow]
    stitched: bool
    steps: list[Step] = field(default_factory=list)
    ended: bool = False

    @property
    def last_ts(self) -> datetime:
        return self.events[-1].timestamp


# --- small helpers -----------------------------------------------------------------------


def quantile(values: Sequence[float], level: float) -> float:
    """ClickHouse's quantileExact: ``sorted(x)[min(n - 1, floor(level * n))]``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(level * len(ordered)))]


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def ratio_or_zero(numerator: int, denominator: int) -> float:
    return 0.0 if denominator == 0 else numerator / denominator


def json_text(value: Any) -> str:
    """A JSON value as text: strings as themselves, anything else as its compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
JSON_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def property_matches(stored: Any, wanted: str) -> bool:
    """A property filter's value against the stored value: strings as themselves; numbers
    by value when `wanted` is written as a JSON number (integers exactly, others as
    floats); anything else as its compact JSON."""
    if isinstance(stored, str):
        return stored == wanted
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        if not JSON_NUMBER.fullmatch(wanted):
            return False
        if isinstance(stored, int) and JSON_INTEGER.fullmatch(wanted):
            return stored == int(wanted)
        return float(stored) == float(wanted)
    return json_text(stored) == wanted


# --- identity stitching --------------------------------------------------------------------


def links(identities: Iterable[IdentityRow]) -> dict[str, str]:
    """``link(x)``: the user id of x's row with the smallest first_seen (ties: user id)."""
    best: dict[str, tuple[datetime, str]] = {}
    for row in identities:
        candidate = (row.first_seen, row.user_id)
        if row.anonymous_id not in best or candidate < best[row.anonymous_id]:
            best[row.anonymous_id] = candidate
    return {anonymous_id: user_id for anonymous_id, (_, user_id) in best.items()}


def resolver(identities: Iterable[IdentityRow]) -> dict[str, str]:
    """``resolve`` as a lookup table (ids not in it resolve to themselves)."""
    link = links(identities)
    return {x: link.get(link[x], link[x]) for x in link}


# --- the whole map -------------------------------------------------------------------------


@dataclass
class Journeys:
    """The filtered events and the journeys they make, with the ended / in-progress split."""

    events: list[EventRow]
    journeys: list[Journey]
    as_of: datetime
    end_after_seconds: float

    @property
    def steps(self) -> list[Step]:
        return [step for journey in self.journeys for step in journey.steps]


def journeys_of(
    events: Iterable[EventRow],
    identities: Iterable[IdentityRow],
    filters: MapFilters,
    settings: MapSettings,
    as_of: datetime,
) -> Journeys:
    all_events = list(events)
    table = resolver(identities)

    def resolve(x: str) -> str:
        return table.get(x, x)

    as_of = filters.until if filters.until is not None else as_of

    # Input events.
    chosen = [event for event in all_events if keep_event(event, filters)]
    if filters.persona is not None:
        persona_of = personas(all_events, resolve)
        chosen = [e for e in chosen if persona_of.get(resolve(e.person_id)) == filters.persona]

    # Journeys and steps.
    by_person: dict[str, list[EventRow]] = defaultdict(list)
    for event in chosen:
        by_person[resolve(event.person_id)].append(event)
    journeys: list[Journey] = []
    for person in sorted(by_person):
        ordered = sorted(by_person[person], key=lambda e: (e.timestamp, e.ingest_seq, e.message_id))
        journeys.extend(split_journeys(person, ordered, settings.gap_days, resolve))

    # Ended vs in progress.
    if settings.end_after_days is not None:
        end_after_seconds = settings.end_after_days * 86400.0
    else:
        gaps = [
            seconds(b.ts - a.ts)
            for journey in journeys
            for a, b in itertools.pairwise(journey.steps)
        ]
        # Rounded up to whole days, clamped to [1 day, gap_days]; when gap_days is under
        # a day, it caps both.
        q95_days = math.ceil(quantile(gaps, 0.95) / 86400.0) if gaps else 1
        lowest = max(86400.0, q95_days * 86400.0)
        end_after_seconds = min(lowest, settings.gap_days * 86400.0)
    for journey in journeys:
        journey.ended = seconds(as_of - journey.last_ts) > end_after_seconds
    return Journeys(chosen, journeys, as_of, end_after_seconds)


def reference_map(
    events: Iterable[EventRow],
    identities: Iterable[IdentityRow],
    filters: MapFilters,
    settings: MapSettings,
    as_of: datetime,
) -> dict[str, Any]:
    built = journeys_of(events, identities, filters, settings, as_of)
    chosen, journeys, steps = built.events, built.journeys, built.steps
    as_of, end_after_seconds = built.as_of, built.end_after_seconds

    goal = settings.goal

    def is_goal(step: Step) -> bool:
        if goal.startswith("stage:"):
            return step.stage == goal.removeprefix("stage:")
        return step.touchpoint == goal

    persons = sorted({journey.person for journey in journeys})
    converted = {j.person for j in journeys if any(is_goal(s) for s in j.steps)}
    stitched = sum(1 for journey in journeys if journey.stitched)
    ended = sum(1 for journey in journeys if journey.ended)
    coverage = {
        "events": len(chosen),
        "persons": len(persons),
        "journeys": len(journeys),
        "stitched_journeys": stitched,
        "stitched_share": ratio_or_zero(stitched, len(journeys)),
        "ended_journeys": ended,
        "in_progress_journeys": len(journeys) - ended,
        "converted_persons": len(converted),
        "goal_rate": ratio_or_zero(len(converted), len(persons)),
        "as_of": as_of,
        "end_after_seconds": end_after_seconds,
        "first_event": min((e.timestamp for e in chosen), default=None),
        "last_event": max((e.timestamp for e in chosen), default=None),
    }

    cross_cutting = cross_cutting_touchpoints(journeys, settings)
    stages = stage_rows(journeys)
    node_stage = {tp: stage for tp, (_, stage) in buckets(steps, settings, cross_cutting).items()}
    return {
        "coverage": coverage,
        "stages": stages,
        "backward_moves": backward_moves(journeys),
        **flow(journeys, steps, len(persons), settings, cross_cutting, is_goal),
        **paths(journeys, settings, is_goal),
        "drivers": drivers(journeys, persons, settings, cross_cutting, is_goal),
        "pain_points": pain_points(journeys, persons, converted, settings, node_stage, is_goal),
        "grid": grid(journeys, stages, len(persons), settings, node_stage),
    }


def personas(events: Iterable[EventRow], resolve: Callable[[str], str]) -> dict[str, str]:
    """Persona per person: the latest identify (timestamp, ingest_seq) with a non-empty
    ``persona`` trait among the identify events that resolve to the person."""
    latest: dict[str, tuple[datetime, int, str]] = {}
    for event in events:
        if event.type != "identify":
            continue
        traits = json.loads(event.traits) if event.traits else {}
        persona = traits.get("persona") if isinstance(traits, dict) else None
        if persona is None or json_text(persona) == "":
            continue
        person = resolve(event.person_id)
        key = (event.timestamp, event.ingest_seq, json_text(persona))
        if person not in latest or key[:2] > latest[person][:2]:
            latest[person] = key
    return {person: key[2] for person, key in latest.items()}


def keep_event(event: EventRow, filters: MapFilters) -> bool:
    """Input rule 1 (without the persona filter, which needs persons)."""
    if event.touchpoint == "":
        return False
    if filters.since is not None and event.timestamp < filters.since:
        return False
    if filters.until is not None and event.timestamp >= filters.until:
        return False
    if filters.sources and event.source not in filters.sources:
        return False
    if filters.channels and event.channel not in filters.channels:
        return False
    if filters.properties:
        properties = json.loads(event.properties) if event.properties else {}
        for key, value in filters.properties:
            if key not in properties or not property_matches(properties[key], value):
                return False
    return True


def split_journeys(
    person: str, ordered: list[EventRow], gap_days: float, resolve: Callable[[str], str]
) -> list[Journey]:
    """Journeys (split on gaps > gap_days) and their steps (runs of one touchpoint)."""
    groups: list[list[EventRow]] = []
    for event in ordered:
        if not groups or event.timestamp - groups[-1][-1].timestamp > timedelta(days=gap_days):
            groups.append([])
        groups[-1].append(event)
    journeys = []
    for number, events in enumerate(groups, start=1):
        journey = Journey(
            person=person,
            number=number,
            events=events,
            stitched=any(resolve(e.person_id) != e.person_id for e in events),
        )
        runs: list[list[EventRow]] = []
        for event in events:
            if runs and runs[-1][-1].touchpoint == event.touchpoint:
                runs[-1].append(event)
            else:
                runs.append([event])
        for step_number, run in enumerate(runs, start=1):
            first = run[0]
            journey.steps.append(
                Step(
                    person=person,
                    journey=number,
                    number=step_number,
                    touchpoint=first.touchpoint,
                    stage=first.stage,
                    channel=first.channel,
                    ts=first.timestamp,
                    repeats=len(run),
                    last_ts=run[-1].timestamp,
                    score=first.score,
                )
            )
        journeys.append(journey)
    return journeys


# --- stage funnel and backward moves -------------------------------------------------------


def stage_rows(journeys: list[Journey]) -> list[dict[str, Any]]:
    rows = []
    for index, stage in enumerate(STAGE_NAMES):
        next_stage = STAGE_NAMES[index + 1] if index + 1 < len(STAGE_NAMES) else None
        persons = {s.person for j in journeys for s in j.steps if s.stage == stage}
        converted: set[str] = set()
        times: list[float] = []
        for journey in journeys:
            first = next((s for s in journey.steps if s.stage == stage), None)
            if first is None or next_stage is None:
                continue
            after = next(
                (s for s in journey.steps if s.stage == next_stage and s.number > first.number),
                None,
            )
            if after is not None:
                converted.add(journey.person)
                times.append(seconds(after.ts - first.ts))
        dropped = {j.person for j in journeys if j.ended and j.steps and j.steps[-1].stage == stage}
        rows.append(
            {
                "stage": stage,
                "persons": len(persons),
                "next_stage": next_stage,
                "converted_persons": len(converted),
                "conversion_rate": None
                if next_stage is None
                else ratio(len(converted), len(persons)),
                "median_seconds_to_next": quantile(times, 0.5) if times else None,
                "p90_seconds_to_next": quantile(times, 0.9) if times else None,
                "dropped_persons": len(dropped),
                "dropoff_rate": ratio(len(dropped), len(persons)),
            }
        )
    return rows


def backward_moves(journeys: list[Journey]) -> list[dict[str, Any]]:
    """Sorted by (from stage, to stage) in stage order (the spec names no order)."""
    transitions: Counter[tuple[str, str]] = Counter()
    persons: dict[tuple[str, str], set[str]] = defaultdict(set)
    for journey in journeys:
        for a, b in itertools.pairwise(journey.steps):
            if a.stage == "" or b.stage == "":
                continue
            if STAGE_ORDER[b.stage] < STAGE_ORDER[a.stage]:
                transitions[(a.stage, b.stage)] += 1
                persons[(a.stage, b.stage)].add(journey.person)
    return [
        {
            "from_stage": pair[0],
            "to_stage": pair[1],
            "transitions": transitions[pair],
            "persons": len(persons[pair]),
        }
        for pair in sorted(transitions, key=lambda p: (STAGE_ORDER[p[0]], STAGE_ORDER[p[1]]))
    ]


# --- touchpoint flow -----------------------------------------------------------------------


def adjacency(journeys: list[Journey]) -> dict[str, set[str]]:
    """Touchpoints next to each touchpoint, either direction, in the unbucketed flow."""
    near: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        for a, b in itertools.pairwise(journey.steps):
            if a.touchpoint != b.touchpoint:
                near[a.touchpoint].add(b.touchpoint)
                near[b.touchpoint].add(a.touchpoint)
    return near


def cross_cutting_touchpoints(journeys: list[Journey], settings: MapSettings) -> set[str]:
    seen = {s.touchpoint for j in journeys for s in j.steps}
    near = adjacency(journeys)
    others = len(seen) - 1
    enough = len(seen) >= 5  # "at least 5 of them": read as 5 touchpoints seen
    derived = {t for t in seen if enough and 5 * len(near[t]) >= 3 * others}
    return set(settings.cross_cutting) | derived


def node_stages(steps: list[Step]) -> dict[str, str]:
    """Each touchpoint's node stage: the stage of most of its steps (ties: earliest)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for step in steps:
        counts[step.touchpoint][step.stage] += 1
    return {
        tp: min(c, key=lambda stage: (-c[stage], STAGE_ORDER.get(stage, len(STAGE_ORDER))))
        for tp, c in counts.items()
    }


def buckets(
    steps: list[Step], settings: MapSettings, cross_cutting: set[str]
) -> dict[str, tuple[str, str]]:
    """touchpoint -> (node id, node stage)."""
    stage_of = node_stages(steps)
    persons: dict[str, set[str]] = defaultdict(set)
    for step in steps:
        persons[step.touchpoint].add(step.person)
    result: dict[str, tuple[str, str]] = {}
    for stage in sorted(set(stage_of.values())):
        members = sorted(
            (tp for tp in stage_of if stage_of[tp] == stage),
            key=lambda tp: (-len(persons[tp]), tp),
        )
        for rank, tp in enumerate(members):
            own = rank < settings.top_n or tp == settings.goal or tp in cross_cutting
            result[tp] = (tp, stage) if own else (f"other:{stage}", stage)
    return result


def flow(
    journeys: list[Journey],
    steps: list[Step],
    total_persons: int,
    settings: MapSettings,
    cross_cutting: set[str],
    is_goal: Callable[[Step], bool],
) -> dict[str, Any]:
    bucket = buckets(steps, settings, cross_cutting)

    # Every node occurrence: (node, person, repeats, events-or-0); every walk pair.
    @dataclass
    class NodeStats:
        kind: str
        stage: str
        persons: set[str] = field(default_factory=set)
        steps: int = 0
        events: int = 0
        steps_per_person: Counter[str] = field(default_factory=Counter)
        repeated: set[str] = field(default_factory=set)

    nodes: dict[str, NodeStats] = {}

    def visit(node: str, kind: str, stage: str, person: str, repeats: int) -> None:
        stats = nodes.setdefault(node, NodeStats(kind=kind, stage=stage))
        stats.persons.add(person)
        stats.steps += 1
        stats.events += repeats
        stats.steps_per_person[person] += 1
        if repeats > 1:
            stats.repeated.add(person)

    @dataclass
    class EdgeStats:
        transitions: int = 0
        persons: set[str] = field(default_factory=set)
        durations: list[float] = field(default_factory=list)
        goal_after: set[str] = field(default_factory=set)

    edges: dict[tuple[str, str], EdgeStats] = defaultdict(EdgeStats)

    for journey in journeys:
        person = journey.person
        visit(START, "start", "", person, 0)
        for step in journey.steps:
            node, stage = bucket[step.touchpoint]
            kind = "other" if node.startswith("other:") else "touchpoint"
            visit(node, kind, stage, person, step.repeats)
        last = END if journey.ended else IN_PROGRESS
        visit(last, "end" if journey.ended else "in_progress", "", person, 0)

        # The walk: position 0 = START, 1..n = steps, n + 1 = END / IN_PROGRESS.
        walk: list[tuple[str, Step | None]] = [(START, None)]
        walk += [(bucket[s.touchpoint][0], s) for s in journey.steps]
        walk.append((last, None))
        goal_numbers = [s.number for s in journey.steps if is_goal(s)]
        for (a, step_a), (b, step_b) in itertools.pairwise(walk):
            stats = edges[(a, b)]
            stats.transitions += 1
            stats.persons.add(person)
            if step_a is not None and step_b is not None:
                stats.durations.append(seconds(step_b.ts - step_a.ts))
            if step_b is not None and any(n >= step_b.number for n in goal_numbers):
                stats.goal_after.add(person)

    def node_order(node: str, stats: NodeStats) -> tuple[int, int, int, str]:
        """START, then by node stage, persons descending, id; then END, IN_PROGRESS."""
        terminal = {START: 0, END: 2, IN_PROGRESS: 3}
        if node in terminal:
            return (terminal[node], 0, 0, node)
        return (1, STAGE_ORDER.get(stats.stage, len(STAGE_ORDER)), -len(stats.persons), node)

    leaving: Counter[str] = Counter()
    for (a, _), stats in edges.items():
        leaving[a] += stats.transitions

    node_rows = [
        {
            "id": node,
            "kind": stats.kind,
            "stage": stats.stage,
            "persons": len(stats.persons),
            "steps": stats.steps,
            "events": stats.events,
            "reach": len(stats.persons) / total_persons,
            "repeat_rate": len(
                stats.repeated | {p for p, n in stats.steps_per_person.items() if n >= 2}
            )
            / len(stats.persons),
            "cross_cutting": stats.kind == "touchpoint" and node in cross_cutting,
        }
        for node, stats in sorted(nodes.items(), key=lambda item: node_order(*item))
    ]
    edge_rows = [
        {
            "source": a,
            "target": b,
            "transitions": stats.transitions,
            "persons": len(stats.persons),
            "p_next": stats.transitions / leaving[a],
            "median_seconds": quantile(stats.durations, 0.5) if stats.durations else None,
            "p90_seconds": quantile(stats.durations, 0.9) if stats.durations else None,
            "goal_after_persons": len(stats.goal_after),
            "goal_after_rate": len(stats.goal_after) / len(stats.persons),
        }
        for (a, b), stats in sorted(edges.items(), key=lambda i: (-i[1].transitions, i[0]))
    ]
    return {"nodes": node_rows, "edges": edge_rows}


# --- paths ---------------------------------------------------------------------------------


def paths(
    journeys: list[Journey], settings: MapSettings, is_goal: Callable[[Step], bool]
) -> dict[str, Any]:
    def variant(journey: Journey) -> tuple[str, ...]:
        names = tuple(s.touchpoint for s in journey.steps)
        if len(names) > settings.max_path_steps:
            return (*names[: settings.max_path_steps], ELLIPSIS)
        return names

    def ranked(counts: Counter[tuple[str, ...]]) -> list[tuple[str, ...]]:
        return sorted(counts, key=lambda v: (-counts[v], " > ".join(v)))

    total = len(journeys)
    journeys_of: Counter[tuple[str, ...]] = Counter()
    goals_of: Counter[tuple[str, ...]] = Counter()
    prefixes: Counter[tuple[str, ...]] = Counter()
    for journey in journeys:
        v = variant(journey)
        journeys_of[v] += 1
        first_goal = next((i for i, s in enumerate(journey.steps) if is_goal(s)), None)
        if first_goal is not None:
            goals_of[v] += 1
            prefixes[tuple(s.touchpoint for s in journey.steps[: first_goal + 1])] += 1
    rows = [
        {
            "steps": list(v),
            "journeys": journeys_of[v],
            "coverage": journeys_of[v] / total,
            "goal_journeys": goals_of[v],
            "goal_rate": goals_of[v] / journeys_of[v],
        }
        for v in ranked(journeys_of)[: settings.path_limit]
    ]
    to_goal = None
    if prefixes:
        best = ranked(prefixes)[0]
        to_goal = {
            "steps": list(best),
            "journeys": prefixes[best],
            "coverage": prefixes[best] / total,
            "goal_journeys": prefixes[best],
            "goal_rate": 1.0,
        }
    return {"paths": rows, "path_to_goal": to_goal}


# --- drivers -------------------------------------------------------------------------------


def drivers(
    journeys: list[Journey],
    persons: list[str],
    settings: MapSettings,
    cross_cutting: set[str],
    is_goal: Callable[[Step], bool],
) -> list[dict[str, Any]]:
    def order(step: Step) -> tuple[datetime, int, int]:
        return (step.ts, step.journey, step.number)

    steps_of: dict[str, list[Step]] = defaultdict(list)
    for journey in journeys:
        steps_of[journey.person].extend(journey.steps)
    first_goal: dict[str, tuple[datetime, int, int]] = {}
    for person, person_steps in steps_of.items():
        goal_steps = [order(s) for s in person_steps if is_goal(s)]
        if goal_steps:
            first_goal[person] = min(goal_steps)

    touchpoints = sorted({s.touchpoint for j in journeys for s in j.steps})
    rows: list[tuple[Fraction, str, dict[str, Any]]] = []
    for tp in touchpoints:
        if tp == settings.goal:
            continue
        a = b = c = d = 0
        for person in persons:
            is_converted = person in first_goal
            had = any(
                s.touchpoint == tp and (not is_converted or order(s) < first_goal[person])
                for s in steps_of[person]
            )
            if had and is_converted:
                a += 1
            elif had:
                b += 1
            elif is_converted:
                c += 1
            else:
                d += 1
        if a + b < settings.min_support:
            continue
        odds = Fraction((a + 1) * (d + 1), (b + 1) * (c + 1))
        spread = 1.96 * math.sqrt(1 / (a + 1) + 1 / (b + 1) + 1 / (c + 1) + 1 / (d + 1))
        log_odds = math.log(float(odds))
        row = {
            "touchpoint": tp,
            "persons_with": a + b,
            "persons_without": c + d,
            "goal_rate_with": ratio(a, a + b),
            "goal_rate_without": ratio(c, c + d),
            "odds_ratio": float(odds),
            "ci_low": math.exp(log_odds - spread),
            "ci_high": math.exp(log_odds + spread),
            "cross_cutting": tp in cross_cutting,
        }
        rows.append((-odds, tp, row))  # odds ratio descending (exactly), then name
    return [row for _, _, row in sorted(rows, key=lambda r: r[:2])]


# --- pain points ------------------------------------------------------------------------

PAIN_KINDS = ("dropoff", "slow_step", "loop", "post_goal_issue", "low_score")


def pain_points(
    journeys: list[Journey],
    persons: list[str],
    converted: set[str],
    settings: MapSettings,
    node_stage: dict[str, str],
    is_goal: Callable[[Step], bool],
) -> list[dict[str, Any]]:
    """In :func:`pain_order` (``differences`` compares them in that order on both sides; the
    SQL's own list is checked against the spec's order separately)."""
    support = settings.min_support
    found: list[dict[str, Any]] = []

    def add(kind: str, tp: str, affected: set[str], rate: float, baseline: float) -> None:
        found.append(
            {
                "kind": kind,
                "touchpoint": tp,
                "stage": node_stage.get(tp, ""),
                "persons": len(affected),
                "rate": rate,
                "baseline": baseline,
                "examples": sorted(affected)[:5],
            }
        )

    population: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        for step in journey.steps:
            population[step.touchpoint].add(journey.person)

    # drop-off
    goal_tp = "" if settings.goal.startswith("stage:") else settings.goal
    dropped: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        if journey.ended and not any(is_goal(s) for s in journey.steps):
            dropped[journey.steps[-1].touchpoint].add(journey.person)
    candidates = [tp for tp in population if tp != goal_tp]
    for tp in candidates:
        same = [t for t in candidates if node_stage.get(t, "") == node_stage.get(tp, "")]
        baseline = ratio_or_zero(
            sum(len(dropped[t]) for t in same), sum(len(population[t]) for t in same)
        )
        rate = len(dropped[tp]) / len(population[tp])
        if len(population[tp]) >= support and rate >= 0.2 and rate >= 1.5 * baseline:
            add("dropoff", tp, dropped[tp], rate, baseline)

    # slow steps
    pair_persons: dict[tuple[str, str], set[str]] = defaultdict(set)
    pair_seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for journey in journeys:
        for before, after in itertools.pairwise(journey.steps):
            pair_persons[(before.touchpoint, after.touchpoint)].add(journey.person)
            pair_seconds[(before.touchpoint, after.touchpoint)].append(
                seconds(after.ts - before.ts)
            )
    medians = {
        pair: quantile(pair_seconds[pair], 0.5)
        for pair, who in pair_persons.items()
        if len(who) >= support
    }
    for (a, b), median in medians.items():
        typical = [
            m for (x, _), m in medians.items() if node_stage.get(x, "") == node_stage.get(a, "")
        ]
        baseline = quantile(typical, 0.5)
        if median >= 3 * baseline and median >= 3600:
            add("slow_step", a, pair_persons[(a, b)], median, baseline)

    # loops
    looped: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        counts = Counter(s.touchpoint for s in journey.steps)
        for tp, n in counts.items():
            if n >= 2:
                looped[tp].add(journey.person)
    loopers = set().union(*looped.values()) if looped else set()
    loop_baseline = ratio_or_zero(len(loopers), len(persons))
    for tp, who in population.items():
        rate = len(looped[tp]) / len(who)
        if len(who) >= support and looped[tp] and rate >= 0.2:
            add("loop", tp, looped[tp], rate, loop_baseline)

    # issues soon after the goal
    window = settings.post_goal_days * 86400.0
    issue_persons: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        for i, step in enumerate(journey.steps):
            if step.touchpoint not in settings.post_goal_touchpoints:
                continue
            if any(
                is_goal(goal) and seconds(step.ts - goal.ts) <= window for goal in journey.steps[:i]
            ):
                issue_persons[step.touchpoint].add(journey.person)
    if len(converted) >= support and settings.post_goal_touchpoints:
        anyone = set().union(*issue_persons.values()) if issue_persons else set()
        baseline = len(anyone) / len(converted)
        for tp, who in issue_persons.items():
            rate = len(who) / len(converted)
            if rate >= 0.1:
                add("post_goal_issue", tp, who, rate, baseline)

    # low scores, each about the step before it (itself when first)
    scored: dict[str, set[str]] = defaultdict(set)
    low: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        for i, step in enumerate(journey.steps):
            if step.score is None:
                continue
            about = journey.steps[i - 1].touchpoint if i else step.touchpoint
            scored[about].add(journey.person)
            if step.score <= settings.low_score_max:
                low[about].add(journey.person)
    all_scored = set().union(*scored.values()) if scored else set()
    all_low = set().union(*low.values()) if low else set()
    baseline = ratio_or_zero(len(all_low), len(all_scored))
    for tp, who in scored.items():
        rate = len(low[tp]) / len(who)
        if len(who) >= support and rate >= 0.25:
            add("low_score", tp, low[tp], rate, baseline)

    return sorted(found, key=pain_order)


# --- the grid ------------------------------------------------------------------------------


def grid(
    journeys: list[Journey],
    stages: list[dict[str, Any]],
    total_persons: int,
    settings: MapSettings,
    node_stage: dict[str, str],
) -> list[dict[str, Any]]:
    from touchpoint_schemas.taxonomy import Taxonomy

    taxonomy = Taxonomy.standard()

    def online(channel: str) -> bool:
        """The taxonomy's flag; a channel it does not know counts as online."""
        found = taxonomy.channel(channel)
        return found.online if found is not None else True

    persons_at: dict[str, set[str]] = defaultdict(set)
    channel_steps: dict[str, Counter[str]] = defaultdict(Counter)
    dwell: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, list[float]] = defaultdict(list)
    negative: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        in_stage: dict[str, list[Step]] = defaultdict(list)
        for i, step in enumerate(journey.steps):
            persons_at[step.touchpoint].add(journey.person)
            if step.stage:
                channel_steps[step.stage][step.channel] += 1
                in_stage[step.stage].append(step)
            about = journey.steps[i - 1].stage if i else step.stage
            if about and step.score is not None:
                scores[about].append(step.score)
            if about and step.touchpoint in settings.negative_touchpoints:
                negative[about].add(journey.person)
        for stage, steps_there in in_stage.items():
            last = steps_there[-1].last_ts
            assert last is not None
            dwell[stage].append(seconds(last - steps_there[0].ts))
    columns = []
    for row in stages:
        stage = row["stage"]
        channels = channel_steps[stage]
        total_steps = sum(channels.values())
        mean = sum(scores[stage]) / len(scores[stage]) if scores[stage] else None
        negative_rate = len(negative[stage]) / row["persons"] if row["persons"] else 0.0
        if not row["persons"]:
            sentiment = None
        elif mean is None:
            sentiment = -negative_rate
        else:
            sentiment = max(-1.0, min(1.0, (mean - 5.5) / 4.5 - negative_rate))
        columns.append(
            {
                "stage": stage,
                "persons": row["persons"],
                "conversion_to_next": row["conversion_rate"],
                "dropoff_rate": row["dropoff_rate"],
                "touchpoints": [
                    {
                        "touchpoint": tp,
                        "persons": len(persons_at[tp]),
                        "reach": len(persons_at[tp]) / total_persons,
                    }
                    for tp in sorted(
                        (t for t in persons_at if node_stage.get(t) == stage),
                        key=lambda t: (-len(persons_at[t]), t),
                    )
                ],
                "channels": [
                    {
                        "channel": name,
                        "online": online(name),
                        "steps": n,
                        "share": n / total_steps,
                    }
                    for name, n in sorted(channels.items(), key=lambda c: (-c[1], c[0]))
                ],
                "median_seconds_in_stage": quantile(dwell[stage], 0.5) if dwell[stage] else None,
                "mean_score": mean,
                "negative_signal_rate": negative_rate,
                "sentiment": sentiment,
            }
        )
    return columns


# --- comparing with the SQL's result -------------------------------------------------------


def plain(value: Any) -> Any:
    """A msgspec Struct tree as dicts and lists (datetimes kept as they are)."""
    if isinstance(value, msgspec.Struct):
        return {name: plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


UNORDERED = {"backward_moves": ("from_stage", "to_stage")}
"""Lists whose order the spec does not fix: compared sorted by these keys."""


def pain_order(point: dict[str, Any]) -> tuple[Any, ...]:
    """The spec's order (kind, rate descending, touchpoint), then persons and examples for
    the ties it leaves (a touchpoint's slow steps towards different next touchpoints, whose
    order the SQL takes from the detail, which this reference does not write)."""
    return (
        PAIN_KINDS.index(point["kind"]),
        -point["rate"],
        point["touchpoint"],
        point["persons"],
        point["examples"],
    )


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected`` (only the keys ``expected`` has)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        found = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{path}.{key}: missing")
                continue
            other = actual[key]
            if key == "pain_points" and isinstance(value, list) and isinstance(other, list):
                value, other = sorted(value, key=pain_order), sorted(other, key=pain_order)
            if key in UNORDERED and isinstance(value, list) and isinstance(other, list):
                fields = UNORDERED[key]
                value = sorted(value, key=lambda r: [STAGE_ORDER.get(r[f], -1) for f in fields])
                other = sorted(other, key=lambda r: [STAGE_ORDER.get(r[f], -1) for f in fields])
            found += differences(value, other, f"{path}.{key}")
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        found = []
        if len(expected) != len(actual):
            found.append(f"{path}: expected {len(expected)} items, got {len(actual)}")
            found.append(f"{path}: expected {expected!r}")
            found.append(f"{path}:   actual {actual!r}")
            return found
        for index, (a, b) in enumerate(zip(expected, actual, strict=True)):
            found += differences(a, b, f"{path}[{index}]")
        return found
    if isinstance(expected, float):
        close = (
            isinstance(actual, int | float)
            and not isinstance(actual, bool)
            and math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
        )
        return [] if close else [f"{path}: expected {expected!r}, got {actual!r}"]
    if expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []
