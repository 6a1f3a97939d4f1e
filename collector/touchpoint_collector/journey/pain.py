"""Pain points with evidence: where persons drop off, wait, loop, come back unhappy after
the goal, or score low. Each comes with counts, a rate, the baseline it stands out from,
and example person ids to look at. Thresholds: ``docs/journey-map.md``."""

from __future__ import annotations

from typing import Any

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import examples_sql, tally
from touchpoint_collector.journey.ledger import Examples
from touchpoint_collector.journey.model import PainPoint
from touchpoint_collector.journey.steps import GOAL_SO_FAR, at_journey_ends
from touchpoint_collector.journey.transitions import PAIRS

KIND_ORDER = ("dropoff", "slow_step", "loop", "post_goal_issue", "low_score")

# Each candidate query yields (touchpoint code or pair, population, affected, the smallest
# affected person ids) from one pass over the signed person rows (see ledger.py).

# Per person: the last touchpoints of their ended journeys without a goal step
# (`{undone_ends}`: per journey, its last touchpoint, or 0 once the journey has a goal).
DROPOFF_SQL = """
SELECT t, sum(sign) AS population, sumIf(sign, has(dropped, t)) AS affected,
       {examples}
FROM (
    SELECT person, tp, sign,
           arrayMap(
               (e, t) -> if(e = 1, t, toUInt16(0)),
               {ended},
               {undone_ends}
           ) AS dropped
    FROM {persons}
)
ARRAY JOIN arrayDistinct(tp) AS t
WHERE t != {{goal_code:UInt16}}
GROUP BY t
""".replace(
    "{undone_ends}",
    at_journey_ends(f"arrayMap((t, gone) -> if(gone = 1, toUInt16(0), t), tp, {GOAL_SO_FAR})"),
)

# Per pair of adjacent touchpoints (``transitions.PAIRS``): steps, and persons (`occ` = 1 at
# a person's first).
SLOW_SQL = """
SELECT pair, sum(sign) AS steps, sumIf(sign, occ = 1) AS persons, {examples}
FROM ({pairs})
ARRAY JOIN pairs AS pair, arrayEnumerateUniq(pairs) AS occ
GROUP BY pair
"""
# `lp`: per person, the touchpoints with two or more steps in one journey.
LOOP_SQL = """
SELECT t, sum(sign) AS population, sumIf(sign, has(lp, t)) AS affected,
       {examples}
FROM {persons}
ARRAY JOIN arrayDistinct(tp) AS t
GROUP BY t
"""

# `pgh`: per person, the issue touchpoints within the window after a goal step of the
# same journey (the person rows' own; see steps.py).
POST_GOAL_SQL = """
SELECT t, sum(sign) AS affected, {examples}
FROM {persons}
ARRAY JOIN pgh AS t
GROUP BY t
"""

# Scores, each about the step before it (its own step when first); `occ` = 1 at a person's
# first score about a touchpoint, `low_occ` = 1 at their first low one.
SCORED = """
SELECT person, sign,
       arrayFilter((a, s) -> s IS NOT NULL,
                   arrayMap((before, t, p) -> if(p > 1, before, t), arrayPushFront(arrayPopBack(tp), toUInt16(0)), tp, pos), sc) AS about,
       arrayMap(s -> toUInt8(assumeNotNull(s) <= {{low:Float32}}), arrayFilter(s -> s IS NOT NULL, sc)) AS low
FROM {persons}
"""
LOW_SCORE_SQL = """
SELECT a, sumIf(sign, occ = 1) AS population, sumIf(sign, is_low = 1 AND low_occ = 1) AS affected,
       {examples}
FROM ({scored})
ARRAY JOIN about AS a, low AS is_low, arrayEnumerateUniq(about) AS occ,
           arrayEnumerateUniq(about, low) AS low_occ
GROUP BY a
"""

# The baselines, in one pass: persons who loop, who have any issue soon after a goal,
# who gave a score, who gave a low one.
BASELINES_SQL = """
SELECT sumIf(sign, notEmpty(lp)),
       sumIf(sign, notEmpty(pgh)),
       sumIf(sign, arrayExists(s -> s IS NOT NULL, sc)),
       sumIf(sign, arrayExists(s -> s IS NOT NULL AND assumeNotNull(s) <= {{low:Float32}}, sc))
FROM {persons}
"""


