"""Pain points with evidence: where persons drop off, wait, loop, come back unhappy after
the goal, or score low. Each comes with counts, a rate, the baseline it stands out from,
and example person ids to look at. Thresholds: ``docs/journey-map.md``."""

from __future__ import annotations

from typing import Any

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.model import PainPoint

KIND_ORDER = ("dropoff", "slow_step", "loop", "post_goal_issue", "low_score")

# Each candidate query yields (touchpoint, population, affected) plus kind-specific columns;
# each examples query yields the affected person ids for one candidate.

DROPOFF_SQL = """
SELECT touchpoint, count() AS population, countIf(dropped) AS affected
FROM (
    SELECT s.touchpoint AS touchpoint, s.person AS person,
           max(j.ended = 1 AND j.first_goal_step = 0 AND s.step = j.steps) AS dropped
    FROM {steps} AS s INNER JOIN {journeys} AS j ON s.person = j.person AND s.journey = j.journey
    GROUP BY touchpoint, person
)
WHERE touchpoint != {{goal_tp:String}}
GROUP BY touchpoint
"""
DROPOFF_EXAMPLES = """
SELECT touchpoint, groupArraySorted(5)(person) FROM (
    SELECT DISTINCT s.touchpoint AS touchpoint, s.person AS person FROM {steps} AS s
    INNER JOIN {journeys} AS j ON s.person = j.person AND s.journey = j.journey
    WHERE j.ended = 1 AND j.first_goal_step = 0 AND s.step = j.steps
) GROUP BY touchpoint
"""

PAIRS_SQL = """
SELECT person, touchpoint AS a,
       leadInFrame(touchpoint, 1, '') OVER w AS b,
       leadInFrame(ts_ms, 1, 0) OVER w - ts_ms AS dt_ms,
       leadInFrame(step, 1, 0) OVER w AS next_step
FROM {steps}
WINDOW w AS (PARTITION BY person, journey ORDER BY step ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
"""
SLOW_SQL = """
SELECT a, b, uniqExact(person) AS persons, quantileExact(0.5)(dt_ms) AS median_ms
FROM ({pairs}) WHERE next_step > 0
GROUP BY a, b
HAVING persons >= {{min_support:UInt32}}
"""
SLOW_EXAMPLES = """
SELECT (a, b), groupArraySorted(5)(person) FROM (
    SELECT DISTINCT a, b, person FROM ({pairs}) WHERE next_step > 0
) GROUP BY a, b
"""

LOOP_SQL = """
SELECT touchpoint, count() AS population, countIf(looped) AS affected
FROM (
    SELECT touchpoint, person, max(n >= 2) AS looped
    FROM (SELECT touchpoint, person, journey, count() AS n FROM {steps} GROUP BY touchpoint, person, journey)
    GROUP BY touchpoint, person
)
GROUP BY touchpoint
"""
LOOP_EXAMPLES = """
SELECT touchpoint, groupArraySorted(5)(person) FROM (
    SELECT DISTINCT touchpoint, person FROM (
        SELECT touchpoint, person, journey, count() AS n FROM {steps}
        GROUP BY touchpoint, person, journey
    ) WHERE n >= 2
) GROUP BY touchpoint
"""

POST_GOAL_SQL = """
SELECT issue.touchpoint AS touchpoint, uniqExact(issue.person) AS affected
FROM {steps} AS issue
INNER JOIN (SELECT person, journey, step, ts_ms FROM {steps} WHERE {is_goal}) AS goal
    ON issue.person = goal.person AND issue.journey = goal.journey
WHERE issue.touchpoint IN {{issues:Array(String)}}
  AND issue.step > goal.step
  AND issue.ts_ms - goal.ts_ms <= {{window_ms:Int64}}
GROUP BY touchpoint
"""
POST_GOAL_EXAMPLES = """
SELECT touchpoint, groupArraySorted(5)(person) FROM (
    SELECT DISTINCT issue.touchpoint AS touchpoint, issue.person AS person FROM {steps} AS issue
    INNER JOIN (SELECT person, journey, step, ts_ms FROM {steps} WHERE {is_goal}) AS goal
        ON issue.person = goal.person AND issue.journey = goal.journey
    WHERE issue.touchpoint IN {{issues:Array(String)}} AND issue.step > goal.step
      AND issue.ts_ms - goal.ts_ms <= {{window_ms:Int64}}
) GROUP BY touchpoint
"""
POST_GOAL_ANY_SQL = """
SELECT uniqExact(issue.person) FROM {steps} AS issue
INNER JOIN (SELECT person, journey, step, ts_ms FROM {steps} WHERE {is_goal}) AS goal
    ON issue.person = goal.person AND issue.journey = goal.journey
WHERE issue.touchpoint IN {{issues:Array(String)}} AND issue.step > goal.step
  AND issue.ts_ms - goal.ts_ms <= {{window_ms:Int64}}
"""

