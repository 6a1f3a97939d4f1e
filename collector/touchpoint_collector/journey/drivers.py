"""Drivers: which touchpoints go with reaching the goal, with an odds ratio that a handful of
persons cannot make extreme (+1 prior) and a 95% interval."""

from __future__ import annotations

import math

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import tally
from touchpoint_collector.journey.model import Driver

# Per person: converted or not, and the touchpoints they had before their first goal step
# (every touchpoint when not converted). A person's steps are in (ts, journey, step)
# order, so "before" is "at a lower index".
DRIVERS_SQL = """
SELECT t, sum(sign) AS persons, sumIf(sign, converted) AS a, sumIf(sign, NOT converted) AS b
FROM (
    SELECT sign, has(g, 1) AS converted, arrayFirstIndex(x -> x = 1, g) AS first_goal,
           arrayDistinct(if(first_goal = 0, tp, arraySlice(tp, 1, first_goal - 1))) AS had
    FROM {persons}
)
ARRAY JOIN had AS t
WHERE t != {{goal_code:UInt16}}
GROUP BY t
"""

Z95 = 1.96  # as docs/journey-map.md states it


def compute(
    ctx: BuildContext, flagged: set[str], persons: int, converted_total: int
) -> list[Driver]:
    drivers = []
    for code, _, a, b in tally(
        ctx, "drivers", lambda rows: DRIVERS_SQL.format(persons=rows), keys=1
    ):
        touchpoint = ctx.name(code)
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
