"""Paths: whole-journey variants with coverage and goal rate, and the usual path to the goal."""

from __future__ import annotations

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.model import PathVariant

ELLIPSIS = "…"

VARIANTS_SQL = """
WITH per_journey AS (
    SELECT person, journey,
           arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((step, touchpoint)))) AS tps,
           arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((step, {is_goal})))) AS goals
    FROM {steps}
    GROUP BY person, journey
)
SELECT
    if(length(tps) > {{max_steps:UInt32}},
       arrayConcat(arraySlice(tps, 1, {{max_steps:UInt32}}), ['…']), tps) AS variant,
    count() AS journeys,
    countIf(has(goals, 1)) AS goal_journeys
FROM per_journey
GROUP BY variant
ORDER BY journeys DESC, arrayStringConcat(variant, ' > ') ASC
LIMIT {{limit:UInt32}}
"""

TO_GOAL_SQL = """
WITH per_journey AS (
    SELECT arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((step, touchpoint)))) AS tps,
           arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((step, {is_goal})))) AS goals
    FROM {steps}
    GROUP BY person, journey
)
SELECT arraySlice(tps, 1, indexOf(goals, 1)) AS prefix, count() AS journeys
FROM per_journey
WHERE has(goals, 1)
GROUP BY prefix
ORDER BY journeys DESC, arrayStringConcat(prefix, ' > ') ASC
LIMIT 1
"""


def compute(ctx: BuildContext, journeys_total: int) -> tuple[list[PathVariant], PathVariant | None]:
    variants = [
        PathVariant(
            steps=list(variant),
            journeys=int(journeys),
            coverage=journeys / journeys_total,
            goal_journeys=int(goal),
            goal_rate=goal / journeys,
        )
        for variant, journeys, goal in ctx.rows(
            VARIANTS_SQL.format(steps=ctx.steps, is_goal=ctx.is_goal),
            max_steps=ctx.settings.max_path_steps,
            limit=ctx.settings.path_limit,
        )
    ]
    best = ctx.rows(TO_GOAL_SQL.format(steps=ctx.steps, is_goal=ctx.is_goal))
    to_goal = None
    if best:
        prefix, journeys = best[0]
        to_goal = PathVariant(
            steps=list(prefix),
            journeys=int(journeys),
            coverage=journeys / journeys_total,
            goal_journeys=int(journeys),
            goal_rate=1.0,
        )
    return variants, to_goal
