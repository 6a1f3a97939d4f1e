"""Coverage: how many events, persons and journeys a map stands on, and how many were
stitched, ended, converted."""

from __future__ import annotations

from datetime import UTC, datetime

from touchpoint_collector.journey.context import BuildContext
from touchpoint_collector.journey.counting import extremes, tally
from touchpoint_collector.journey.model import Coverage


def compute(ctx: BuildContext) -> Coverage:
    (persons, events, converted, journeys, stitched, ended) = tally(
        ctx,
        "coverage",
        lambda rows: (
            f"""SELECT sum(sign), sum(sign * arraySum(rep)), sumIf(sign, has(g, 1)),
                   sum(sign * length(jf)), sum(sign * arraySum(jsti)),
                   sum(sign * arraySum({ctx.ended}))
            FROM {rows}"""
        ),
        keys=0,
    )[0]
    bounds = extremes(ctx)
    return Coverage(
        events=int(events),
        persons=int(persons),
        journeys=int(journeys),
        stitched_journeys=int(stitched),
        stitched_share=stitched / journeys if journeys else 0.0,
        ended_journeys=int(ended),
        in_progress_journeys=int(journeys - ended),
        converted_persons=int(converted),
        goal_rate=converted / persons if persons else 0.0,
        as_of=datetime.fromtimestamp(ctx.as_of_ms / 1000, UTC),
        end_after_seconds=ctx.end_after_ms / 1000,
        first_event=datetime.fromtimestamp(bounds[0] / 1000, UTC) if bounds else None,
        last_event=datetime.fromtimestamp(bounds[1] / 1000, UTC) if bounds else None,
    )
