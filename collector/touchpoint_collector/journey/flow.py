"""Touchpoint flow: the directly-follows graph with START, END and IN_PROGRESS as nodes.

Every journey is a walk START -> steps -> END (ended) or IN_PROGRESS. Small touchpoints are
merged per stage into ``other:<stage>`` before counting, so the graph stays readable and
flow is still conserved at every node.
"""

from __future__ import annotations

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.model import Edge, Node
from touchpoint_collector.journey.steps import STAGE_NAMES

START, END, IN_PROGRESS = "START", "END", "IN_PROGRESS"
TERMINAL_KIND = {START: "start", END: "end", IN_PROGRESS: "in_progress"}

TOUCHPOINT_STATS_SQL = """
SELECT touchpoint, argMax(stage_idx, (n, -stage_idx)) AS node_stage, sum(n) AS steps,
       any(persons) AS persons
FROM (
    SELECT touchpoint, stage_idx, count() AS n
    FROM {steps} GROUP BY touchpoint, stage_idx
) AS by_stage
INNER JOIN (
    SELECT touchpoint, uniqExact(person) AS persons FROM {steps} GROUP BY touchpoint
) AS p USING touchpoint
GROUP BY touchpoint
"""

NEIGHBOURS_SQL = """
SELECT a, uniqExact(b) FROM (
    SELECT touchpoint AS a, leadInFrame(touchpoint, 1, '') OVER w AS b FROM {steps}
    WINDOW w AS (PARTITION BY person, journey ORDER BY step ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
    UNION ALL
    SELECT touchpoint AS a, lagInFrame(touchpoint, 1, '') OVER w AS b FROM {steps}
    WINDOW w AS (PARTITION BY person, journey ORDER BY step ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE b != '' AND b != a
GROUP BY a
"""

WALK_SQL = """
SELECT person, journey, toUInt32(0) AS pos, 'START' AS node, toInt64(0) AS ts_ms,
       toUInt8(0) AS is_step, toUInt32(0) AS repeats
FROM {journeys}
UNION ALL
SELECT person, journey, step AS pos,
       transform(touchpoint, {{bucket_from:Array(String)}}, {{bucket_to:Array(String)}}, touchpoint) AS node,
       ts_ms, toUInt8(1) AS is_step, repeats
FROM {steps}
UNION ALL
SELECT person, journey, steps + 1 AS pos, if(ended = 1, 'END', 'IN_PROGRESS') AS node,
       toInt64(0) AS ts_ms, toUInt8(0) AS is_step, toUInt32(0) AS repeats
FROM {journeys}
"""

NODES_SQL = """
SELECT node, uniqExact(person) AS persons, sum(n) AS steps, sum(events) AS events,
       uniqExactIf(person, n >= 2 OR max_repeats > 1) AS repeaters
FROM (
    SELECT person, node, count() AS n, sum(repeats) AS events, max(repeats) AS max_repeats
    FROM ({walk})
    GROUP BY person, node
)
GROUP BY node
"""

EDGES_SQL = """
SELECT src, dst, count() AS transitions, uniqExact(e.person) AS persons,
       countIf(both_steps) AS timed,
       quantileExactIf(0.5)(dst_ms - src_ms, both_steps) AS median_ms,
       quantileExactIf(0.9)(dst_ms - src_ms, both_steps) AS p90_ms,
       uniqExactIf(e.person, dst_is_step = 1 AND j.last_goal_step >= e.pos + 1) AS goal_after
FROM (
    SELECT person, journey, pos, node AS src, ts_ms AS src_ms,
           leadInFrame(node, 1, '') OVER w AS dst,
           leadInFrame(ts_ms, 1, 0) OVER w AS dst_ms,
           leadInFrame(is_step, 1, 0) OVER w AS dst_is_step,
           is_step = 1 AND dst_is_step = 1 AS both_steps
    FROM ({walk})
    WINDOW w AS (PARTITION BY person, journey ORDER BY pos ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
) AS e
INNER JOIN {journeys} AS j ON e.person = j.person AND e.journey = j.journey
WHERE dst != ''
GROUP BY src, dst
"""


class Buckets:
    """Which node each touchpoint is drawn as, and each node's stage."""

    def __init__(self, ctx: BuildContext, cross_cutting: set[str]) -> None:
        stats = ctx.rows(TOUCHPOINT_STATS_SQL.format(steps=ctx.steps))
        keep = cross_cutting | {ctx.settings.goal}
        self.node_of: dict[str, str] = {}
        self.stage_of: dict[str, int] = {}
        self.touchpoint_stage: dict[str, str] = {}
        """Each touchpoint's node stage name (where the grid and pain points put it)."""
        self.persons_of: dict[str, int] = {}
        by_stage: dict[int, list[tuple[int, str]]] = {}
        for touchpoint, node_stage, _steps, persons in stats:
            by_stage.setdefault(node_stage, []).append((-int(persons), touchpoint))
            self.touchpoint_stage[touchpoint] = stage_name(node_stage)
            self.persons_of[touchpoint] = int(persons)
        for node_stage, ranked in by_stage.items():
            ranked.sort()
            for rank, (_, touchpoint) in enumerate(ranked):
                if rank < ctx.settings.top_n or touchpoint in keep:
                    node = touchpoint
                else:
                    node = f"other:{stage_name(node_stage)}"
                self.node_of[touchpoint] = node
                self.stage_of[node] = node_stage

    def params(self) -> dict[str, list[str]]:
        merged = {tp: node for tp, node in self.node_of.items() if tp != node}
        return {"bucket_from": list(merged), "bucket_to": list(merged.values())}


def stage_name(idx: int) -> str:
    return STAGE_NAMES[idx] if 0 <= idx < len(STAGE_NAMES) else ""


def cross_cutting(ctx: BuildContext) -> set[str]:
    """Touchpoints flagged in the taxonomy, or adjacent to most of the other touchpoints."""
    flagged = set(ctx.settings.cross_cutting)
    neighbours = dict(ctx.rows(NEIGHBOURS_SQL.format(steps=ctx.steps)))
    total = ctx.rows(f"SELECT uniqExact(touchpoint) FROM {ctx.steps}")[0][0]
    if total >= 5:
        flagged |= {tp for tp, n in neighbours.items() if n >= 0.6 * (total - 1)}
    return flagged


def compute(ctx: BuildContext, persons_total: int) -> tuple[list[Node], list[Edge], Buckets]:
    flagged = cross_cutting(ctx)
    buckets = Buckets(ctx, flagged)
    walk = WALK_SQL.format(steps=ctx.steps, journeys=ctx.journeys)
    params = buckets.params()
    nodes = []
    for node, persons, steps, events, repeaters in ctx.rows(NODES_SQL.format(walk=walk), **params):
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
    nodes.sort(
        key=lambda n: (
            *order.get(n.id, (1, buckets.stage_of.get(n.id, -1))),
            -n.persons,
            n.id,
        )
    )
    out_total: dict[str, int] = {}
    raw_edges = ctx.rows(EDGES_SQL.format(walk=walk, journeys=ctx.journeys), **params)
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
        for src, dst, transitions, persons, timed, median_ms, p90_ms, goal_after in raw_edges
    ]
    edges.sort(key=lambda e: (-e.transitions, e.source, e.target))
    return nodes, edges, buckets
