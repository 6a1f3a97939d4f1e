"""Steps: the relation every view of the map is computed from.

From filtered, deduplicated events to each person's journeys and steps, in ClickHouse:
identities resolve each event to its person (two hops through ``identities``), each
person's events are ordered, split into journeys at long inactivity gaps, and runs of the
same touchpoint collapse into steps. Definitions: ``docs/journey-map.md``.

Two shapes of the same steps:

* :func:`persons_sql`, one row per person holding their steps as parallel arrays: what a
  map build computes every view from. Counting distinct persons then needs no hash set
  of person ids (a person is one row), and neighbouring steps are neighbouring array
  elements, so no view needs a window function or a sort.
* :func:`steps_sql`, one row per step: the ``journey_steps`` table analysts query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from touchpoint_collector.journey.model import MapFilters

STAGE_NAMES: Final = ("awareness", "consideration", "purchase", "retention", "advocacy")
STAGE_ARRAY: Final = "['awareness', 'consideration', 'purchase', 'retention', 'advocacy']"
PERSON_COLUMNS: Final = (
    "person, ids, tp, sg, ch, ts, lt, rep, sc, jn, pos, g, jf, jl, jlast, jsti, fds, fdt, lp, pgh, "
    "dws, dwm"
)
"""The columns of a person row (:func:`persons_sql`): what every view reads."""
EVENT_COLUMNS: Final = "ev_ts, ev_seq, ev_mid, ev_tp, ev_sg, ev_ch, ev_sc, ev_sti"
KEPT_COLUMNS: Final = f"{PERSON_COLUMNS}, {EVENT_COLUMNS}"
"""A kept map's rows also hold their events (``with_events``): new ones are merged in
without reading the person's events again, and a resend is told by its message id."""


# What views ask of a person row's journeys, as expressions reading each array once. A
# lambda mapped over the journeys that reads a step array (``tp[f + l - 1]``,
# ``arraySlice(g, f, l)``), or one mapped over the steps that reads a journey array
# (``last_goal[j]``), copies the array it reads once per element it maps: journeys times
# steps values, 1.9 GiB for one person with 100,000 events in 10,000 journeys.


def at_journey_ends(column: str) -> str:
    """SQL over a person row: the values of `column` (one per step) at each journey's last
    step, one per journey."""
    return (
        f"arrayFilter((x, e) -> e = 1, {column}, "
        "arrayPushBack(arrayPopFront(arrayMap(p -> toUInt8(p = 1), pos)), toUInt8(1)))"
    )


_GOAL_JOURNEYS: Final = "arrayMap((x, j) -> if(x = 1, j, toUInt32(0)), g, jn)"
"""Per step of a person row, its journey's number when it is a goal step, else 0."""

GOAL_SO_FAR: Final = (
    f"arrayMap((a, j) -> toUInt8(a = j), arrayFill(x -> x != 0, {_GOAL_JOURNEYS}), jn)"
)
"""SQL over a person row: per step, 1 when its journey has a goal step at it or earlier (the
latest goal step up to it is in its journey)."""

GOAL_FROM_HERE: Final = (
    f"arrayMap((a, j) -> toUInt8(a = j), arrayReverseFill(x -> x != 0, {_GOAL_JOURNEYS}), jn)"
)
"""SQL over a person row: per step, 1 when its journey has a goal step at it or later (the
first goal step at or after it is in its journey)."""


def links_sql(scope: str | None = None) -> str:
    """Each anonymous id's link (its earliest-seen user id), for the anonymous ids in the
    SQL set `scope` (all when None)."""
    where = "" if scope is None else f"WHERE anonymous_id IN {scope}"
    return f"""
    SELECT anonymous_id AS from_id, argMin(user_id, (first_seen, user_id)) AS to_id
    FROM identities FINAL
    {where}
    GROUP BY anonymous_id
    """


LINKS_SQL: Final = links_sql()


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
        clauses.append(property_match(f"{{pk{i}:String}}", f"{{pv{i}:String}}"))
    return " AND ".join(clauses)


JSON_NUMBER: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
JSON_INTEGER: Final = r"^-?(0|[1-9][0-9]*)$"


