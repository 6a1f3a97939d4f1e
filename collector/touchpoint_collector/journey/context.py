"""A map build's working state in ClickHouse: the persons (with their journeys and steps
as arrays) of one set of filters, materialised once into a per-build table that every view
then reads.

The working table lives in memory (``Memory`` engine: views read it without decompressing,
~80 bytes per step) up to :data:`IN_MEMORY_MAX_EVENTS` stored events, and on disk
(``MergeTree``) beyond, so a build over any number of events spills instead of failing;
``max_bytes_before_external_*`` bound its sorts and aggregations the same way.

Touchpoints and channels travel through the views as small integer codes (1-based
positions in :attr:`BuildContext.touchpoints` / :attr:`BuildContext.channels`): grouping
by a UInt16 is several times cheaper than by a string, and names come back in Python.
"""

from __future__ import annotations

import re
import time
import uuid
import weakref
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from touchpoint_collector.journey import counting
from touchpoint_collector.journey.ledger import Ledger
from touchpoint_collector.journey.model import MapFilters, MapSettings
from touchpoint_collector.journey.steps import (
    KEPT_COLUMNS,
    PERSON_COLUMNS,
    STAGE_NAMES,
    appended_sql,
    as_of_ms,
    news_sql,
    persons_sql,
)
from touchpoint_collector.store import Store, quote_ident

DAY_MS = 86_400_000
_WRITES_A_SELECT = re.compile(
    r"^\s*(INSERT\s+INTO\s+\S+(?:\s*\([^)]*\))?|CREATE\s+TABLE\s+\S+\s+ENGINE\s*=.*?\sAS)"
    r"\s+(?=SELECT\b|WITH\b)",
    re.S,
)
"""``INSERT INTO t [(columns)] <select>`` and ``CREATE TABLE t ENGINE = ... AS <select>``."""
_SELECTS = re.compile(r"\bSELECT\b", re.I)
IN_MEMORY_MAX_EVENTS = 50_000_000
"""Above this many stored events (filtered or not), a build's working table goes to disk:
~3.5 GB of memory at ~72 bytes per step (~6 GB for a kept map's rows, which also hold
their events: ~125 bytes per step) is where disk becomes the safer trade."""
SPILL_SETTINGS: dict[str, Any] = {
    "final": 1,
    # `max(last_ms) AS last_ms` must aggregate the column, not refer to itself.
    "prefer_column_name_to_alias": 1,
}
"""What every build statement runs with, besides the spill thresholds of
:func:`spill_settings`."""
SPILL_SHARE = 4
"""A build's sorts and aggregations spill to disk past this fraction of the memory the
engine may use (``max_server_memory_usage``). ClickHouse advises half of it for a lone
GROUP BY; the persons statement runs two aggregations and two joins at once, and the kept
rows of the map sit beside them. A fixed 1 GiB, used before, made the 10M-event build
spill its persons statement: 9.8 to 11.1 s against 8.3 to 9.0 s, on a machine with 22 GiB
to give."""
FALLBACK_SPILL_BYTES = 1 << 30
"""The threshold when the engine does not say how much memory it may use."""
_spill_bytes: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()


def spill_settings(store: Store) -> dict[str, Any]:
    """The settings of every build statement on `store`: :data:`SPILL_SETTINGS` and the
    spill thresholds (see :data:`SPILL_SHARE`), asked of the engine once per store."""
    limit = _spill_bytes.get(store)
    if limit is None:
        found = store.query(
            "SELECT value FROM system.server_settings WHERE name = 'max_server_memory_usage'"
        ).result_rows
        memory = int(found[0][0]) if found and str(found[0][0]).isdigit() else 0
        limit = memory // SPILL_SHARE if memory else FALLBACK_SPILL_BYTES
        _spill_bytes[store] = limit
    return {
        "max_bytes_before_external_group_by": limit,
        "max_bytes_before_external_sort": limit,
        **SPILL_SETTINGS,
    }


UNCOMPILED: dict[str, Any] = {
    "compile_expressions": 0,
    "compile_aggregate_expressions": 0,
    "compile_sort_description": 0,
}
"""The settings of a kept map's updates. ClickHouse compiles an expression the third
time it runs one (``min_count_to_compile_expression``), in the statement that does, and
builds share many: the update after two builds paid 30 to 90 ms a statement, about a
second in all (1M events: 1.85 s against 0.63 s for the same update uncompiled, so a
refresh took 1.4 to 2.4 times as long after a one-off build, which ran the shared
expressions once more). Compiled code pays off over millions of rows, not over the few
thousand an update reads, so full builds keep it."""

