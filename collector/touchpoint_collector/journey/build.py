"""``build_map``: materialise one set of filters' steps, run every view over them, assemble
the :class:`JourneyMap`. All counting happens in ClickHouse; Python only arranges results
and does the arithmetic on a handful of totals (rates, odds ratios)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from touchpoint_collector.journey import (
    coverage,
    drivers,
    flow,
    funnel,
    grid,
    pain,
    paths,
    transitions,
)
from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import settle_changes
from touchpoint_collector.journey.model import (
    BackwardMove,
    JourneyMap,
    MapFilters,
    MapSettings,
    PathVariant,
    StageRow,
)
from touchpoint_collector.store import Store
from touchpoint_schemas.taxonomy import Taxonomy


def build_map(
    store: Store,
    filters: MapFilters | None = None,
    settings: MapSettings | None = None,
    *,
    as_of: datetime | None = None,
    taxonomy: Taxonomy | None = None,
) -> JourneyMap:
    """The current-state journey map of the events matching `filters`.

    `as_of` stands in for "now" when `filters.until` is not set (tests, replays).
    """
    started = time.perf_counter()
    ctx = BuildContext(
        store=store,
        filters=filters or MapFilters(),
        settings=settings or MapSettings(),
        now=as_of or datetime.now(UTC),
    )
    try:
        ctx.materialise()
        return assemble(ctx, taxonomy, started)
    finally:
        ctx.drop()


def assemble(ctx: BuildContext, taxonomy: Taxonomy | None, started: float) -> JourneyMap:
    """Every view over `ctx`'s person rows, as one map (`started`: the build's start on
    ``time.perf_counter``, for ``build_seconds``).

    The views run in two lanes, each on its own client: the flow, drivers and pain points
    here; the stage funnel, the paths and the grid's own figures on another thread. Most
    of a small refresh's time is the engine parsing and planning ~50 statements, one at a
    time on one core; side by side, both cores share that work (at 1M events, a refresh
    with nothing new: 0.36 → 0.24 s; ``docs/journey-map.md``).
    """
    cov = coverage.compute(ctx)
    settle_changes(ctx)  # what both lanes read, made before they start
    with ThreadPoolExecutor(1, thread_name_prefix="map-views") as pool:
        other_lane = pool.submit(_other_lane, ctx.beside(), cov.journeys)
        pair_medians = transitions.medians(ctx)  # read by the flow's edges, and pain points
        nodes, edges, buckets = flow.compute(ctx, cov.persons)
        flagged = {n.id for n in nodes if n.cross_cutting}
        driver_rows = drivers.compute(ctx, flagged, cov.persons, cov.converted_persons)
        stage_of = buckets.touchpoint_stage
        pain_points = pain.compute(ctx, stage_of, cov.persons, cov.converted_persons, pair_medians)
        (stages, backward), (variants, to_goal), figures = other_lane.result()
    columns = grid.compute(
        figures,
        taxonomy or Taxonomy.standard(),
        stages,
        stage_of,
        buckets.persons_of,
        cov.persons,
        pain_points,
        driver_rows,
    )
    return JourneyMap(
        filters=ctx.filters,
        settings=ctx.settings,
        built_at=datetime.now(UTC),
        build_seconds=round(time.perf_counter() - started, 4),
        coverage=cov,
        stages=stages,
        backward_moves=backward,
        nodes=nodes,
        edges=edges,
        paths=variants,
        path_to_goal=to_goal,
        drivers=driver_rows,
        pain_points=pain_points,
        grid=columns,
    )


def _other_lane(
    ctx: BuildContext, journeys: int
) -> tuple[
    tuple[list[StageRow], list[BackwardMove]],
    tuple[list[PathVariant], PathVariant | None],
    grid.StageFigures,
]:
    """The second lane: the views that need no figures but coverage's, one after another
    (one failing stops the lane)."""
    return funnel.compute(ctx), paths.compute(ctx, journeys), grid.measure(ctx)
