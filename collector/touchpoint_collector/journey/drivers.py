"""Drivers: which touchpoints go with reaching the goal, with an odds ratio that a handful of
persons cannot make extreme (+1 prior) and a 95% interval."""

from __future__ import annotations

import math

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.model import Driver

DRIVERS_SQL = """
WITH per_person AS (
    SELECT person,
           countIf({is_goal}) > 0 AS converted,
           minIf((ts_ms, journey, step), {is_goal}) AS first_goal
    FROM {steps}
    GROUP BY person
),
had AS (
    SELECT DISTINCT s.person AS person, s.touchpoint AS touchpoint, p.converted AS converted
    FROM {steps} AS s
    INNER JOIN per_person AS p ON s.person = p.person
    WHERE NOT p.converted OR (s.ts_ms, s.journey, s.step) < p.first_goal
)
SELECT touchpoint, countIf(converted) AS a, countIf(NOT converted) AS b,
       (SELECT count() FROM per_person) AS persons,
       (SELECT countIf(converted) FROM per_person) AS converted_total
FROM had
WHERE touchpoint != {{goal_tp:String}}
GROUP BY touchpoint
"""

Z95 = 1.96  # as docs/journey-map.md states it


def compute(ctx: BuildContext, flagged: set[str]) -> list[Driver]:
    drivers = []
    for touchpoint, a, b, persons, converted_total in ctx.rows(
        DRIVERS_SQL.format(steps=ctx.steps, is_goal=ctx.is_goal)
    ):
        c = converted_total - a
        d = (persons - converted_total) - b
        if a + b < ctx.settings.min_support:
            continue
        odds = ((a + 1) * (d + 1)) / ((b + 1) * (c + 1))
        spread = Z95 * math.sqrt(1 / (a + 1) + 1 / (b + 1) + 1 / (c + 1) + 1 / (d + 1))
        drivers.append(
            Driver(
                touchpoint=touchpoint,
                persons_with=int(a + b),
                persons_without=int(c + d),
                goal_rate_with=a / (a + b) if a + b else None,
                goal_rate_without=c / (c + d) if c + d else None,
                odds_ratio=odds,
                ci_low=math.exp(math.log(odds) - spread),
                ci_high=math.exp(math.log(odds) + spread),
                cross_cutting=touchpoint in flagged,
            )
        )
    drivers.sort(key=lambda d: (-d.odds_ratio, d.touchpoint))
    return drivers
