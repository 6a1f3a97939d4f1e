"""Touchpoint flow: the directly-follows graph with START, END and IN_PROGRESS as nodes.

Every journey is a walk START -> steps -> END (ended) or IN_PROGRESS. Small touchpoints are
merged per stage into ``other:<stage>`` before counting, so the graph stays readable and
flow is still conserved at every node.
"""

from __future__ import annotations

from typing import Any

from touchpoint_collector.journey import transitions as pair_times
from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import Rekeyed, quantiles, tally
from touchpoint_collector.journey.model import Edge, Node
from touchpoint_collector.journey.steps import GOAL_FROM_HERE, STAGE_NAMES, at_journey_ends

START, END, IN_PROGRESS = "START", "END", "IN_PROGRESS"
TERMINAL_KIND = {START: "start", END: "end", IN_PROGRESS: "in_progress"}

# Per touchpoint and stage: steps, and persons (`occ` = 1 at a person's first step of it).
TOUCHPOINT_STATS_SQL = """
SELECT t, s, sum(sign) AS steps, sumIf(sign, occ = 1) AS persons
FROM {persons}
ARRAY JOIN tp AS t, sg AS s, arrayEnumerateUniq(tp) AS occ
GROUP BY t, s
"""

# Every pair of different touchpoints adjacent in a journey (a * 65536 + b), with how
# often.
NEIGHBOURS_SQL = """
SELECT pair, sum(sign) FROM {persons}
ARRAY JOIN arrayMap(
    (a, b, p) -> if(p > 1 AND a != b, toUInt32(a) * 65536 + b, 0),
    arrayPushFront(arrayPopBack(tp), toUInt16(0)), tp, pos
) AS pair
WHERE pair != 0
GROUP BY pair
"""

# The walk of each journey, START -> its steps' nodes -> END / IN_PROGRESS, as node codes
# (`Buckets.node_ids`; START 1, END 2, IN_PROGRESS 3): `nodes` one per step, `walk` the
# same with each journey's START and END or IN_PROGRESS appended (repeats 0 there),
# `pairs` (a * 65536 + b) one per step (from START or the previous step) and one per
# journey end, with the time between two steps (-1 when either end is not a step) and
# whether the journey has a goal step at the pair's second position or later.
WALK_SQL = """
SELECT
    arrayMap(t -> transform(t, {{tp_codes:Array(UInt16)}}, {{node_codes:Array(UInt16)}}, toUInt16(0)), tp) AS nodes,
    {ended} AS ended,
    arrayConcat(nodes, arrayWithConstant(length(jf), toUInt16(1)),
                arrayMap(e -> toUInt16(if(e = 1, 2, 3)), ended)) AS walk,
    arrayConcat(rep, arrayWithConstant(length(jf) * 2, toUInt32(0))) AS walk_repeats,
    arrayConcat(
        arrayMap((before, n, p) -> toUInt32(if(p = 1, 1, before)) * 65536 + n, arrayPushFront(arrayPopBack(nodes), toUInt16(0)), nodes, pos),
        arrayMap((n, e) -> toUInt32(n) * 65536 + if(e = 1, 2, 3), {last_nodes}, ended)
    ) AS pairs,
    arrayConcat(
        arrayMap((d, p) -> if(p = 1, toInt64(-1), d), arrayDifference(ts), pos),
        arrayWithConstant(length(jf), toInt64(-1))
    ) AS pair_ms,
    arrayConcat({goal_from_here}, arrayWithConstant(length(jf), toUInt8(0))) AS goal_after,
    sign
FROM {persons}
"""

# `occ` / `rocc`: a step's occurrence number at its node for the person, counted from the
# first / from the last step: occ = 2 marks persons with two or more steps there exactly
# once, occ = rocc = 1 their only step there.
NODES_SQL = """
SELECT node, sum(sign) AS steps, sumIf(sign, occ = 1) AS persons, sum(sign * r) AS events,
       sumIf(sign, occ = 2 OR (occ = 1 AND rocc = 1 AND r > 1)) AS repeaters
FROM ({walk})
ARRAY JOIN walk AS node, walk_repeats AS r, arrayEnumerateUniq(walk) AS occ,
           arrayReverse(arrayEnumerateUniq(arrayReverse(walk))) AS rocc
GROUP BY node
"""

