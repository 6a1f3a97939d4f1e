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
    """SELECT producing the step rows (the columns of ``journey_steps``).

    Each person's events are gathered into one array and sorted there (a small sort per
    person instead of one global sort); journeys start where the gap exceeds `gap_ms`,
    steps where the touchpoint changes or a journey starts, and one ARRAY JOIN over the
    step starts yields the steps. The array names carry an ``a_`` prefix because ClickHouse
    resolves aliases across the whole query: an array called ``ts`` would shadow the
    output column of the same name.
    """
    params["gap_ms"] = int(gap_days * 86_400_000)
    resolved = resolved_sql(event_filter(filters, params))
    person_ok = persona_filter(filters, params)
    return f"""
    SELECT
        person,
        toUInt32(a_jid[st]) AS journey,
        toUInt32(k - a_jfirst[k] + 1) AS step,
        a_tp[st] AS touchpoint,
        a_sg[st] AS stage,
        toInt8(indexOf({STAGE_ARRAY}, a_sg[st]) - 1) AS stage_idx,
        a_ch[st] AS channel,
        fromUnixTimestamp64Milli(a_ts[st], 'UTC') AS ts,
        a_ts[st] AS ts_ms,
        a_ts[en - 1] AS last_ms,
        toUInt32(en - st) AS repeats,
        arrayMax(arraySlice(a_sti, st, en - st)) AS stitched,
        a_sc[st] AS score
    FROM (
        SELECT
            person,
            arraySort(x -> (x.1, x.2, x.3), groupArray((
                toUnixTimestamp64Milli(timestamp), ingest_seq, message_id,
                touchpoint, stage, channel, score, toUInt8(person != person_id)
            ))) AS evs,
            arrayMap(x -> x.1, evs) AS a_ts,
            arrayMap(x -> x.4, evs) AS a_tp,
            arrayMap(x -> x.5, evs) AS a_sg,
            arrayMap(x -> x.6, evs) AS a_ch,
            arrayMap(x -> x.7, evs) AS a_sc,
            arrayMap(x -> x.8, evs) AS a_sti,
            length(evs) AS n,
            arrayMap(
                i -> toUInt8(i = 1 OR a_ts[i] - a_ts[i - 1] > {{gap_ms:Int64}}), range(1, n + 1)
            ) AS a_nj,
            arrayCumSum(a_nj) AS a_jid,
            arrayFilter(i -> a_nj[i] = 1 OR a_tp[i] != a_tp[i - 1], range(1, n + 1)) AS a_starts,
            arrayPushBack(arraySlice(a_starts, 2), n + 1) AS a_ends,
            -- for each step, the index of its journey's first step
            arrayFill(
                x -> x != 0,
                arrayMap((st, k) -> if(a_nj[st] = 1, k, 0), a_starts, arrayEnumerate(a_starts))
            ) AS a_jfirst
        FROM (
            SELECT person, person_id, timestamp, ingest_seq, message_id, touchpoint, stage,
                   channel, score
            FROM ({resolved})
            WHERE {person_ok}
        )
        GROUP BY person
    )
    ARRAY JOIN a_starts AS st, a_ends AS en, arrayEnumerate(a_starts) AS k
    """


def as_of_ms(filters: MapFilters, now: datetime) -> int:
    moment = filters.until or now
    return int(moment.timestamp() * 1000)