def compute(
    ctx: BuildContext,
    stage_of: dict[str, str],
    persons_total: int,
    converted_total: int,
    pair_medians: dict[tuple[Any, ...], tuple[int, list[int]]],
) -> list[PainPoint]:
    """The pain points; `pair_medians`: the median time per touchpoint pair
    (``transitions.medians``)."""
    found: list[PainPoint] = []

    def with_examples(
        name: str, sql: str, key: str, affected: str, at: int, **params: object
    ) -> list[tuple[Any, ...]]:
        """`sql`'s rows, tallied: its `{examples}` (column `at`, right after the affected
        count) are the persons of its rows where `affected` holds."""
        picked = examples_sql(key, affected)
        return tally(
            ctx,
            name,
            lambda rows: sql.format(persons=rows, ended=ctx.ended, examples=picked),
            keys=1,
            examples=Examples(column=at, count=at - 1),
            **params,
        )

    support = ctx.settings.min_support

    def add(
        kind: str,
        touchpoint: str,
        persons: int,
        rate: float,
        baseline: float,
        detail: str,
        examples: list[str],
    ) -> None:
        """Report a pain point, with the affected persons to look at as evidence."""
        found.append(
            PainPoint(
                kind=kind,
                touchpoint=touchpoint,
                stage=stage_of.get(touchpoint, ""),
                persons=int(persons),
                rate=rate,
                baseline=baseline,
                examples=list(examples),
                detail=detail,
            )
        )

    issues = ctx.codes(ctx.settings.post_goal_touchpoints)
    low = ctx.settings.low_score_max
    loopers, any_issue, scored_persons, low_persons = tally(
        ctx, "baselines", lambda rows: BASELINES_SQL.format(persons=rows), keys=0, low=low
    )[0]

    # drop-off, against the drop-off of the touchpoint's stage
    rows = [
        (ctx.name(t), *rest)
        for t, *rest in with_examples("dropoff", DROPOFF_SQL, "t", "has(dropped, t)", 3)
    ]
    by_stage: dict[str, list[int]] = {}
    for tp, population, affected, _ in rows:
        totals = by_stage.setdefault(stage_of.get(tp, ""), [0, 0])
        totals[0] += affected
        totals[1] += population
    for tp, population, affected, examples in rows:
        affected_sum, population_sum = by_stage[stage_of.get(tp, "")]
        baseline = affected_sum / population_sum if population_sum else 0.0
        rate = affected / population
        if population >= support and rate >= 0.2 and rate >= 1.5 * baseline:
            add(
                "dropoff",
                tp,
                affected,
                rate,
                baseline,
                f"{rate:.0%} of persons with {tp} stop there, without reaching the goal "
                f"({baseline:.0%} across their stage)",
                examples,
            )

    # slow steps, against the typical step of the same stage (a delivery taking days is
    # normal after a purchase; a demo taking days to schedule is not)
    slow = [
        (ctx.name(pair // 65536), ctx.name(pair % 65536), persons, medians[0], examples)
        for pair, _, persons, examples in with_examples(
            "slow", SLOW_SQL.format(pairs=PAIRS, examples="{examples}"), "pair", "occ = 1", 3
        )
        if persons >= support
        for _, medians in [pair_medians[(pair,)]]
    ]
    medians_by_stage: dict[str, list[int]] = {}
    for a, _b, _persons, median_ms, _ in slow:
        medians_by_stage.setdefault(stage_of.get(a, ""), []).append(int(median_ms))
    for values in medians_by_stage.values():
        values.sort()
    for a, b, persons, median_ms, examples in slow:
        values = medians_by_stage[stage_of.get(a, "")]
        baseline_ms = values[min(len(values) - 1, len(values) // 2)]
        if median_ms >= 3 * baseline_ms and median_ms >= 3_600_000:
            add(
                "slow_step",
                a,
                persons,
                median_ms / 1000,
                baseline_ms / 1000,
                f"{a} -> {b} takes {_duration(median_ms / 1000)} (median), "
                f"against {_duration(baseline_ms / 1000)} for a typical step of the stage",
                examples,
            )

    # loops and rework
    loop_baseline = loopers / persons_total if persons_total else 0.0
    for code, population, affected, examples in with_examples(
        "loop", LOOP_SQL, "t", "has(lp, t)", 3
    ):
        tp = ctx.name(code)
        rate = affected / population
        if population >= support and affected and rate >= 0.2:
            add(
                "loop",
                tp,
                affected,
                rate,
                loop_baseline,
                f"{rate:.0%} of persons come back to {tp} after moving on",
                examples,
            )

    # issues soon after the goal
    if converted_total >= support and issues:
        baseline = any_issue / converted_total
        for code, affected, examples in with_examples("post_goal", POST_GOAL_SQL, "t", "1", 2):
            tp = ctx.name(code)
            rate = affected / converted_total
            if rate >= 0.1:
                add(
                    "post_goal_issue",
                    tp,
                    affected,
                    rate,
                    baseline,
                    f"{rate:.0%} of converted persons have {tp} within "
                    f"{ctx.settings.post_goal_days:g} days of the goal",
                    examples,
                )

    # low feedback scores, attributed to what they are about
    baseline = low_persons / scored_persons if scored_persons else 0.0
    low_scores = LOW_SCORE_SQL.format(scored=SCORED, examples="{examples}")
    for code, population, affected, examples in with_examples(
        "low_score", low_scores, "a", "is_low = 1 AND low_occ = 1", 3, low=low
    ):
        tp = ctx.name(code)
        rate = affected / population
        if population >= support and rate >= 0.25:
            add(
                "low_score",
                tp,
                affected,
                rate,
                baseline,
                f"{rate:.0%} of feedback after {tp} scores {low:g} or less "
                f"({baseline:.0%} overall)",
                examples,
            )

    # The detail breaks the one tie left: a touchpoint's slow steps towards different next
    # touchpoints ("A -> B takes ..."), so the order never depends on how rows came back.
    found.sort(key=lambda p: (KIND_ORDER.index(p.kind), -p.rate, p.touchpoint, p.detail))
    return found


def _duration(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 60:.0f} min"
