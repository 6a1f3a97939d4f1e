"""``journey_steps`` (the analysts' table, rebuilt by a refreshable view with its own SQL)
must hold exactly the steps the map is computed from: the person rows a build materialises,
one row per step. Two definitions of the same steps, held together on generated logs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import given

from tests.collector.journey.generators import Scenario, clear, scenarios, write_log
from tests.collector.journey.test_reference_vs_sql import examples
from tests.conftest import scale
from touchpoint_collector.journey import refresh
from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.store import Store


def steps_of_person_rows(store: Store, scenario: Scenario) -> list[tuple[Any, ...]]:
    ctx = BuildContext(
        store=store, filters=scenario.filters, settings=scenario.settings, now=datetime.now(UTC)
    )
    ctx.materialise()
    try:
        rows = ctx.rows(f"SELECT person, tp, sg, ch, ts, lt, rep, sc, jn, pos FROM {ctx.persons}")
    finally:
        ctx.drop()
    steps = []
    for person, tp, sg, ch, ts, lt, rep, sc, jn, pos in rows:
        for k in range(len(tp)):
            score = None if sc[k] is None or math.isnan(sc[k]) else round(float(sc[k]), 3)
            steps.append(
                (
                    person,
                    jn[k],
                    pos[k],
                    ctx.touchpoints[tp[k] - 1],
                    sg[k],
                    ctx.channels[ch[k] - 1],
                    ts[k],
                    lt[k],
                    rep[k],
                    score,
                )
            )
    return sorted(steps)


@given(scenario=scenarios(filtered=False))
@examples(scale(15))
def test_journey_steps_holds_the_steps_of_the_person_rows(store: Store, scenario: Scenario) -> None:
    clear(store)
    write_log(store, scenario.events)
    refresh.install(store, scenario.settings)
    refresh.refresh_now(store)
    table = sorted(
        (
            person,
            journey,
            step,
            tp,
            stage_idx,
            channel,
            ts_ms,
            last_ms,
            repeats,
            None if score is None else round(float(score), 3),
        )
        for person, journey, step, tp, stage_idx, channel, ts_ms, last_ms, repeats, score in store.query(
            "SELECT person, journey, step, touchpoint, stage_idx, channel, ts_ms, last_ms, "
            "repeats, score FROM journey_steps"
        ).result_rows
    )
    assert table == steps_of_person_rows(store, scenario)
