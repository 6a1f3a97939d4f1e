"""Steps: the relation every view of the map is computed from.

From filtered, deduplicated events to one row per step of a journey, in ClickHouse:
identities resolve each event to its person (two hops through ``identities``), window
functions split each person's ordered events into journeys at long inactivity gaps and
collapse runs of the same touchpoint. Definitions: ``docs/journey-map.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from touchpoint_collector.journey.model import MapFilters

STAGE_NAMES: Final = ("awareness", "consideration", "purchase", "retention", "advocacy")
STAGE_ARRAY: Final = "['awareness', 'consideration', 'purchase', 'retention', 'advocacy']"

_ORDER: Final = "ev_ms, ingest_seq, message_id"

LINKS_SQL: Final = """
    SELECT anonymous_id AS from_id, argMin(user_id, (first_seen, user_id)) AS to_id
    FROM identities FINAL
    GROUP BY anonymous_id
"""


def resolved_sql(where: str) -> str:
    """Events (deduplicated, filtered by `where`) with their resolved person."""
    return f"""
    SELECT
        e.*,
        if(l2.to_id != '', l2.to_id, if(l1.to_id != '', l1.to_id, e.person_id)) AS person
    FROM (SELECT * FROM events FINAL WHERE {where}) AS e
    LEFT JOIN ({LINKS_SQL}) AS l1 ON e.person_id = l1.from_id
    LEFT JOIN ({LINKS_SQL}) AS l2 ON l1.to_id = l2.from_id
    SETTINGS join_use_nulls = 0
    """


def event_filter(filters: MapFilters, params: dict[str, Any]) -> str:
    """The WHERE clause for the map's events; fills `params` for the bound values."""
    clauses = ["touchpoint != ''"]
    if filters.since is not None:
        params["since"] = filters.since
        clauses.append("timestamp >= {since:DateTime64(3, 'UTC')}")
    if filters.until is not None:
        params["until"] = filters.until
        clauses.append("timestamp < {until:DateTime64(3, 'UTC')}")
    if filters.sources:
        params["sources"] = list(filters.sources)
        clauses.append("source IN {sources:Array(String)}")
    if filters.channels:
        params["channels"] = list(filters.channels)
        clauses.append("channel IN {channels:Array(String)}")
    for i, (key, value) in enumerate(filters.properties):
        params[f"pk{i}"], params[f"pv{i}"] = key, value
        clauses.append(
            f"if(JSONType(properties, {{pk{i}:String}}) = 'String', "
            f"JSONExtractString(properties, {{pk{i}:String}}), "
            f"JSONExtractRaw(properties, {{pk{i}:String}})) = {{pv{i}:String}}"
        )
    return " AND ".join(clauses)


def persona_filter(filters: MapFilters, params: dict[str, Any]) -> str:
    """A condition on `person` for the persona filter (TRUE when there is none)."""
    if filters.persona is None:
        return "1"
    params["persona"] = filters.persona
    identifies = resolved_sql("type = 'identify' AND JSONExtractString(traits, 'persona') != ''")
    return f"""person IN (
        SELECT person FROM (
            SELECT person,
                   argMax(JSONExtractString(traits, 'persona'), (timestamp, ingest_seq)) AS persona
            FROM ({identifies})
            GROUP BY person
        ) WHERE persona = {{persona:String}}
    )"""


def steps_sql(filters: MapFilters, gap_days: float, params: dict[str, Any]) -> str:
    """SELECT producing the step rows (columns: :data:`STEP_COLUMNS`)."""
    params["gap_ms"] = int(gap_days * 86_400_000)
    resolved = resolved_sql(event_filter(filters, params))
    person_ok = persona_filter(filters, params)
    # Every window below has the same partition and order (the person's events in time
    # order), so ClickHouse sorts once; step numbers within a journey come from a running
    # step counter minus its value where the journey began.
    return f"""
    SELECT
        person,
        journey,
        toUInt32(gstep - jstart + 1) AS step,
        argMin(ev_touchpoint, ({_ORDER})) AS touchpoint,
        argMin(ev_stage, ({_ORDER})) AS stage,
        toInt8(indexOf({STAGE_ARRAY}, argMin(ev_stage, ({_ORDER}))) - 1) AS stage_idx,
        argMin(ev_channel, ({_ORDER})) AS channel,
        fromUnixTimestamp64Milli(min(ev_ms), 'UTC') AS ts,
        min(ev_ms) AS ts_ms,
        max(ev_ms) AS last_ms,
        toUInt32(count()) AS repeats,
        max(stitched) AS stitched,
        argMin(ev_score, ({_ORDER})) AS score
    FROM (
        SELECT *,
            max(if(new_journey, gstep, 0)) OVER w AS jstart
        FROM (
            SELECT *,
                toUInt32(sum(new_journey) OVER w) AS journey,
                sum(new_journey OR ev_touchpoint != prev_tp) OVER w AS gstep
            FROM (
                SELECT
                    person,
                    touchpoint AS ev_touchpoint,
                    stage AS ev_stage,
                    channel AS ev_channel,
                    score AS ev_score,
                    ingest_seq,
                    message_id,
                    toUnixTimestamp64Milli(timestamp) AS ev_ms,
                    toUInt8(person != person_id) AS stitched,
                    lagInFrame(ev_touchpoint, 1, '') OVER w AS prev_tp,
                    (row_number() OVER w = 1)
                        OR (ev_ms - lagInFrame(ev_ms, 1, 0) OVER w > {{gap_ms:Int64}})
                        AS new_journey
                FROM ({resolved})
                WHERE {person_ok}
                WINDOW w AS (PARTITION BY person ORDER BY {_ORDER} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            )
            WINDOW w AS (PARTITION BY person ORDER BY {_ORDER} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )
        WINDOW w AS (PARTITION BY person ORDER BY {_ORDER} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    GROUP BY person, journey, gstep, jstart
    """


def as_of_ms(filters: MapFilters, now: datetime) -> int:
    moment = filters.until or now
    return int(moment.timestamp() * 1000)
