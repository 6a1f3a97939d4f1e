"""Stage funnel: persons per stage, conversion to the next stage with its time, drop-off,
and backward moves (journeys are not linear)."""

from __future__ import annotations

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import quantiles, tally
from touchpoint_collector.journey.model import BackwardMove, StageRow
from touchpoint_collector.journey.steps import STAGE_NAMES

# Per person, one element per stage s (0-4): reached, dropped (an ended journey's last step
# is in s), converted (a journey went on from s to s + 1) and how many journeys did (the
# person rows' `fds`: the s of each journey's move from s to s + 1). Summed element-wise
# over signed rows (-ForEach, see ledger.py), so no row is repeated per stage.
FUNNEL_SQL = """
SELECT sum(sign) AS rows,
       sumForEach(arrayMap(x -> x * sign, reached)) AS persons,
       sumForEach(arrayMap(s -> toInt64(has(fds, s)) * sign, range(5))) AS converted,
       sumForEach(arrayMap(s -> toInt64(countEqual(fds, s)) * sign, range(5))) AS journeys_converted,
       sumForEach(arrayMap(x -> x * sign, dropped)) AS dropped
FROM (
    SELECT
        arrayMap(s -> toInt64(has(sg, s)), range(5)) AS reached,
        arrayMap(
            s -> toInt64(arrayExists((f, l, e) -> e = 1 AND sg[f + l - 1] = s, jf, jl, {ended})),
            range(5)
        ) AS dropped,
        fds, sign
    FROM {persons}
)
"""

# The times of those moves (`fdt`), by stage index, for their median and p90
# (``counting.quantiles``).
TIMES_SQL = """
SELECT stage, ms AS v, sign
FROM {persons}
ARRAY JOIN fds AS stage, fdt AS ms
"""

# Adjacent steps of a journey moving to an earlier stage, keyed from * 8 + to; `occ` = 1
# at a person's first such move of a kind, so counting those counts persons.
BACKWARD_SQL = """
SELECT intDiv(move, 8) AS from_idx, modulo(move, 8) AS to_idx, sum(sign) AS transitions,
       sumIf(sign, occ = 1) AS persons
FROM (
    SELECT arrayFilter(
               x -> x >= 0,
               arrayMap(
                   (a, b, p) -> if(p > 1 AND a >= 0 AND b >= 0 AND b < a, toInt16(a) * 8 + b, -1),
                   arrayPushFront(arrayPopBack(sg), toInt8(-1)), sg, pos)
           ) AS moves,
           sign
    FROM {persons}
)
ARRAY JOIN moves AS move, arrayEnumerateUniq(moves) AS occ
GROUP BY move
"""


def compute(ctx: BuildContext) -> tuple[list[StageRow], list[BackwardMove]]:
    per_stage = tally(
        ctx, "funnel", lambda rows: FUNNEL_SQL.format(persons=rows, ended=ctx.ended), keys=0
    )[0][1:]
    times = quantiles(
        ctx, "funnel_times", lambda rows: TIMES_SQL.format(persons=rows), ["stage"], (0.5, 0.9)
    )
    stages = []
    for idx, stage in enumerate(STAGE_NAMES):
        persons, converted, journeys_converted, dropped = (
            (column[idx] if len(column) > idx else 0) for column in per_stage
        )
        median_ms, p90_ms = times.get((idx,), (0, [0, 0]))[1]
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
        for f, t, n, p in tally(
            ctx, "backward", lambda rows: BACKWARD_SQL.format(persons=rows), keys=2
        )
    ]
    return stages, moves