EDGES_SQL = """
SELECT pair, sum(sign) AS transitions, sumIf(sign, occ = 1) AS persons,
       sumIf(sign, ms >= 0) AS timed, sumIf(sign, goal = 1 AND gocc = 1) AS goal_after
FROM ({walk})
ARRAY JOIN pairs AS pair, pair_ms AS ms, goal_after AS goal, arrayEnumerateUniq(pairs) AS occ,
           arrayEnumerateUniq(pairs, goal_after) AS gocc
GROUP BY pair
"""

# An edge's code from a touchpoint pair's (``transitions.PAIRS``): its timed transitions are
# the pair's under the touchpoints' node codes (``Buckets.node_ids``).
EDGE_OF_PAIR = """
toUInt32(transform(toUInt16(intDiv(pair, 65536)), {tp_codes:Array(UInt16)}, {node_codes:Array(UInt16)}, toUInt16(0))) * 65536
+ transform(toUInt16(pair % 65536), {tp_codes:Array(UInt16)}, {node_codes:Array(UInt16)}, toUInt16(0))
AS edge"""


class Buckets:
    """Which node each touchpoint is drawn as, and each node's stage."""

    def __init__(
        self, ctx: BuildContext, stats: list[tuple[int, int, int, int]], cross_cutting: set[str]
    ) -> None:
        steps_at: dict[str, dict[int, int]] = {}
        self.persons_of: dict[str, int] = {}
        for code, stage_idx, steps, persons in stats:
            touchpoint = ctx.name(code)
            steps_at.setdefault(touchpoint, {})[stage_idx] = int(steps)
            self.persons_of[touchpoint] = self.persons_of.get(touchpoint, 0) + int(persons)
        keep = cross_cutting | {ctx.settings.goal}
        self.node_of: dict[str, str] = {}
        self.stage_of: dict[str, int] = {}
        self.touchpoint_stage: dict[str, str] = {}
        """Each touchpoint's node stage name (where the grid and pain points put it)."""
        by_stage: dict[int, list[tuple[int, str]]] = {}
        for touchpoint, counts in steps_at.items():
            # the stage of most of its steps; ties: the earliest
            node_stage = max(counts, key=lambda idx: (counts[idx], -idx))
            by_stage.setdefault(node_stage, []).append((-self.persons_of[touchpoint], touchpoint))
            self.touchpoint_stage[touchpoint] = stage_name(node_stage)
        for node_stage, ranked in by_stage.items():
            ranked.sort()
            for rank, (_, touchpoint) in enumerate(ranked):
                if rank < ctx.settings.top_n or touchpoint in keep:
                    node = touchpoint
                else:
                    node = f"other:{stage_name(node_stage)}"
                self.node_of[touchpoint] = node
                self.stage_of[node] = node_stage
        self.node_ids = [START, END, IN_PROGRESS, *sorted(set(self.node_of.values()))]
        """A node's code is its position + 1 (START 1, END 2, IN_PROGRESS 3)."""
        self._ctx = ctx

    def params(self) -> dict[str, list[int]]:
        code_of = {node: i + 1 for i, node in enumerate(self.node_ids)}
        touchpoints = list(self.node_of)
        return {
            "tp_codes": [self._ctx.code(tp) for tp in touchpoints],
            "node_codes": [code_of[self.node_of[tp]] for tp in touchpoints],
        }


def stage_name(idx: int) -> str:
    return STAGE_NAMES[idx] if 0 <= idx < len(STAGE_NAMES) else ""


def touchpoint_stats(ctx: BuildContext) -> list[tuple[int, int, int, int]]:
    """(touchpoint code, stage index, steps, persons) for every touchpoint and stage."""
    return [
        (int(t), int(s), int(n), int(p))
        for t, s, n, p in tally(
            ctx, "touchpoints", lambda rows: TOUCHPOINT_STATS_SQL.format(persons=rows), keys=2
        )
    ]


