"""A map build's working state in ClickHouse: the steps and journeys of one set of filters,
materialised once into per-build tables that every view then reads.

MergeTree, not Memory: a build over tens of millions of events spills to disk instead of
failing (with ``max_bytes_before_external_*`` set for its sorts and aggregations).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from touchpoint_collector.journey.model import MapFilters, MapSettings
from touchpoint_collector.journey.steps import as_of_ms, steps_sql
from touchpoint_collector.store import Store, quote_ident

DAY_MS = 86_400_000
SPILL_SETTINGS: dict[str, Any] = {
    "max_bytes_before_external_group_by": 1 << 30,
    "max_bytes_before_external_sort": 1 << 30,
    "final": 1,
    # `max(last_ms) AS last_ms` must aggregate the column, not refer to itself.
    "prefer_column_name_to_alias": 1,
}


@dataclass
class BuildContext:
    store: Store
    filters: MapFilters
    settings: MapSettings
    now: datetime
    prefix: str = field(default_factory=lambda: f"_map_{uuid.uuid4().hex[:12]}")
    end_after_ms: int = 0
    as_of_ms: int = 0
    timings: list[tuple[str, float]] = field(default_factory=list)
    """(query's first words, seconds) for every query of the build: where the time goes."""

    @property
    def steps(self) -> str:
        return quote_ident(f"{self.prefix}_steps")

    @property
    def journeys(self) -> str:
        return quote_ident(f"{self.prefix}_journeys")

    def params(self, **extra: Any) -> dict[str, Any]:
        goal = self.settings.goal
        goal_stage = goal.removeprefix("stage:") if goal.startswith("stage:") else ""
        goal_touchpoint = "" if goal_stage else goal
        return {
            "goal_tp": goal_touchpoint,
            "goal_stage": goal_stage,
            "as_of_ms": self.as_of_ms,
            "end_after_ms": self.end_after_ms,
            **extra,
        }

    @property
    def is_goal(self) -> str:
        """SQL: does a step (columns touchpoint, stage) match the goal?"""
        return "(touchpoint = {goal_tp:String} AND {goal_tp:String} != '' OR stage = {goal_stage:String} AND {goal_stage:String} != '')"

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        started = time.perf_counter()
        result = self.store.query(sql, parameters=self.params(**params), settings=SPILL_SETTINGS)
        rows = [tuple(r) for r in result.result_rows]
        self._timed(sql, started)
        return rows

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        self.store.command(sql, parameters=params, settings=SPILL_SETTINGS)
        self._timed(sql, started)

    def _timed(self, sql: str, started: float) -> None:
        label = " ".join(sql.split())[:70]
        self.timings.append((label, time.perf_counter() - started))

    # -- materialisation ---------------------------------------------------------------

    def materialise(self) -> None:
        params: dict[str, Any] = {}
        select = steps_sql(self.filters, self.settings.gap_days, params)
        # Same columns as journey_steps (schemas/clickhouse/0004): one definition of a step.
        self.command(f"CREATE TABLE {self.steps} AS journey_steps")
        self.command(f"INSERT INTO {self.steps} {select}", params)
        self.as_of_ms = as_of_ms(self.filters, self.now)
        self.end_after_ms = self._end_after_ms()
        self.command(
            f"""CREATE TABLE {self.journeys} ENGINE = MergeTree ORDER BY (person, journey) AS
            SELECT
                person,
                journey,
                toUInt32(count()) AS steps,
                min(ts_ms) AS first_ms,
                max(last_ms) AS last_ms,
                max(stitched) AS stitched,
                toUInt8({{as_of_ms:Int64}} - max(last_ms) > {{end_after_ms:Int64}}) AS ended,
                toUInt32(minIf(step, {self.is_goal})) AS first_goal_step,
                toUInt32(maxIf(step, {self.is_goal})) AS last_goal_step,
                argMax(stage_idx, step) AS last_stage_idx,
                argMax(touchpoint, step) AS last_touchpoint
            FROM {self.steps}
            GROUP BY person, journey""",
            self.params(),
        )

    def _end_after_ms(self) -> int:
        if self.settings.end_after_days is not None:
            return int(self.settings.end_after_days * DAY_MS)
        rows = self.rows(
            f"""SELECT count(), quantileExact(0.95)(gap) FROM (
                SELECT ts_ms - lagInFrame(ts_ms, 1, 0) OVER w AS gap, step
                FROM {self.steps}
                WINDOW w AS (PARTITION BY person, journey ORDER BY step
                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            ) WHERE step > 1"""
        )
        count, q95 = rows[0]
        gap_ms = int(self.settings.gap_days * DAY_MS)
        if not count:
            return min(DAY_MS, gap_ms)
        return int(min(max(int(q95), DAY_MS), gap_ms))

    def drop(self) -> None:
        for table in (self.steps, self.journeys):
            self.store.command(f"DROP TABLE IF EXISTS {table} SYNC")