def property_match(key: str, value: str) -> str:
    """SQL: the event's property `key` matches the text `value` (both SQL strings).

    A string matches as itself. A number matches a `value` written as a JSON number of
    the same value: ``2`` matches 2 and 2.0, ``1e20`` matches 1e20 and
    100000000000000000000 (integers exactly, other numbers as 64-bit floats), since
    senders do not agree on how to write one (JavaScript has no integers). Anything else
    (true, false, null, arrays, objects) matches its JSON text as ClickHouse writes it.
    An event without the key matches nothing, not even an empty `value`.
    """
    kind = f"JSONType(properties, {key})"
    raw = f"JSONExtractRaw(properties, {key})"
    return f"""(JSONHas(properties, {key}) AND multiIf(
            {kind} = 'String', JSONExtractString(properties, {key}) = {value},
            {kind} IN ('Int64', 'UInt64', 'Double'), match({value}, '{JSON_NUMBER}') AND if(
                {kind} != 'Double' AND match({value}, '{JSON_INTEGER}'),
                ifNull(JSONExtract(properties, {key}, 'Int128') = toInt128OrNull({value}), 0),
                JSONExtractFloat(properties, {key}) = toFloat64OrZero({value})
            ),
            {raw} = {value}
        ))"""


def persona_filter(filters: MapFilters, params: dict[str, Any], id_scope: str | None = None) -> str:
    """A condition on `person` for the persona filter (TRUE when there is none); only the
    identify calls of the stored ids in the SQL set `id_scope` are read when it is given."""
    if filters.persona is None:
        return "1"
    params["persona"] = filters.persona
    where = "type = 'identify' AND JSONExtractString(traits, 'persona') != ''"
    if id_scope is not None:
        where += f" AND person_id IN {id_scope}"
    identifies = resolved_sql(where)
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
    steps where the touchpoint changes or a journey starts. Each step's columns are
    filtered into arrays of their own and ARRAY JOINed side by side: reading ``a[st]``
    after an ARRAY JOIN over the step starts would copy every event array of the person
    once per step, as a lambda that captures one does once per element. The array names
    carry prefixes because ClickHouse resolves aliases across the whole query: an array
    called ``ts`` would shadow the output column of the same name.
    """
    params["gap_ms"] = int(gap_days * 86_400_000)
    resolved = resolved_sql(event_filter(filters, params))
    person_ok = persona_filter(filters, params)
    return f"""
    SELECT
        person,
        toUInt32(j_journey) AS journey,
        j_step AS step,
        j_tp AS touchpoint,
        j_sg AS stage,
        toInt8(indexOf({STAGE_ARRAY}, j_sg) - 1) AS stage_idx,
        j_ch AS channel,
        fromUnixTimestamp64Milli(j_ts, 'UTC') AS ts,
        j_ts AS ts_ms,
        j_last AS last_ms,
        j_repeats AS repeats,
        j_stitched AS stitched,
        j_sc AS score
    FROM (
        SELECT
            person,
            arraySort(x -> (x.1, x.2, x.3), groupArray((
                toUnixTimestamp64Milli(timestamp), ingest_seq, message_id,
                touchpoint, stage, channel, score, toUInt8(person != person_id)
            ))) AS evs,
            arrayMap(x -> x.1, evs) AS a_ts,
            arrayMap(x -> x.4, evs) AS a_tp,
            length(evs) AS n,
            arrayMap(
                (d, i) -> toUInt8(i = 1 OR d > {{gap_ms:Int64}}), arrayDifference(a_ts), arrayEnumerate(a_ts)
            ) AS a_nj,
            arrayMap(
                (nj, t, before) -> toUInt8(nj = 1 OR t != before),
                a_nj, a_tp, arrayPushFront(arrayPopBack(a_tp), '')
            ) AS a_is,
            arrayFilter((i, s) -> s = 1, arrayEnumerate(a_is), a_is) AS a_starts,
            -- stitched events before each event, and before the end
            arrayPushFront(arrayCumSum(arrayMap(x -> x.8, evs)), 0) AS a_sti_before,
            arrayFilter((v, s) -> s = 1, arrayPopBack(a_sti_before), a_is) AS s_sti_before,
            arrayFilter((nj, s) -> s = 1, a_nj, a_is) AS s_nj,
            -- per step: the columns below, as arrays to ARRAY JOIN in parallel
            arrayFilter((j, s) -> s = 1, arrayCumSum(a_nj), a_is) AS s_journey,
            arrayMap(
                (k, f) -> toUInt32(k - f + 1),
                arrayEnumerate(s_nj),
                arrayFill(x -> x != 0, arrayMap((k, nj) -> if(nj = 1, k, 0), arrayEnumerate(s_nj), s_nj))
            ) AS s_step,
            arrayFilter((x, s) -> s = 1, a_tp, a_is) AS s_tp,
            arrayFilter((x, s) -> s = 1, arrayMap(x -> x.5, evs), a_is) AS s_sg,
            arrayFilter((x, s) -> s = 1, arrayMap(x -> x.6, evs), a_is) AS s_ch,
            arrayFilter((x, s) -> s = 1, a_ts, a_is) AS s_ts,
            -- a step's last event: the event before the next step's first, or the last one
            arrayFilter((x, s) -> s = 1, a_ts, arrayPushBack(arraySlice(a_is, 2), toUInt8(1))) AS s_last,
            arrayMap(
                (a, b) -> toUInt32(b - a), a_starts, arrayPushBack(arraySlice(a_starts, 2), n + 1)
            ) AS s_repeats,
            arrayMap(
                (a, b) -> toUInt8(b > a),
                s_sti_before, arrayPushBack(arraySlice(s_sti_before, 2), a_sti_before[-1])
            ) AS s_stitched,
            arrayFilter((x, s) -> s = 1, arrayMap(x -> x.7, evs), a_is) AS s_sc
        FROM (
            SELECT person, person_id, timestamp, ingest_seq, message_id, touchpoint, stage,
                   channel, score
            FROM ({resolved})
            WHERE {person_ok}
        )
        GROUP BY person
    )
    ARRAY JOIN s_journey AS j_journey, s_step AS j_step, s_tp AS j_tp, s_sg AS j_sg,
               s_ch AS j_ch, s_ts AS j_ts, s_last AS j_last, s_repeats AS j_repeats,
               s_stitched AS j_stitched, s_sc AS j_sc
    """


def as_of_ms(filters: MapFilters, now: datetime) -> int:
    moment = filters.until or now
    return int(moment.timestamp() * 1000)


def _code_map(column: str, names: list[str], params: dict[str, Any], key: str) -> str:
    """SQL mapping a LowCardinality name column to its 1-based code in `names` (0: not
    listed). ``transform`` runs once per dictionary entry, not once per row."""
    params[f"{key}_names"] = names
    params[f"{key}_codes"] = list(range(1, len(names) + 1))
    return (
        f"transform({column}, {{{key}_names:Array(String)}}, "
        f"{{{key}_codes:Array(UInt16)}}, toUInt16(0))"
    )


def persons_sql(
    filters: MapFilters,
    gap_days: float,
    params: dict[str, Any],
    *,
    touchpoints: list[str],
    channels: list[str],
    goal_code: int,
    goal_stage_idx: int,
    post_goal_codes: list[int] | None = None,
    post_goal_ms: int = 0,
    id_scope: str | None = None,
    final_scope: str | None = None,
    with_events: bool = False,
) -> str:
    """SELECT producing one row per person: their steps as parallel arrays.

    Step arrays (one element per step, all journeys in order): ``tp`` touchpoint code
    (1-based into `touchpoints`), ``sg`` stage index (-1: none), ``ch`` channel code,
    ``ts`` / ``lt`` first / last event time (ms), ``rep`` repeats, ``sc`` score of the
    first event, ``jn`` journey number, ``pos`` step number in its journey, ``g`` goal.
    Journey arrays (one element per journey): ``jf`` index of its first step, ``jl`` its
    number of steps, ``jlast`` its last event time, ``jsti`` stitched.

    What views derive from the person alone, kept here so that a kept map derives it only
    when the person changes: ``fds`` / ``fdt`` for each (journey, stage s) with a step in
    s + 1 after its first step in s, s and the time from that first step to the first
    such (the stage funnel's); ``lp`` the touchpoints looped in a journey; ``pgh`` the
    `post_goal_codes` touchpoints within `post_goal_ms` after a goal step of their
    journey; ``dws`` / ``dwm`` the stage and dwell time of each (journey, stage).

    ``ids``: the stored ids (``person_id``) whose events the person holds, so that a kept
    map can find the person again when one of those ids gets new events or a new link.

    `with_events`: also the person's events, in no order, as the numbers the row is
    computed from (``ev_ts`` time in ms, ``ev_seq`` ingest sequence, ``ev_mid`` message
    id, ``ev_tp``, ``ev_sg``, ``ev_ch``, ``ev_sc`` NaN for none, ``ev_sti`` stitched): a
    kept map merges new events into them (:func:`appended_sql`) instead of reading the
    person's events from ``events`` again.

    `id_scope` (an SQL set of stored ids, e.g. ``(SELECT id FROM t)``) limits the rows to
    the persons of those ids; it must hold every id of each person wanted.

    `final_scope` (with `id_scope`; run the query with ``final = 0``): the ids of
    `id_scope` that have two or more rows of one message. Only their events are read with
    ``FINAL``: it changes nothing for the others, and ``FINAL`` merges every granule the
    ids touch, which a scope spread over all persons makes every granule (0.68 s for 1%
    of the persons of 10M events, against 0.11 s without).

    Events are gathered per stored id as numbers only (names become codes through a
    dictionary-level ``transform``), resolved to their person per id rather than per
    event, and ordered per person by sorting an index once (and each column by it).
    """
    _row_params(params, gap_days, goal_code, goal_stage_idx, post_goal_codes, post_goal_ms)
    tp_code = _code_map("touchpoint", touchpoints, params, "tp")
    ch_code = _code_map("channel", channels, params, "ch")
    where = event_filter(filters, params)
    # Names stored after the build listed them (code 0) wait for the next build.
    where += f" AND {tp_code} != 0 AND {ch_code} != 0"
    source = "events"  # deduplicated: every build query runs with final = 1 ...
    if id_scope is not None:
        # PREWHERE by hand: on its own, ClickHouse also moves the touchpoint and channel
        # conditions there, and evaluates them over every row of every granule the scope
        # touches (all of them, for ids spread over the persons): 0.65 s instead of 0.35 s
        # for 4,309 ids of 10M events. Duplicates share their person_id, so filtering on
        # it before FINAL merges them is safe.
        scoped = f"PREWHERE person_id IN {id_scope}"
        source = f"(SELECT * FROM events {scoped})"
        if final_scope is not None:  # ... except this one, which picks where it is needed
            source = f"""(
                SELECT * FROM events {scoped} AND person_id NOT IN {final_scope}
                UNION ALL
                SELECT * FROM events FINAL PREWHERE person_id IN {final_scope}
            )"""
    person_ok = persona_filter(filters, params, id_scope)
    first_hop = links_sql(id_scope)
    second_hop = links_sql(None if id_scope is None else f"(SELECT to_id FROM ({first_hop}))")
    gathered = f"""
    (
        SELECT
            if(l2.to_id != '', l2.to_id, if(l1.to_id != '', l1.to_id, e.person_id)) AS person,
            groupArray(e.person_id) AS ids,
            arrayFlatten(groupArray(e.i_ts)) AS u_ts,
            arrayFlatten(groupArray(e.i_seq)) AS u_seq,
            arrayFlatten(groupArray(e.i_mid)) AS u_mid,
            arrayFlatten(groupArray(e.i_tp)) AS u_tp,
            arrayFlatten(groupArray(e.i_sg)) AS u_sg,
            arrayFlatten(groupArray(e.i_ch)) AS u_ch,
            arrayFlatten(groupArray(e.i_sc)) AS u_sc,
            arrayFlatten(groupArray(
                arrayWithConstant(length(e.i_ts), toUInt8(person != e.person_id))
            )) AS u_sti
        FROM (
            SELECT
                person_id,
                groupArray(toUnixTimestamp64Milli(timestamp)) AS i_ts,
                groupArray(ingest_seq) AS i_seq,
                groupArray(message_id) AS i_mid,
                groupArray({tp_code}) AS i_tp,
                groupArray(toInt8(transform(stage, {STAGE_ARRAY}, [1, 2, 3, 4, 5], 0) - 1)) AS i_sg,
                groupArray({ch_code}) AS i_ch,
                -- groupArray skips NULLs: keep the places of missing scores as NaN
                groupArray(ifNull(score, toFloat32(nan))) AS i_sc
            FROM {source}
            WHERE {where}
            GROUP BY person_id
        ) AS e
        LEFT JOIN ({first_hop}) AS l1 ON e.person_id = l1.from_id
        LEFT JOIN ({second_hop}) AS l2 ON l1.to_id = l2.from_id
        WHERE {person_ok}
        GROUP BY person
    )
    """
    return _rows_sql(gathered, _BY_TIME, with_events=with_events)


_BY_TIME: Final = "arraySort((i, t, q, m) -> (t, q, m), arrayEnumerate(u_ts), u_ts, u_seq, u_mid)"
"""The order of a person's events: time, then arrival (ingest sequence, message)."""


def _row_params(
    params: dict[str, Any],
    gap_days: float,
    goal_code: int,
    goal_stage_idx: int,
    post_goal_codes: list[int] | None,
    post_goal_ms: int,
) -> None:
    params["gap_ms"] = int(gap_days * 86_400_000)
    params["goal_code"] = goal_code
    params["goal_stage_idx"] = goal_stage_idx
    params["post_goal_codes"] = post_goal_codes or []
    params["post_goal_ms"] = post_goal_ms


_FIRSTS_IN_STAGE: Final = "\n".join(
    f"""        arrayFill(
            a -> a.1 != 0,
            arrayMap(
                (k, t, s, o, nj) -> if(
                    o = 1 AND s = {v}, (toInt64(k), t), (if(nj = 1, toInt64(-1), toInt64(0)), toInt64(0))
                ),
                arrayEnumerate(sg), ts, sg, d_occ, step_nj
            )
        ) AS f_from_{v},"""
    for v in range(len(STAGE_NAMES) - 1)
)
"""Per stage s but the last, `f_from_<s>`: per step, (place, time) of the first step of
stage s in its journey up to it (see :func:`_rows_sql`)."""


def _rows_sql(source: str, order: str, *, with_events: bool) -> str:
    """The person rows (see :func:`persons_sql`) from `source`: per person, ``ids`` and
    unsorted parallel arrays of their events ``u_ts`` (time, ms), ``u_seq``, ``u_mid``,
    ``u_tp``, ``u_sg``, ``u_ch``, ``u_sc`` (NaN: no score), ``u_sti`` (stitched), put in
    order by the index array `order`; `with_events`: with those arrays as the ``ev_``
    columns."""
    events = (
        "\n        u_ts AS ev_ts, u_seq AS ev_seq, u_mid AS ev_mid, u_tp AS ev_tp, u_sg AS ev_sg,"
        "\n        u_ch AS ev_ch, u_sc AS ev_sc, u_sti AS ev_sti,"
        if with_events
        else ""
    )
    # Each person's events put in order: `o` lists them in order, and sorting a column by
    # each event's place (`o_at`) orders it. Sorting by an integer costs less than picking
    # `u_x[i]` for each `i` of `o` in a lambda, which copies the whole captured array
    # once per element (n² values per person and column). The same goes for every lambda
    # below: none captures an array of the person's events or steps.
    ordered = f"""
    SELECT
        person,
        ids,{events}
        length(u_ts) AS n,
        {order} AS o,
        arraySort((i, at) -> at, arrayEnumerate(o), o) AS o_at,
        arraySort((x, at) -> at, u_ts, o_at) AS e_ts,
        arraySort((x, at) -> at, u_tp, o_at) AS e_tp,
        arraySort((x, at) -> at, u_sg, o_at) AS e_sg,
        arraySort((x, at) -> at, u_ch, o_at) AS e_ch,
        arraySort((x, at) -> at, u_sc, o_at) AS e_sc,
        arrayPushFront(arrayCumSum(arraySort((x, at) -> at, u_sti, o_at)), 0) AS e_sti_before
    FROM {source}
    """
    starts = f"""
    SELECT
        *,
        -- journeys start at a gap, steps where the touchpoint changes or a journey starts
        arrayMap(
            (d, i) -> toUInt8(i = 1 OR d > {{gap_ms:Int64}}), arrayDifference(e_ts), arrayEnumerate(e_ts)
        ) AS e_nj,
        arrayCumSum(e_nj) AS e_jid,
        arrayMap(
            (nj, t, before) -> toUInt8(nj = 1 OR t != before),
            e_nj, e_tp, arrayPushFront(arrayPopBack(e_tp), toUInt16(0))
        ) AS e_is,
        arrayFilter((i, s) -> s = 1, arrayEnumerate(e_is), e_is) AS e_start,
        arrayFilter((i, nj) -> nj = 1, arrayEnumerate(e_nj), e_nj) AS e_jstart
    FROM ({ordered})
    """
    steps = f"""
    SELECT
        *,
        arrayPushBack(arraySlice(e_start, 2), n + 1) AS e_end,
        arrayFilter((x, s) -> s = 1, e_tp, e_is) AS tp,
        arrayFilter((x, s) -> s = 1, e_sg, e_is) AS sg,
        arrayFilter((x, s) -> s = 1, e_ch, e_is) AS ch,
        arrayFilter((x, s) -> s = 1, e_ts, e_is) AS ts,
        -- a step's last event: the event before the next step's first, or the last one
        arrayFilter((x, s) -> s = 1, e_ts, arrayPushBack(arraySlice(e_is, 2), toUInt8(1))) AS lt,
        arrayMap((s, e) -> toUInt32(e - s), e_start, e_end) AS rep,
        arrayMap(x -> if(isNaN(x), NULL, x), arrayFilter((x, s) -> s = 1, e_sc, e_is)) AS sc,
        arrayMap(j -> toUInt32(j), arrayFilter((j, s) -> s = 1, e_jid, e_is)) AS jn,
        arrayFilter((nj, s) -> s = 1, e_nj, e_is) AS step_nj,
        arrayFilter((k, nj) -> nj = 1, arrayEnumerate(step_nj), step_nj) AS jf,
        -- stitched journeys: a stitched event between the journey's first and last event
        -- (`e_sti_before`: stitched events before each event, and before the end)
        arrayFilter((v, nj) -> nj = 1, arrayPopBack(e_sti_before), e_nj) AS j_sti_before,
        arrayMap(
            (a, b) -> toUInt8(b > a),
            j_sti_before, arrayPushBack(arraySlice(j_sti_before, 2), e_sti_before[-1])
        ) AS jsti
    FROM ({starts})
    """
    journeys = f"""
    SELECT
        *,
        arrayMap((f, x) -> toUInt32(x - f), jf, arrayPushBack(arraySlice(jf, 2), length(tp) + 1)) AS jl,
        arrayMap(
            (k, f) -> toUInt32(k - f + 1),
            arrayEnumerate(tp),
            arrayFill(x -> x != 0, arrayMap((k, nj) -> if(nj = 1, k, 0), arrayEnumerate(step_nj), step_nj))
        ) AS pos,
        arrayMap((t, s) -> toUInt8(t = {{goal_code:UInt16}} OR s = {{goal_stage_idx:Int8}}), tp, sg) AS g,
        -- dwell: per (journey, stage) with a stage, the stage (`dws`) and the time from its
        -- first step to its last step's last event (`dwm`); keys journey * 8 + stage + 1,
        -- firsts and lasts both sorted by key so that they pair up
        arrayMap((j, x) -> toUInt32(j) * 8 + toUInt32(x + 1), jn, sg) AS d_keys
    FROM ({steps})
    """
    return f"""
    SELECT
        *,
        arrayFilter((t, e) -> e = 1, lt, arrayPushBack(arraySlice(step_nj, 2), toUInt8(1))) AS jlast,
        -- the stage funnel's times: for each step in a stage s + 1 > 0, the first step of
        -- its journey in s before it (`f_prev`: its place and time; place 0 or -1: none);
        -- the first such step per (journey, s + 1) gives one time from s to s + 1.
        -- `f_from_<s>` carries the first step of stage s of the journey so far forward
        -- (-1 from each journey start until there is one): a scan, where looking it up
        -- would capture an array in a lambda, which copies it once per element (a person
        -- with 30,000 steps took 12 GB, and one with 3,000 journeys asked for 2 GiB).
{_FIRSTS_IN_STAGE}
        arrayMap(
            (s, {", ".join(f"a{v}" for v in range(len(STAGE_NAMES) - 1))}) -> multiIf(
                {", ".join(f"s = {v + 1}, a{v}" for v in range(len(STAGE_NAMES) - 1))},
                (toInt64(0), toInt64(0))
            ),
            sg, {", ".join(f"f_from_{v}" for v in range(len(STAGE_NAMES) - 1))}
        ) AS f_prev,
        arrayMap(a -> toUInt8(a.1 > 0), f_prev) AS f_hit,
        arrayEnumerateUniq(arrayFilter((x, h) -> h = 1, d_keys, f_hit)) AS f_hit_occ,
        arrayFilter(
            (s, o) -> o = 1, arrayFilter((s, h) -> h = 1, arrayMap(x -> toInt8(x - 1), sg), f_hit), f_hit_occ
        ) AS fds,
        arrayFilter(
            (d, o) -> o = 1,
            arrayFilter((d, h) -> h = 1, arrayMap((t, a) -> t - a.2, ts, f_prev), f_hit),
            f_hit_occ
        ) AS fdt,
        -- touchpoints with two or more steps in one journey (loops and rework)
        arrayDistinct(arrayFilter((t, o) -> o >= 2, tp, arrayEnumerateUniq(jn, tp))) AS lp,
        -- issue touchpoints within the window after a goal step of the same journey: per
        -- step, 1 + the time of the latest goal step before it in its journey (-1: none)
        arrayDistinct(arrayFilter(
            (t, last_goal, s) -> has({{post_goal_codes:Array(UInt16)}}, t) AND last_goal > 0
                                 AND s - (last_goal - 1) <= {{post_goal_ms:Int64}},
            tp,
            arrayFill(
                x -> x != 0,
                arrayMap(
                    (p, g_before, ts_before) -> if(p = 1, toInt64(-1), if(g_before = 1, ts_before + 1, toInt64(0))),
                    pos, arrayPushFront(arrayPopBack(g), toUInt8(0)), arrayPushFront(arrayPopBack(ts), toInt64(0))
                )
            ),
            ts
        )) AS pgh,
        arrayEnumerateUniq(d_keys) AS d_occ,
        arrayReverse(arrayEnumerateUniq(arrayReverse(d_keys))) AS d_rocc,
        arraySort(arrayFilter((k, o) -> o = 1, d_keys, d_occ)) AS d_sorted,
        arraySort((v, k) -> k, arrayFilter((v, o) -> o = 1, ts, d_occ), arrayFilter((k, o) -> o = 1, d_keys, d_occ)) AS d_firsts,
        arraySort((v, k) -> k, arrayFilter((v, o) -> o = 1, lt, d_rocc), arrayFilter((k, o) -> o = 1, d_keys, d_rocc)) AS d_lasts,
        arrayFilter(x -> x >= 0, arrayMap(k -> toInt8(modulo(k, 8)) - 1, d_sorted)) AS dws,
        arrayFilter(
            (d, k) -> modulo(k, 8) != 0, arrayMap((a, b) -> b - a, d_firsts, d_lasts), d_sorted
        ) AS dwm
    FROM ({journeys})
    """


def news_sql(
    filters: MapFilters,
    params: dict[str, Any],
    inbox: str,
    *,
    touchpoints: list[str],
    channels: list[str],
) -> str:
    """SELECT of the new events a kept map may append, from the ``journey_inbox`` rows
    `inbox` (an SQL table or subquery of rows with a payload): each with its person
    (resolved through today's links), as the numbers a person row holds, and ``passes``,
    whether the map's filters keep it.

    The rows the filters drop are there too: a resend whose last copy the filters drop
    (renamed to no touchpoint, re-dated out of the window, from another source or
    channel) takes its event out of the map, as ``FINAL`` keeps only that copy, and the
    keeper must find the person whose row holds an earlier one.

    Filters on properties or a persona cannot be decided from an inbox row; a map with
    them recomputes its persons instead.
    """
    if filters.properties or filters.persona is not None:
        raise ValueError("property and persona filters need the events themselves")
    tp_code = _code_map("touchpoint", touchpoints, params, "tp")
    ch_code = _code_map("channel", channels, params, "ch")
    where = f"{event_filter(filters, params)} AND {tp_code} != 0 AND {ch_code} != 0"
    scope = f"(SELECT id FROM {inbox})"
    first_hop = links_sql(scope)
    second_hop = links_sql(f"(SELECT to_id FROM ({first_hop}))")
    return f"""
    SELECT
        if(l2.to_id != '', l2.to_id, if(l1.to_id != '', l1.to_id, i.id)) AS person,
        i.id AS person_id,
        toUnixTimestamp64Milli(i.timestamp) AS ts,
        i.ingest_seq AS seq,
        i.message_id AS mid,
        -- CAST: a Memory table cannot hold LowCardinality numbers
        CAST({tp_code}, 'UInt16') AS tp,
        CAST(transform(i.stage, {STAGE_ARRAY}, [1, 2, 3, 4, 5], 0) - 1, 'Int8') AS sg,
        CAST({ch_code}, 'UInt16') AS ch,
        ifNull(i.score, toFloat32(nan)) AS sc,
        toUInt8(person != i.id) AS sti,
        i.arrived AS arrived,
        i.passes_ AS passes
    FROM (SELECT *, toUInt8({where}) AS passes_ FROM {inbox}) AS i
    LEFT JOIN ({first_hop}) AS l1 ON i.id = l1.from_id
    LEFT JOIN ({second_hop}) AS l2 ON l1.to_id = l2.from_id
    """


def appended_sql(
    kept: str,
    news: str,
    params: dict[str, Any],
    *,
    gap_days: float,
    goal_code: int,
    goal_stage_idx: int,
    post_goal_codes: list[int] | None = None,
    post_goal_ms: int = 0,
) -> str:
    """SELECT of the person rows (with their events) of the persons in `news` (rows of
    :func:`news_sql`, none of them a resend of an event their person's kept row holds:
    the caller checks), each computed from the events the kept row in `kept` holds (when
    the person has one) and the new ones, without reading ``events``: the same row as
    from all of the person's stored events, wherever in the journey the new ones fall.
    The other arguments as for :func:`persons_sql`."""
    _row_params(params, gap_days, goal_code, goal_stage_idx, post_goal_codes, post_goal_ms)
    source = f"""(
    SELECT
        n.person AS person,
        arrayDistinct(arrayConcat(k.ids, n.n_ids)) AS ids,
        arrayConcat(k.ev_ts, n.n_ts) AS u_ts,
        arrayConcat(k.ev_seq, n.n_seq) AS u_seq,
        arrayConcat(k.ev_mid, n.n_mid) AS u_mid,
        arrayConcat(k.ev_tp, n.n_tp) AS u_tp,
        arrayConcat(k.ev_sg, n.n_sg) AS u_sg,
        arrayConcat(k.ev_ch, n.n_ch) AS u_ch,
        arrayConcat(k.ev_sc, n.n_sc) AS u_sc,
        arrayConcat(k.ev_sti, n.n_sti) AS u_sti
    FROM (
        SELECT
            person,
            groupUniqArray(person_id) AS n_ids,
            groupArray(ts) AS n_ts,
            groupArray(seq) AS n_seq,
            groupArray(mid) AS n_mid,
            groupArray(tp) AS n_tp,
            groupArray(sg) AS n_sg,
            groupArray(ch) AS n_ch,
            groupArray(sc) AS n_sc,
            groupArray(sti) AS n_sti
        FROM {news}
        GROUP BY person
    ) AS n
    LEFT JOIN (
        SELECT person, ids, {EVENT_COLUMNS}
        FROM {kept}
        WHERE person IN (SELECT person FROM {news})
    ) AS k ON k.person = n.person
    )"""
    return _rows_sql(source, _BY_TIME, with_events=True)