def cross_cutting(ctx: BuildContext, seen: int) -> set[str]:
    """Touchpoints flagged in the taxonomy, or adjacent to most of the other touchpoints."""
    flagged = set(ctx.settings.cross_cutting)
    near: dict[int, set[int]] = {}
    for pair, _ in tally(
        ctx, "neighbours", lambda rows: NEIGHBOURS_SQL.format(persons=rows), keys=1
    ):
        a, b = divmod(int(pair), 65536)
        near.setdefault(a, set()).add(b)
        near.setdefault(b, set()).add(a)
    if seen >= 5:
        flagged |= {ctx.name(a) for a, n in near.items() if len(n) >= 0.6 * (seen - 1)}
    return flagged


def compute(ctx: BuildContext, persons_total: int) -> tuple[list[Node], list[Edge], Buckets]:
    stats = touchpoint_stats(ctx)
    flagged = cross_cutting(ctx, len({t for t, *_ in stats}))
    buckets = Buckets(ctx, stats, flagged)

    def walk(rows: str) -> str:
        return WALK_SQL.format(
            persons=rows,
            ended=ctx.ended,
            last_nodes=at_journey_ends("nodes"),
            goal_from_here=GOAL_FROM_HERE,
        )

    params: dict[str, Any] = dict(buckets.params())
    node_id = buckets.node_ids
    nodes = []
    for code, steps, persons, events, repeaters in tally(
        ctx, "nodes", lambda rows: NODES_SQL.format(walk=walk(rows)), keys=1, **params
    ):
        node = node_id[code - 1]
        if node in TERMINAL_KIND:
            kind, stage_idx = TERMINAL_KIND[node], -1
        else:
            kind = "other" if node.startswith("other:") else "touchpoint"
            stage_idx = buckets.stage_of.get(node, -1)
        nodes.append(
            Node(
                id=node,
                kind=kind,
                stage=stage_name(stage_idx),
                persons=int(persons),
                steps=int(steps),
                events=int(events),
                reach=persons / persons_total if persons_total else 0.0,
                repeat_rate=repeaters / persons if persons else 0.0,
                cross_cutting=node in flagged,
            )
        )
    order = {START: (0, 0), END: (2, 0), IN_PROGRESS: (2, 1)}

    def stage_rank(node: str) -> int:
        """Stage order; a touchpoint with no stage (rows written by hand or by a replay:
        stage -1) after every stage."""
        idx = buckets.stage_of.get(node, -1)
        return idx if idx >= 0 else len(STAGE_NAMES)

    nodes.sort(
        key=lambda n: (
            *order.get(n.id, (1, stage_rank(n.id))),
            -n.persons,
            n.id,
        )
    )
    out_total: dict[str, int] = {}
    # Run after ``pair_times.medians``: the edges' times are its values under node keys.
    node_of_code = dict(zip(params["tp_codes"], params["node_codes"], strict=True))
    times = {
        int(edge): median_p90
        for (edge,), (_, median_p90) in quantiles(
            ctx,
            "edge_times",
            pair_times.values,
            ["edge"],
            (0.5, 0.9),
            of=Rekeyed(
                pair_times.NAME,
                EDGE_OF_PAIR,
                lambda key: (
                    node_of_code.get(key[0] // 65536, 0) * 65536
                    + node_of_code.get(key[0] % 65536, 0),
                ),
            ),
            **params,
        ).items()
    }
    raw_edges = [
        (node_id[pair // 65536 - 1], node_id[pair % 65536 - 1], *rest, times.get(pair, (0, 0)))
        for pair, *rest in tally(
            ctx, "edges", lambda rows: EDGES_SQL.format(walk=walk(rows)), keys=1, **params
        )
    ]
    for src, _dst, transitions, *_ in raw_edges:
        out_total[src] = out_total.get(src, 0) + int(transitions)
    edges = [
        Edge(
            source=src,
            target=dst,
            transitions=int(transitions),
            persons=int(persons),
            p_next=transitions / out_total[src],
            median_seconds=median_ms / 1000 if timed else None,
            p90_seconds=p90_ms / 1000 if timed else None,
            goal_after_persons=int(goal_after),
            goal_after_rate=goal_after / persons if persons else 0.0,
        )
        for src, dst, transitions, persons, timed, goal_after, (median_ms, p90_ms) in raw_edges
    ]
    edges.sort(key=lambda e: (-e.transitions, e.source, e.target))
    return nodes, edges, buckets