MAX_CODES = 65_535
WORKING_TABLE_PATTERN = "^_map_[0-9a-f]{12}_[a-z]+$"
STALE_AFTER_SECONDS = 6 * 3600
"""A working table this old belongs to a build that died (killed mid-build): no build
runs for hours, and a live one may belong to another process, so younger ones stay."""


def sweep_stale(store: Store, older_than_seconds: float = STALE_AFTER_SECONDS) -> list[str]:
    """Drop the working tables that crashed builds left behind; their names."""
    stale = [
        str(name)
        for (name,) in store.query(
            """SELECT name FROM system.tables
            WHERE database = currentDatabase() AND match(name, {pattern:String})
              AND metadata_modification_time < now() - {age:Float64}""",
            parameters={"pattern": WORKING_TABLE_PATTERN, "age": older_than_seconds},
        ).result_rows
    ]
    for name in stale:
        store.command(f"DROP TABLE IF EXISTS {quote_ident(name)} SYNC")
    return stale


def new_prefix() -> str:
    """Names a build's (or a kept map's) tables; :func:`sweep_stale` knows them by it."""
    return f"_map_{uuid.uuid4().hex[:12]}"


@dataclass
class BuildContext:
    store: Store
    filters: MapFilters
    settings: MapSettings
    now: datetime
    prefix: str = field(default_factory=new_prefix)
    table: str = ""
    """The person rows' table: the build's own ``<prefix>_persons`` unless a kept map
    passes its table."""
    end_after_ms: int = 0
    as_of_ms: int = 0
    timings: list[tuple[str, float]] = field(default_factory=list)
    """(query's first words, seconds) for every query of the build: where the time goes."""

    touchpoints: list[str] = field(default_factory=list)
    """Every touchpoint name in the events; a touchpoint's code is its position + 1."""
    channels: list[str] = field(default_factory=list)

    dead: str = ""
    """A kept map's set of replaced rows (their ``rid``), which every read skips."""
    ledger: Ledger | None = None
    """A kept map's recorded figures: tallied views count only what changed."""
    compiled: bool = True
    """Whether statements may compile their expressions to machine code (False: see
    :data:`UNCOMPILED`)."""

    @property
    def persons(self) -> str:
        """The person rows to read: a table, or the live rows of a kept map's table."""
        if self.dead:
            return f"(SELECT * FROM {self.persons_where('1')})"
        return self._table

    def persons_where(self, condition: str) -> str:
        """The live person rows that meet `condition`, as ``<table> WHERE ...``; for a
        condition that keeps few rows, which ClickHouse tests first: testing the dead set
        first copies every column read of nearly every row, the dead rows being spread
        over the whole table (10,000 persons' kept rows at 10M events: 90 to 100 ms
        against 24 ms)."""
        live = f" AND rid NOT IN {quote_ident(self.dead)}" if self.dead else ""
        return f"{self._table} WHERE ({condition}){live}"

    @property
    def _table(self) -> str:
        return quote_ident(self.table or f"{self.prefix}_persons")

    @property
    def live(self) -> str:
        """The person rows as views read them: the live rows, each with ``sign`` 1 and the
        ended flags' inputs (``_as_of``, ``_end_after``) as columns (see ``ledger``)."""
        return (
            "(SELECT *, toInt8(1) AS sign, toInt64({as_of_ms:Int64}) AS _as_of, "
            f"toInt64({{end_after_ms:Int64}}) AS _end_after FROM {self.persons})"
        )

    @property
    def ended(self) -> str:
        """SQL: per journey of a person row, 1 when it has ended (``docs/journey-map.md``)."""
        return "arrayMap(x -> toUInt8(_as_of - x > _end_after), jlast)"

    def beside(self) -> BuildContext:
        """This build on the store's other client (:meth:`Store.lane`), sharing all else
        (names, ledger, timings): for views run on another thread, once the figures every
        view reads are settled (:meth:`finish`, and a kept map's change rows)."""
        return replace(self, store=self.store.lane())

    def code(self, touchpoint: str) -> int:
        """A touchpoint's code; 0 (matching no step) for one not in the events."""
        try:
            return self.touchpoints.index(touchpoint) + 1
        except ValueError:
            return 0

    def name(self, code: int) -> str:
        return self.touchpoints[code - 1]

    def codes(self, touchpoints: Any) -> list[int]:
        return [c for c in (self.code(t) for t in touchpoints) if c]

    def params(self, **extra: Any) -> dict[str, Any]:
        return {
            "as_of_ms": self.as_of_ms,
            "end_after_ms": self.end_after_ms,
            "tp_names": self.touchpoints,
            "goal_code": self.goal_code,
            **extra,
        }

    @property
    def goal_code(self) -> int:
        goal = self.settings.goal
        return 0 if goal.startswith("stage:") else self.code(goal)

    @property
    def goal_stage_idx(self) -> int:
        goal = self.settings.goal
        stage = goal.removeprefix("stage:") if goal.startswith("stage:") else None
        return STAGE_NAMES.index(stage) if stage in STAGE_NAMES else -2

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        started = time.perf_counter()
        settings = {**spill_settings(self.store), **({} if self.compiled else UNCOMPILED)}
        result = self.store.query(sql, parameters=self.params(**params), settings=settings)
        rows = [tuple(r) for r in result.result_rows]
        self._timed(sql, started)
        return rows

    def command(
        self, sql: str, params: dict[str, Any] | None = None, *, final: bool = True
    ) -> None:
        """Run `sql`; with `final` False, only tables it names with ``FINAL`` deduplicate.

        A statement that writes what a SELECT reads carries the settings in a
        ``SETTINGS`` clause of that SELECT. Passed beside a statement, the embedded
        engine's client applies them with ``SET`` statements and restores them after:
        ~12 ms a statement (against ~2 ms), a third of a second per refresh."""
        started = time.perf_counter()
        settings = {
            **spill_settings(self.store),
            **({} if final else {"final": 0}),
            **({} if self.compiled else UNCOMPILED),
        }
        head = _WRITES_A_SELECT.match(sql)
        if head is None and not _SELECTS.search(sql):
            self.store.command(sql, parameters=params)  # DDL: the settings are for reads
        elif head is None:
            self.store.command(sql, parameters=params, settings=settings)
        else:
            clause = ", ".join(f"{name} = {int(value)}" for name, value in settings.items())
            select = sql[head.end() :]
            self.store.command(
                f"{head.group(1)} SELECT * FROM ({select}\n) SETTINGS {clause}", parameters=params
            )
        self._timed(sql, started)

    def _timed(self, sql: str, started: float) -> None:
        label = " ".join(sql.split())[:70]
        self.timings.append((label, time.perf_counter() - started))

    # -- materialisation ---------------------------------------------------------------

    def materialise(self) -> None:
        sweep_stale(self.store)
        self.load_names()
        params: dict[str, Any] = {}
        select = self.persons_select(params)
        self.command(
            f"CREATE TABLE {self.persons} ENGINE = {self.engine()} AS {select}",
            params,
        )
        self.finish()

    def load_names(
        self,
        known: tuple[list[str], list[str]] | None = None,
        arrived_from: datetime | None = None,
    ) -> None:
        """Every touchpoint and channel name stored (filtered or not: a superset is
        harmless), cheap without FINAL. With `known` (a kept map's names), those keep their
        codes and new names are appended, so person rows built earlier stay valid.

        With `arrived_from` too, new names are looked for only in the events that reached
        ``journey_inbox`` since then (a name can only be new in a new event), not in all
        of ``events`` (half a second at 10M events); unless some of those inbox rows
        predate its event columns."""
        found: list[Any] = []
        if known is not None and arrived_from is not None:
            inbox = self.store.query(
                """SELECT payload, touchpoint, channel FROM journey_inbox
                WHERE arrived >= {from:DateTime64(6, 'UTC')} AND kind = 'event'
                GROUP BY payload, touchpoint, channel""",
                parameters={"from": arrived_from},
            ).result_rows
            if all(payload for payload, _, _ in inbox):
                found = [(t, c) for _, t, c in inbox if t != ""]
            else:
                arrived_from = None
        if known is None or arrived_from is None:
            found = list(
                self.store.query(
                    "SELECT DISTINCT touchpoint, channel FROM events WHERE touchpoint != ''",
                    settings={"final": 0},
                ).result_rows
            )
        touchpoints = {str(t) for t, _ in found}
        channels = {str(c) for _, c in found}
        if known is None:
            self.touchpoints, self.channels = sorted(touchpoints), sorted(channels)
        else:
            self.touchpoints = [*known[0], *sorted(touchpoints - set(known[0]))]
            self.channels = [*known[1], *sorted(channels - set(known[1]))]
        if max(len(self.touchpoints), len(self.channels)) >= MAX_CODES:
            # Codes are UInt16 and pairs of them pack into a UInt32.
            raise ValueError(
                f"{len(self.touchpoints)} touchpoints and {len(self.channels)} channels in "
                f"the events; a map handles fewer than {MAX_CODES} of each"
            )

    def persons_select(
        self,
        params: dict[str, Any],
        id_scope: str | None = None,
        final_scope: str | None = None,
        *,
        kept: bool = False,
    ) -> str:
        """SELECT of the person rows (:data:`PERSON_COLUMNS`, and :data:`KEPT_COLUMNS` for a
        `kept` map); `id_scope` and `final_scope` as in
        :func:`~touchpoint_collector.journey.steps.persons_sql`."""
        rows = self._row_settings()
        select = persons_sql(
            self.filters,
            rows.pop("gap_days"),
            params,
            touchpoints=self.touchpoints,
            channels=self.channels,
            **rows,
            id_scope=id_scope,
            final_scope=final_scope,
            with_events=kept,
        )
        return f"SELECT {KEPT_COLUMNS if kept else PERSON_COLUMNS} FROM ({select})"

    def appended_select(self, params: dict[str, Any], news: str, kept: str = "") -> str:
        """SELECT of the kept rows (:data:`KEPT_COLUMNS`) of the persons in the table
        `news`, with their new events appended
        (:func:`~touchpoint_collector.journey.steps.appended_sql`); `kept`: where their
        kept rows are, when not in the live person rows."""
        select = appended_sql(kept or self.persons, news, params, **self._row_settings())
        return f"SELECT {KEPT_COLUMNS} FROM ({select})"

    def _row_settings(self) -> dict[str, Any]:
        """What a person row depends on besides the events: both ways of computing one
        must get the same."""
        return {
            "gap_days": self.settings.gap_days,
            "goal_code": self.goal_code,
            "goal_stage_idx": self.goal_stage_idx,
            "post_goal_codes": self.codes(self.settings.post_goal_touchpoints),
            "post_goal_ms": int(self.settings.post_goal_days * DAY_MS),
        }

    def news_select(self, params: dict[str, Any], inbox: str) -> str:
        """SELECT of the new events in the inbox rows `inbox` that this map keeps
        (:func:`~touchpoint_collector.journey.steps.news_sql`)."""
        return news_sql(
            self.filters, params, inbox, touchpoints=self.touchpoints, channels=self.channels
        )

    def finish(self) -> None:
        """Settle the figures every view needs once the person rows are in place."""
        self.as_of_ms = as_of_ms(self.filters, self.now)
        self.end_after_ms = self._end_after_ms()

    def engine(self) -> str:
        stored = self.store.query("SELECT count() FROM events", settings={"final": 0})
        events = int(stored.result_rows[0][0])
        return "Memory" if events <= IN_MEMORY_MAX_EVENTS else "MergeTree ORDER BY person"

    def _end_after_ms(self) -> int:
        if self.settings.end_after_days is not None:
            return int(self.settings.end_after_days * DAY_MS)
        found = counting.quantiles(
            self,
            "gaps",
            lambda rows: (
                f"""SELECT gap AS v, sign FROM {rows}
            ARRAY JOIN arrayFilter((d, p) -> p > 1, arrayDifference(ts), pos) AS gap"""
            ),
            [],
            (0.95,),
            flags=False,  # this is an input of the flags
        )
        gap_ms = int(self.settings.gap_days * DAY_MS)
        if not found:
            return min(DAY_MS, gap_ms)
        ((_, (q95,)),) = found.values()
        # Whole days, rounded up: a threshold that moved with every new gap would flip
        # some journey between ended and in progress at every refresh (a flicker in the
        # map, and rows every kept view must count again).
        whole_days = -(-int(q95) // DAY_MS) * DAY_MS
        return int(min(max(whole_days, DAY_MS), gap_ms))

    def drop(self) -> None:
        if not self.table:
            self.store.command(f"DROP TABLE IF EXISTS {quote_ident(self.prefix + '_persons')} SYNC")
