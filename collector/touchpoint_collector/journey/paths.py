"""Paths: whole-journey variants with coverage and goal rate, and the usual path to the goal."""

from __future__ import annotations

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import ranked
from touchpoint_collector.journey.model import PathVariant

ELLIPSIS = "…"

# A variant is a list of touchpoint codes (0 stands for the ellipsis); ties are broken on
# its names joined with " > ", as the spec says (``counting.ranked``).
NAMES = "arrayStringConcat(arrayMap(c -> if(c = 0, '…', {tp_names:Array(String)}[c]), key), ' > ')"

# Each journey's steps and goal flags as arrays of their own: ARRAY JOIN over the journeys'
# bounds instead (`jf`, `jl`), with the person's arrays sliced on each row, copies the
# person's arrays once per journey (journeys times steps values).
JOURNEYS = (
    "arraySplit((x, p) -> p = 1, tp, pos) AS steps, arraySplit((x, p) -> p = 1, g, pos) AS goals"
)

VARIANTS_SQL = """
SELECT variant AS key, sum(sign) AS n, sumIf(sign, has(goals, 1)) AS goal_journeys
FROM (
    SELECT if(length(steps) > {{max_steps:UInt32}},
              arrayPushBack(arraySlice(steps, 1, {{max_steps:UInt32}}), toUInt16(0)),
              steps) AS variant,
           goals, sign
    FROM {persons}
    ARRAY JOIN {journeys}
)
GROUP BY variant
"""

TO_GOAL_SQL = """
SELECT prefix AS key, sum(sign) AS n
FROM (
    SELECT arrayFirstIndex(x -> x = 1, goals) AS first_goal,
           arraySlice(steps, 1, first_goal) AS prefix,
           sign
    FROM {persons}
    ARRAY JOIN {journeys}
)
WHERE first_goal > 0
GROUP BY prefix
"""


def compute(ctx: BuildContext, journeys_total: int) -> tuple[list[PathVariant], PathVariant | None]:
    def names(codes: list[int]) -> list[str]:
        return [ctx.name(c) if c else ELLIPSIS for c in codes]

    variants = [
        PathVariant(
            steps=names(variant),
            journeys=int(journeys),
            coverage=journeys / journeys_total,
            goal_journeys=int(goal),
            goal_rate=goal / journeys,
        )
        for variant, journeys, goal in ranked(
            ctx,
            "variants",
            lambda rows: VARIANTS_SQL.format(persons=rows, journeys=JOURNEYS),
            ["goal_journeys"],
            NAMES,
            ctx.settings.path_limit,
            max_steps=ctx.settings.max_path_steps,
        )
    ]
    best = ranked(
        ctx,
        "prefixes",
        lambda rows: TO_GOAL_SQL.format(persons=rows, journeys=JOURNEYS),
        [],
        NAMES,
        1,
    )
    to_goal = None
    if best:
        prefix, journeys = best[0]
        to_goal = PathVariant(
            steps=names(prefix),
            journeys=int(journeys),
            coverage=journeys / journeys_total,
            goal_journeys=int(journeys),
            goal_rate=1.0,
        )
    return variants, to_goal
