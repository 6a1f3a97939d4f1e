"""Stage funnel: persons per stage, conversion to the next stage with its time, drop-off,
and backward moves (journeys are not linear)."""

from __future__ import annotations

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.model import BackwardMove, StageRow
from touchpoint_collector.journey.steps import STAGE_NAMES

FUNNEL_SQL = """
WITH per_journey AS (
    SELECT s.person AS person, s.journey AS journey,
           arraySort(x -> x.1, groupArray((s.step, s.stage_idx, s.ts_ms))) AS seq,
           any(j.ended) AS ended, any(j.last_stage_idx) AS last_stage_idx
    FROM {steps} AS s
    INNER JOIN {journeys} AS j ON s.person = j.person AND s.journey = j.journey
    GROUP BY s.person, s.journey
),
per_stage AS (
    SELECT person, stage_idx, ended, last_stage_idx,
           arrayFirstIndex(x -> x.2 = stage_idx, seq) AS fi,
           arrayFirstIndex(x -> x.2 = stage_idx + 1 AND x.1 > seq[fi].1, seq) AS ni,
           if(ni > 0, seq[ni].3 - seq[fi].3, 0) AS dt_ms
    FROM per_journey
    ARRAY JOIN range(5) AS stage_idx
)
SELECT stage_idx,
       uniqExactIf(person, fi > 0) AS persons,
       uniqExactIf(person, fi > 0 AND ni > 0) AS converted,
       countIf(fi > 0 AND ni > 0) AS journeys_converted,
       quantileExactIf(0.5)(dt_ms, fi > 0 AND ni > 0) AS median_ms,
       quantileExactIf(0.9)(dt_ms, fi > 0 AND ni > 0) AS p90_ms,
       uniqExactIf(person, ended = 1 AND last_stage_idx = stage_idx) AS dropped
FROM per_stage
GROUP BY stage_idx
ORDER BY stage_idx
"""

BACKWARD_SQL = """
SELECT from_idx, to_idx, count() AS transitions, uniqExact(person) AS persons
FROM (
    SELECT person, stage_idx AS to_idx,
           lagInFrame(stage_idx, 1, -1) OVER w AS from_idx,
           lagInFrame(step, 1, 0) OVER w AS prev_step
    FROM {steps}
    WINDOW w AS (PARTITION BY person, journey ORDER BY step ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE prev_step > 0 AND from_idx >= 0 AND to_idx >= 0 AND to_idx < from_idx
GROUP BY from_idx, to_idx
ORDER BY from_idx, to_idx
"""


def compute(ctx: BuildContext) -> tuple[list[StageRow], list[BackwardMove]]:
    found = {
        row[0]: row for row in ctx.rows(FUNNEL_SQL.format(steps=ctx.steps, journeys=ctx.journeys))
    }
    stages = []
    for idx, stage in enumerate(STAGE_NAMES):
        _, persons, converted, journeys_converted, median_ms, p90_ms, dropped = found.get(
            idx, (idx, 0, 0, 0, 0, 0, 0)
        )
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
        for f, t, n, p in ctx.rows(BACKWARD_SQL.format(steps=ctx.steps))
    ]
    return stages, moves
