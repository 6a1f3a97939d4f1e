"""The ClickHouse journey map must equal the pure-Python reference, figure by figure.

Each example writes a generated event log into the store, reads the rows back, and
compares ``build_map`` (SQL) with ``reference_map`` (Python, written from the spec alone):
coverage, stage funnel, backward moves, nodes, edges, paths, path to goal, drivers, pain
points (with their evidence) and the grid, lists in the spec's order, floats to a relative
1e-9. Further checks look only at the SQL result: flow conservation, each edge's persons
against a two-step funnel counted directly from the rows, and the pain points' order.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from tests.collector.journey.generators import (
    T0,
    Scenario,
    clear,
    read_rows,
    scenarios,
    write_log,
)
from tests.collector.journey.reference import (
    END,
    IN_PROGRESS,
    PAIN_KINDS,
    START,
    Journeys,
    differences,
    journeys_of,
    node_stages,
    plain,
    reference_map,
)
from tests.conftest import scale
from touchpoint_collector.journey import JourneyMap, MapFilters, build_map
from touchpoint_collector.store import Store


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def check(store: Store, scenario: Scenario) -> None:
    clear(store)
    write_log(store, scenario.events)
    events, identities = read_rows(store)
    args = (events, identities, scenario.filters, scenario.settings, scenario.as_of)
    journeys = journeys_of(*args)
    expected = reference_map(*args)
    actual = build_map(store, scenario.filters, scenario.settings, as_of=scenario.as_of)
    found = differences(expected, plain(actual))
    assert not found, "SQL != reference:\n" + "\n".join(found) + "\n" + scenario.describe()
    assert_flow_conserved(actual)
    assert_edges_are_two_step_funnels(actual, journeys)
    order = [
        (PAIN_KINDS.index(p.kind), -p.rate, p.touchpoint, p.detail) for p in actual.pain_points
    ]
    assert order == sorted(order), "pain points not in the spec's order"


def assert_flow_conserved(built: JourneyMap) -> None:
    """For every node: transitions in = transitions out = steps."""
    flow_in: dict[str, int] = defaultdict(int)
    flow_out: dict[str, int] = defaultdict(int)
    for edge in built.edges:
        flow_out[edge.source] += edge.transitions
        flow_in[edge.target] += edge.transitions
    assert set(flow_in) | set(flow_out) <= {node.id for node in built.nodes}
    for node in built.nodes:
        expected_in = 0 if node.id == START else node.steps
        expected_out = 0 if node.id in (END, IN_PROGRESS) else node.steps
        assert (flow_in[node.id], flow_out[node.id]) == (expected_in, expected_out), node
    starts = [node.steps for node in built.nodes if node.id == START]
    assert sum(starts) == built.coverage.journeys


def assert_edges_are_two_step_funnels(built: JourneyMap, journeys: Journeys) -> None:
    """An edge's persons = persons with a step at A directly followed by a step at B.

    Counted straight from the journeys' steps, naming each step by the SQL's own nodes
    (a touchpoint without a node of its own falls into its stage's ``other`` node).
    """
    stage_of = node_stages(journeys.steps)
    own_nodes = {n.id for n in built.nodes if n.kind == "touchpoint"}

    def node(touchpoint: str) -> str:
        return touchpoint if touchpoint in own_nodes else f"other:{stage_of[touchpoint]}"

    funnel: dict[tuple[str, str], set[str]] = defaultdict(set)
    for journey in journeys.journeys:
        walk = [START, *(node(s.touchpoint) for s in journey.steps)]
        walk.append(END if journey.ended else IN_PROGRESS)
        for a, b in itertools.pairwise(walk):
            funnel[(a, b)].add(journey.person)
    assert {(e.source, e.target): e.persons for e in built.edges} == {
        pair: len(persons) for pair, persons in funnel.items()
    }


@examples(25)
@given(scenario=scenarios())
def test_sql_map_equals_reference(store: Store, scenario: Scenario) -> None:
    check(store, scenario)


@examples(10)
@given(scenario=scenarios(filtered=False))
def test_sql_map_equals_reference_unfiltered(store: Store, scenario: Scenario) -> None:
    check(store, scenario)


@pytest.mark.slow
@examples(scale(150))
@given(scenario=scenarios())
def test_sql_map_equals_reference_many(store: Store, scenario: Scenario) -> None:
    check(store, scenario)


@examples(5)
@given(scenario=scenarios())
def test_an_empty_window_is_empty_in_both(store: Store, scenario: Scenario) -> None:
    """A window that ends before the first event selects nothing: both maps are empty."""
    empty = Scenario(
        events=scenario.events,
        settings=scenario.settings,
        filters=MapFilters(since=T0 - timedelta(days=10), until=T0),
        as_of=scenario.as_of,
    )
    check(store, empty)
    built = build_map(store, empty.filters, empty.settings, as_of=empty.as_of)
    assert (built.coverage.events, built.coverage.persons) == (0, 0)
    assert (built.nodes, built.edges, built.paths, built.drivers) == ([], [], [], [])
    assert built.path_to_goal is None
    assert all(row.persons == 0 and row.conversion_rate is None for row in built.stages)
