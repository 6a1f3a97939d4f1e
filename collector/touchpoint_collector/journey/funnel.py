"""Stage funnel: persons per stage, conversion to the next stage with its time, drop-off,
and backward moves (journeys are not linear)."""

from __future__ import annotations

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.model import BackwardMove, StageRow
from touchpoint_collector.journey.steps import STAGE_NAMES

# Per person, one element per stage s (0-4): reached, dropped (an ended journey's last step
# is in s), and per journey the time from its first step in s to its first step in s + 1
# after that (-1: no such pair; the person rows' `fdt`). Summed element-wise over persons
# (-ForEach), so no row is repeated per stage.
FUNNEL_SQL = """
SELECT sumForEach(reached) AS persons,
       sumForEach(arrayMap(x -> toUInt64(arrayExists(d -> d >= 0, x)), fdt)) AS converted,
       sumForEach(arrayMap(x -> toUInt64(arrayCount(d -> d >= 0, x)), fdt)) AS journeys_converted,
       -- per stage [median, p90], from one sorted copy
       quantilesExactArrayForEach(0.5, 0.9)(arrayMap(x -> arrayFilter(d -> d >= 0, x), fdt)) AS median_p90_ms,
       sumForEach(dropped) AS dropped
FROM (
    SELECT
        arrayMap(s -> toUInt64(has(sg, s)), range(5)) AS reached,
        arrayMap(
            s -> toUInt64(arrayExists((f, l, e) -> e = 1 AND sg[f + l - 1] = s, jf, jl, {ended})),
            range(5)
        ) AS dropped,
        fdt
    FROM {persons}
)
"""

# Adjacent steps of a journey moving to an earlier stage, keyed from * 8 + to; `occ` = 1
# at a person's first such move of a kind, so counting those counts persons.
BACKWARD_SQL = """
SELECT intDiv(move, 8) AS from_idx, modulo(move, 8) AS to_idx, count() AS transitions,
       countIf(occ = 1) AS persons
FROM (
    SELECT arrayFilter(
               x -> x >= 0,
               arrayMap(
                   (a, b, p) -> if(p > 1 AND a >= 0 AND b >= 0 AND b < a, toInt16(a) * 8 + b, -1),
                   arrayPushFront(arrayPopBack(sg), toInt8(-1)), sg, pos)
           ) AS moves
    FROM {persons}
)
ARRAY JOIN moves AS move, arrayEnumerateUniq(moves) AS occ
GROUP BY move
ORDER BY from_idx, to_idx
"""


def compute(ctx: BuildContext) -> tuple[list[StageRow], list[BackwardMove]]:
    per_stage = ctx.rows(FUNNEL_SQL.format(persons=ctx.persons, ended=ctx.ended))[0]
    stages = []
    for idx, stage in enumerate(STAGE_NAMES):
        persons, converted, journeys_converted, dropped = (
            (column[idx] if len(column) > idx else 0)
            for column in (per_stage[0], per_stage[1], per_stage[2], per_stage[4])
        )
        quantiles = per_stage[3]
        median_ms, p90_ms = quantiles[idx] if len(quantiles) > idx else (0, 0)
        last = idx == len(STAGE_NAMES) - 1
        stages.append(
            StageRow(
                stage=stage,
                persons=int(persons),
                next_stage=None if last else STAGE_NAMES[idx + 1],
                converted_persons=int(converted),
                conversion_rate=converted / persons if persons and not last else None,
                median_seconds_to_next=median_ms / 1000 if journeys_converted else None,
                p90_seconds_to_next=p90_ms / 1000 if journeys_converted else None,
                dropped_persons=int(dropped),
                dropoff_rate=dropped / persons if persons else None,
            )
        )
    moves = [
        BackwardMove(
            from_stage=STAGE_NAMES[f],
            to_stage=STAGE_NAMES[t],
            transitions=int(n),
            persons=int(p),
        )
        for f, t, n, p in ctx.rows(BACKWARD_SQL.format(persons=ctx.persons))
    ]
    return stages, moves
