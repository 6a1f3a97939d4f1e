"""Comparing a map with the previous period of the same length: what changed.

Edges that appeared or vanished, node reach that moved, and stage conversions that shifted
more than chance explains (two-proportion z-test, |z| >= 1.96).
"""

from __future__ import annotations

import math

from touchpoint_collector.journey.model import (
    Comparison,
    EdgeChange,
    JourneyMap,
    NodeDelta,
    StageShift,
)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float | None:
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return None
    return (x1 / n1 - x2 / n2) / spread


def compare(now: JourneyMap, before: JourneyMap) -> Comparison:
    edges_now = {(e.source, e.target): e for e in now.edges}
    edges_before = {(e.source, e.target): e for e in before.edges}
    new = [
        EdgeChange(source=s, target=t, persons_now=e.persons, persons_before=0)
        for (s, t), e in edges_now.items()
        if (s, t) not in edges_before
    ]
    vanished = [
        EdgeChange(source=s, target=t, persons_now=0, persons_before=e.persons)
        for (s, t), e in edges_before.items()
        if (s, t) not in edges_now
    ]
    nodes_before = {n.id: n for n in before.nodes}
    deltas = []
    for node in now.nodes:
        old = nodes_before.get(node.id)
        deltas.append(
            NodeDelta(
                node=node.id,
                persons_now=node.persons,
                persons_before=old.persons if old else 0,
                reach_now=node.reach,
                reach_before=old.reach if old else 0.0,
            )
        )
    shifts = []
    for row_now, row_before in zip(now.stages, before.stages, strict=True):
        z = two_proportion_z(
            row_now.converted_persons,
            row_now.persons,
            row_before.converted_persons,
            row_before.persons,
        )
        shifts.append(
            StageShift(
                stage=row_now.stage,
                rate_now=row_now.conversion_rate,
                rate_before=row_before.conversion_rate,
                z=z,
                significant=z is not None and abs(z) >= 1.96,
            )
        )
    new.sort(key=lambda e: (-e.persons_now, e.source, e.target))
    vanished.sort(key=lambda e: (-e.persons_before, e.source, e.target))
    return Comparison(
        previous_since=before.filters.since.isoformat() if before.filters.since else "",
        previous_until=before.filters.until.isoformat() if before.filters.until else "",
        persons_before=before.coverage.persons,
        new_edges=new,
        vanished_edges=vanished,
        node_deltas=deltas,
        stage_shifts=shifts,
    )