SCORED_SQL = """
SELECT person, score, if(prev_step > 0, prev_tp, touchpoint) AS about
FROM (
    SELECT person, touchpoint, score,
           lagInFrame(touchpoint, 1, '') OVER w AS prev_tp,
           lagInFrame(step, 1, 0) OVER w AS prev_step
    FROM {steps}
    WINDOW w AS (PARTITION BY person, journey ORDER BY step ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE score IS NOT NULL
"""
LOW_SCORE_SQL = """
SELECT about, uniqExact(person) AS population,
       uniqExactIf(person, score <= {{low:Float32}}) AS affected
FROM ({scored}) GROUP BY about
"""
LOW_SCORE_BASE_SQL = """
SELECT uniqExact(person), uniqExactIf(person, score <= {{low:Float32}}) FROM ({scored})
"""
LOW_SCORE_EXAMPLES = """
SELECT about, groupArraySorted(5)(person) FROM (
    SELECT DISTINCT about, person FROM ({scored}) WHERE score <= {{low:Float32}}
) GROUP BY about
"""


class _Examples:
    """Example person ids for every candidate of one kind, fetched in one query when the
    first pain point of that kind is reported (and not at all when none is)."""

    def __init__(self, ctx: BuildContext, sql: str, **params: Any) -> None:
        self._ctx, self._sql, self._params = ctx, sql, params
        self._found: dict[Any, list[str]] | None = None

    def of(self, key: Any) -> list[str]:
        if self._found is None:
            self._found = {
                (tuple(k) if isinstance(k, list | tuple) else k): list(v)
                for k, v in self._ctx.rows(self._sql, **self._params)
            }
        return self._found.get(key, [])


def compute(
    ctx: BuildContext,
    stage_of: dict[str, str],
    persons_total: int,
    converted_total: int,
) -> list[PainPoint]:
    found: list[PainPoint] = []
    fmt = {"steps": ctx.steps, "journeys": ctx.journeys, "is_goal": ctx.is_goal}
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
                examples=examples,
                detail=detail,
            )
        )

    # drop-off, against the drop-off of the touchpoint's stage
    rows = ctx.rows(DROPOFF_SQL.format(**fmt))
    dropoff_examples = _Examples(ctx, DROPOFF_EXAMPLES.format(**fmt))
    by_stage: dict[str, list[int]] = {}
    for tp, population, affected in rows:
        totals = by_stage.setdefault(stage_of.get(tp, ""), [0, 0])
        totals[0] += affected
        totals[1] += population
    for tp, population, affected in rows:
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
                dropoff_examples.of(tp),
            )

    # slow steps, against the typical step of the same stage (a delivery taking days is
    # normal after a purchase; a demo taking days to schedule is not)
    pairs = PAIRS_SQL.format(**fmt)
    slow = ctx.rows(SLOW_SQL.format(pairs=pairs), min_support=support)
    slow_examples = _Examples(ctx, SLOW_EXAMPLES.format(pairs=pairs))
    medians_by_stage: dict[str, list[int]] = {}
    for a, _b, _persons, median_ms in slow:
        medians_by_stage.setdefault(stage_of.get(a, ""), []).append(int(median_ms))
    for values in medians_by_stage.values():
        values.sort()
    for a, b, persons, median_ms in slow:
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
                slow_examples.of((a, b)),
            )

    # loops and rework
    loops = ctx.rows(LOOP_SQL.format(**fmt))
    loop_examples = _Examples(ctx, LOOP_EXAMPLES.format(**fmt))
    loopers = ctx.rows(
        f"""SELECT uniqExact(person) FROM (
            SELECT person, journey, touchpoint, count() AS n FROM {ctx.steps}
            GROUP BY person, journey, touchpoint) WHERE n >= 2"""
    )[0][0]
    loop_baseline = loopers / persons_total if persons_total else 0.0
    for tp, population, affected in loops:
        rate = affected / population
        if population >= support and affected and rate >= 0.2:
            add(
                "loop",
                tp,
                affected,
                rate,
                loop_baseline,
                f"{rate:.0%} of persons come back to {tp} after moving on",
                loop_examples.of(tp),
            )

    # issues soon after the goal
    issues = list(ctx.settings.post_goal_touchpoints)
    window_ms = int(ctx.settings.post_goal_days * 86_400_000)
    post_goal_examples = _Examples(
        ctx, POST_GOAL_EXAMPLES.format(**fmt), issues=issues, window_ms=window_ms
    )
    if converted_total >= support and issues:
        any_issue = ctx.rows(POST_GOAL_ANY_SQL.format(**fmt), issues=issues, window_ms=window_ms)[
            0
        ][0]
        baseline = any_issue / converted_total
        for tp, affected in ctx.rows(
            POST_GOAL_SQL.format(**fmt), issues=issues, window_ms=window_ms
        ):
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
                    post_goal_examples.of(tp),
                )

    # low feedback scores, attributed to what they are about
    scored = SCORED_SQL.format(**fmt)
    low = ctx.settings.low_score_max
    low_score_examples = _Examples(ctx, LOW_SCORE_EXAMPLES.format(scored=scored), low=low)
    scored_persons, low_persons = ctx.rows(LOW_SCORE_BASE_SQL.format(scored=scored), low=low)[0]
    baseline = low_persons / scored_persons if scored_persons else 0.0
    for tp, population, affected in ctx.rows(LOW_SCORE_SQL.format(scored=scored), low=low):
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
                low_score_examples.of(tp),
            )

    found.sort(key=lambda p: (KIND_ORDER.index(p.kind), -p.rate, p.touchpoint))
    return found


def _duration(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 60:.0f} min"
