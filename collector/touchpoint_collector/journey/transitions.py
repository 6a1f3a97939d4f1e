"""Transition times: the time from each step to the next in the same journey, per pair of
touchpoints. Two views read them, so they are counted once: the pain points' slow steps
(their medians per touchpoint pair) and the flow's edge times (the same values under the
edges' node keys, ``counting.Rekeyed``)."""

from __future__ import annotations

from typing import Any

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import quantiles

NAME = "slow_times"
"""The view's name in a kept map's ledger."""

# Adjacent steps of a journey (a * 65536 + b) and the time between them (ms).
PAIRS = """
SELECT person, sign,
       arrayFilter(
           (x, p) -> p > 1,
           arrayMap((a, b) -> toUInt32(a) * 65536 + b, arrayPushFront(arrayPopBack(tp), toUInt16(0)), tp),
           pos
       ) AS pairs,
       arrayFilter((d, p) -> p > 1, arrayDifference(ts), pos) AS pair_ms
FROM {persons}
"""

# One row per transition, for ``counting.quantiles``.
TIMES_SQL = """
SELECT pair, ms AS v, sign
FROM ({pairs})
ARRAY JOIN pairs AS pair, pair_ms AS ms
"""


def values(rows: str) -> str:
    """The transitions of the person rows `rows`, one row each (``pair``, ``v``, ``sign``)."""
    return TIMES_SQL.format(pairs=PAIRS.format(persons=rows))


def medians(ctx: BuildContext) -> dict[tuple[Any, ...], tuple[int, list[int]]]:
    """Per touchpoint pair (``(a * 65536 + b,)``): transitions, and their median (ms)."""
    return quantiles(ctx, NAME, values, ["pair"], (0.5,))
