"""The map's results as plain ClickHouse tables (``map_stages``, ``map_nodes``,
``map_edges``, ``map_pain_points``), one set of rows per build, so analysts can query the
current map, or how a figure moved, with SQL alone."""

from __future__ import annotations

from typing import Any

from touchpoint_collector.journey.model import JourneyMap
from touchpoint_collector.store import Store


def write(store: Store, journey_map: JourneyMap) -> None:
    built = journey_map.built_at
    feelings = {c.stage: c for c in journey_map.grid}
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {
        "map_stages": (
            [
                "built_at",
                "stage",
                "persons",
                "converted_persons",
                "conversion_rate",
                "median_seconds_to_next",
                "p90_seconds_to_next",
                "dropped_persons",
                "dropoff_rate",
                "mean_score",
                "sentiment",
            ],
            [
                [
                    built,
                    s.stage,
                    s.persons,
                    s.converted_persons,
                    s.conversion_rate,
                    s.median_seconds_to_next,
                    s.p90_seconds_to_next,
                    s.dropped_persons,
                    s.dropoff_rate,
                    feelings[s.stage].mean_score if s.stage in feelings else None,
                    feelings[s.stage].sentiment if s.stage in feelings else None,
                ]
                for s in journey_map.stages
            ],
        ),
        "map_nodes": (
            [
                "built_at",
                "node",
                "kind",
                "stage",
                "persons",
                "steps",
                "events",
                "reach",
                "repeat_rate",
                "cross_cutting",
            ],
            [
                [
                    built,
                    n.id,
                    n.kind,
                    n.stage,
                    n.persons,
                    n.steps,
                    n.events,
                    n.reach,
                    n.repeat_rate,
                    int(n.cross_cutting),
                ]
                for n in journey_map.nodes
            ],
        ),
        "map_edges": (
            [
                "built_at",
                "source",
                "target",
                "transitions",
                "persons",
                "p_next",
                "median_seconds",
                "p90_seconds",
                "goal_after_persons",
                "goal_after_rate",
            ],
            [
                [
                    built,
                    e.source,
                    e.target,
                    e.transitions,
                    e.persons,
                    e.p_next,
                    e.median_seconds,
                    e.p90_seconds,
                    e.goal_after_persons,
                    e.goal_after_rate,
                ]
                for e in journey_map.edges
            ],
        ),
        "map_pain_points": (
            [
                "built_at",
                "kind",
                "touchpoint",
                "stage",
                "persons",
                "rate",
                "baseline",
                "examples",
                "detail",
            ],
            [
                [
                    built,
                    p.kind,
                    p.touchpoint,
                    p.stage,
                    p.persons,
                    p.rate,
                    p.baseline,
                    p.examples,
                    p.detail,
                ]
                for p in journey_map.pain_points
            ],
        ),
    }
    for table, (columns, rows) in tables.items():
        if rows:
            store.client.insert(table, rows, column_names=columns)
