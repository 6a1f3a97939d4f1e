"""The journey-map grid: stages as columns; touchpoints, channels, conversion, time in
stage, feelings, pain points and opportunities down each column."""

from __future__ import annotations

from dataclasses import dataclass

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import quantiles, tally
from touchpoint_collector.journey.model import (
    ChannelShare,
    Driver,
    GridColumn,
    PainPoint,
    StageRow,
    TouchpointReach,
)
from touchpoint_collector.journey.steps import STAGE_NAMES
from touchpoint_schemas.taxonomy import Stage, Taxonomy

CHANNELS_SQL = """
SELECT s, c, sum(sign) AS steps FROM {persons}
ARRAY JOIN sg AS s, ch AS c
WHERE s >= 0
GROUP BY s, c
"""

# Dwell: per (journey, stage) of a person, the last step's last event minus the first
# step's time (the person rows' `dws` / `dwm`).
TIME_IN_STAGE_SQL = """
SELECT s, dwell_ms AS v, sign
FROM {persons}
ARRAY JOIN dws AS s, dwm AS dwell_ms
"""

# Feelings count for the stage of the step before them (their own when first): a support
# contact during checkout is a purchase-stage signal, not a retention one.
FEELINGS_SQL = """
SELECT about_stage,
       sum(sign) AS steps,
       sumIf(sign * toFloat64(assumeNotNull(score)), score IS NOT NULL) AS score_sum,
       sumIf(sign, score IS NOT NULL) AS scores,
       sumIf(sign, negative = 1 AND negative_occ = 1) AS negative_persons
FROM (
    SELECT arrayMap((before, s, p) -> if(p > 1, before, s), arrayPushFront(arrayPopBack(sg), toInt8(-1)), sg, pos) AS about,
           arrayMap(t -> toUInt8(has({{negative:Array(UInt16)}}, t)), tp) AS negatives,
           sc, sign
    FROM {persons}
)
ARRAY JOIN about AS about_stage, sc AS score, negatives AS negative,
           arrayEnumerateUniq(about, negatives) AS negative_occ
WHERE about_stage >= 0
GROUP BY about_stage
"""

_ACTION = {
    "dropoff": "Find out why persons stop after {tp} and remove the obstacle",
    "slow_step": "Shorten the wait after {tp}",
    "loop": "Help persons finish {tp} the first time",
    "post_goal_issue": "Prevent the need for {tp} after the goal",
    "low_score": "Fix what persons rate low after {tp}",
}


@dataclass(frozen=True)
class StageFigures:
    """What the grid counts per stage (the rest comes from the other views)."""

    channels: dict[str, list[tuple[str, int]]]
    """Per stage: (channel, steps)."""
    dwell: dict[str, int]
    """Per stage: the median time in it (ms)."""
    feelings: dict[str, tuple[float | None, int, int]]
    """Per stage: the mean score, how many scores, persons with a negative touchpoint."""


def measure(ctx: BuildContext) -> StageFigures:
    """The grid's own queries: they need no other view, so they can run beside them."""
    channels: dict[str, list[tuple[str, int]]] = {}
    for stage_idx, channel, steps in tally(
        ctx, "channels", lambda rows: CHANNELS_SQL.format(persons=rows), keys=2
    ):
        stage = STAGE_NAMES[stage_idx]
        channels.setdefault(stage, []).append((ctx.channels[channel - 1], int(steps)))
    dwell = {
        STAGE_NAMES[s]: median
        for (s,), (_, (median,)) in quantiles(
            ctx, "dwell", lambda rows: TIME_IN_STAGE_SQL.format(persons=rows), ["s"], (0.5,)
        ).items()
    }
    feelings = {
        STAGE_NAMES[stage_idx]: (float(score_sum) / scores if scores else None, scores, negative)
        for stage_idx, _, score_sum, scores, negative in tally(
            ctx,
            "feelings",
            lambda rows: FEELINGS_SQL.format(persons=rows),
            keys=1,
            negative=ctx.codes(ctx.settings.negative_touchpoints),
        )
    }
    return StageFigures(channels=channels, dwell=dwell, feelings=feelings)


def compute(
    figures: StageFigures,
    taxonomy: Taxonomy,
    stages: list[StageRow],
    stage_of: dict[str, str],
    node_persons: dict[str, int],
    persons_total: int,
    pain_points: list[PainPoint],
    drivers: list[Driver],
) -> list[GridColumn]:
    channels, dwell, feelings = figures.channels, figures.dwell, figures.feelings
    columns = []
    for row in stages:
        stage = row.stage
        touchpoints = sorted(
            (
                TouchpointReach(
                    touchpoint=tp, persons=n, reach=n / persons_total if persons_total else 0.0
                )
                for tp, n in node_persons.items()
                if stage_of.get(tp) == stage
            ),
            key=lambda t: (-t.persons, t.touchpoint),
        )
        stage_channels = sorted(channels.get(stage, []), key=lambda c: (-c[1], c[0]))
        total_steps = sum(n for _, n in stage_channels)
        shares = [
            ChannelShare(
                channel=name,
                online=_online(taxonomy, name),
                steps=n,
                share=n / total_steps,
            )
            for name, n in stage_channels
        ]
        mean_score, scores, negative_persons = feelings.get(stage, (None, 0, 0))
        mean = mean_score if scores else None
        negative_rate = negative_persons / row.persons if row.persons else 0.0
        if not row.persons:
            sentiment = None
        elif mean is None:
            sentiment = 0.0 - negative_rate  # not -0.0
        else:
            sentiment = max(-1.0, min(1.0, (mean - 5.5) / 4.5 - negative_rate))
        stage_pain = [p for p in pain_points if p.stage == stage]
        opportunities = [_ACTION[p.kind].format(tp=p.touchpoint) for p in stage_pain]
        for driver in drivers:
            reach = node_persons.get(driver.touchpoint, 0) / persons_total if persons_total else 0.0
            if stage_of.get(driver.touchpoint) == stage and driver.ci_low > 1 and reach < 0.5:
                opportunities.append(
                    f"Bring more persons to {driver.touchpoint}: goal rate "
                    f"{driver.goal_rate_with or 0:.0%} with it, {driver.goal_rate_without or 0:.0%} without"
                )
        columns.append(
            GridColumn(
                stage=stage,
                phase=Stage(stage).phase.value,
                persons=row.persons,
                touchpoints=touchpoints,
                channels=shares,
                conversion_to_next=row.conversion_rate,
                dropoff_rate=row.dropoff_rate,
                median_seconds_in_stage=dwell[stage] / 1000 if stage in dwell else None,
                mean_score=mean,
                negative_signal_rate=negative_rate,
                sentiment=sentiment,
                pain_points=[p.detail for p in stage_pain],
                opportunities=opportunities,
            )
        )
    return columns


def _online(taxonomy: Taxonomy, channel: str) -> bool:
    found = taxonomy.channel(channel)
    return found.online if found is not None else True
