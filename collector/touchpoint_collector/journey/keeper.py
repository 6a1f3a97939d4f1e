"""A map kept current between builds: its person rows stay in ClickHouse, and each rebuild
recomputes only the persons that changed since the previous one.

Every figure of the map is a function of the person rows (``docs/journey-map.md``), and a
person's row depends only on the events of the stored ids that resolve to them and on
those ids' identity links. So a rebuild needs to recompute the persons of:

* ids with new events, resends included (FINAL collapses the resend when the person is
  read again);
* ids whose link changed, and the ids linked to those (persons resolve in two hops), on
  both sides of the change: the person an id leaves and the person it joins;
* ids with events that entered or left the window, when ``since`` or ``until`` moved.

New rows are found in ``journey_inbox``, which materialized views fill on every insert into
``events`` and ``identities``, whoever writes them; a rebuild never scans the events to
learn what is new. The person rows are then replaced (delete, insert) and every view runs
over all rows as in a one-off build, so the result is the same map ``build_map`` makes:
the tests hold the two to equality.

A rebuild is a full one the first time, when the settings or the filters other than the
window change, and every `full_every_seconds`; the last keeps the working table younger
than the sweep of abandoned tables and bounds how long any mistake could live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import structlog

from touchpoint_collector.journey.build import assemble
from touchpoint_collector.journey.context import (
    STALE_AFTER_SECONDS,
    BuildContext,
    new_prefix,
    sweep_stale,
)
from touchpoint_collector.journey.model import JourneyMap, MapFilters, MapSettings
from touchpoint_collector.journey.steps import links_sql
from touchpoint_collector.store import Store, quote_ident
from touchpoint_schemas.taxonomy import Taxonomy

log = structlog.get_logger("touchpoint.map")

INBOX_GRACE: Final = timedelta(seconds=60)
"""Inbox rows are stamped (``arrived``) when their insert writes them, and ClickHouse does
not order their visibility against the events of the same insert: either may be seen
first. So each rebuild reads the inbox from this long before the previous one started,
and rows read twice only recompute a few persons twice. It also absorbs clock skew
between the nodes of a cluster (each shard stamps its own rows), which must stay well
under it."""
FULL_EVERY_SECONDS: Final = 3 * 3600.0
FULL_ABOVE_SHARE: Final = 0.4
"""Past this share of the kept persons touched, a rebuild starts over instead: the update's
scoped reads cost about twice a full build when they cover everybody (measured at 10M)."""
INBOX_KEEPS: Final = timedelta(hours=23)
"""Less than the inbox's one-day TTL: past this, rows may be gone, so rebuild in full."""


@dataclass
class Kept:
    """What a keeper holds between builds."""

    table: str
    filters: MapFilters
    settings: MapSettings
    touchpoints: list[str]
    channels: list[str]
    engine: str
    read_from: datetime
    """The server's clock when the previous build started reading."""
    full_at: float
    """``time.monotonic()`` at the last full rebuild."""
    rows: int = 0
    """How many person rows the table held after the previous build."""


@dataclass(frozen=True)
class LastBuild:
    """What the keeper's last build did, for logs and the benchmark."""

    mode: str
    """``full`` or ``incremental``."""
    reason: str
    persons_recomputed: int
    persons_total: int
    timings: list[tuple[str, float]]
    """(query's first words, seconds) for every query of the build."""


class MapKeeper:
    """Builds one map again and again, recomputing only the persons that changed.

    Not thread-safe: one build at a time (the collector's map service holds a lock).
    """

    def __init__(
        self,
        store: Store,
        settings: MapSettings | None = None,
        *,
        taxonomy: Taxonomy | None = None,
        full_every_seconds: float = FULL_EVERY_SECONDS,
        inbox_grace: timedelta = INBOX_GRACE,
        full_above_share: float = FULL_ABOVE_SHARE,
    ) -> None:
        if full_every_seconds >= STALE_AFTER_SECONDS:
            raise ValueError("full_every_seconds must be shorter than the sweep's age limit")
        self.store = store
        self.settings = settings or MapSettings()
        self.taxonomy = taxonomy
        self.full_every_seconds = full_every_seconds
        self.inbox_grace = inbox_grace
        self.full_above_share = full_above_share
        self.kept: Kept | None = None
        self.last: LastBuild | None = None

    def build(
        self, filters: MapFilters | None = None, *, as_of: datetime | None = None
    ) -> JourneyMap:
        started = time.perf_counter()
        ctx = BuildContext(
            store=self.store,
            filters=filters or MapFilters(),
            settings=self.settings,
            now=as_of or datetime.now(UTC),
        )
        server_now = self.store.query("SELECT now64(6, 'UTC')").result_rows[0][0]
        reason = self._full_reason(ctx.filters, server_now)
        full = bool(reason)
        try:
            if full:
                self._rebuild(ctx)
                recomputed = -1
            else:
                reason = "new events, links or a moved window"
                touched = self._update(ctx)
                if touched is None:
                    # A backfill or a large merge: scoped to most persons, the update would
                    # cost more than starting over.
                    full, reason, recomputed = True, "most persons touched", -1
                    ctx.prefix = new_prefix()
                    self._rebuild(ctx)
                else:
                    recomputed = touched
            assert self.kept is not None
            self.kept.read_from = server_now
            self.kept.rows = self._count_rows(self.kept.table)
        except BaseException:
            self.forget()  # rows may be half replaced: the next build starts over
            raise
        ctx.finish()
        built = assemble(ctx, self.taxonomy, started)
        self.last = LastBuild(
            mode="full" if full else "incremental",
            reason=reason,
            persons_recomputed=built.coverage.persons if full else recomputed,
            persons_total=built.coverage.persons,
            timings=ctx.timings,
        )
        return built

    def forget(self) -> None:
        """Drop the kept rows; the next build is a full one."""
        if self.kept is not None:
            self.store.command(f"DROP TABLE IF EXISTS {quote_ident(self.kept.table)} SYNC")
        self.kept = None

    # -- when to start over ---------------------------------------------------------------

    def _links_arrived(self, kept: Kept) -> bool:
        found = self.store.query(
            "SELECT count() FROM journey_inbox "
            "WHERE arrived >= {from:DateTime64(6, 'UTC')} AND kind = 'link'",
            parameters={"from": kept.read_from - self.inbox_grace},
        ).result_rows
        return bool(found[0][0])

    def _count_rows(self, table: str) -> int:
        """Person rows in `table` (lightweight deletes excluded); -1 when it does not exist."""
        found = self.store.query(f"EXISTS TABLE {quote_ident(table)}").result_rows
        if not found or not found[0][0]:
            return -1
        return int(self.store.query(f"SELECT count() FROM {quote_ident(table)}").result_rows[0][0])

    def _full_reason(self, filters: MapFilters, server_now: datetime) -> str:
        kept = self.kept
        if kept is None:
            return "first build"
        if kept.settings != self.settings:
            return "settings changed"
        if _without_window(kept.filters) != _without_window(filters):
            return "filters changed"
        if filters.persona is not None and self._links_arrived(kept):
            # A persona comes from identify calls, whose ids need no step of their own and
            # so are in no kept row's `ids`; nor does a person the filter left out have a
            # row. A link moving such an id cannot be traced to the person it leaves.
            return "new identity links under a persona filter"
        if time.monotonic() - kept.full_at >= self.full_every_seconds:
            return "periodic full rebuild"
        if server_now - kept.read_from >= INBOX_KEEPS:
            return "inbox rows may have expired"
        if self._count_rows(kept.table) != kept.rows:
            # Dropped, or emptied: a Memory table loses its rows when a ClickHouse server
            # restarts under a running collector.
            return "kept rows are gone"
        return ""

    def _rebuild(self, ctx: BuildContext) -> None:
        self.forget()
        sweep_stale(self.store)
        ctx.table = f"{ctx.prefix}_persons"
        ctx.load_names()
        params: dict[str, Any] = {}
        engine = ctx.engine()
        ctx.command(
            f"CREATE TABLE {ctx.persons} ENGINE = {engine} AS {ctx.persons_select(params)}",
            params,
        )
        self.kept = Kept(
            table=ctx.table,
            filters=ctx.filters,
            settings=self.settings,
            touchpoints=ctx.touchpoints,
            channels=ctx.channels,
            engine=engine,
            read_from=datetime.now(UTC),  # set by `build`
            full_at=time.monotonic(),
        )

    # -- recomputing the persons that changed ---------------------------------------------

    def _update(self, ctx: BuildContext) -> int | None:
        """Recompute the changed persons; how many (None: too many, rebuild in full)."""
        kept = self.kept
        assert kept is not None
        ctx.table = kept.table
        ctx.load_names((kept.touchpoints, kept.channels))
        temp = {
            name: quote_ident(f"{ctx.prefix}_{name}")
            for name in ("ids", "touched", "scope", "dups", "rows")
        }
        try:
            self._affected_ids(ctx, kept, temp["ids"])
            recomputed = self._touched_persons(ctx, temp["ids"], temp["touched"])
            if recomputed > self.full_above_share * max(kept.rows, 1):
                return None
            if recomputed:
                self._replace(ctx, kept, temp)
        finally:
            for table in temp.values():
                self.store.command(f"DROP TABLE IF EXISTS {table} SYNC")
        kept.filters = ctx.filters
        kept.touchpoints, kept.channels = ctx.touchpoints, ctx.channels
        return recomputed

    def _affected_ids(self, ctx: BuildContext, kept: Kept, ids: str) -> None:
        """Stored ids whose person may have changed: with new events or links, linked to
        an id with a new link, or with events in the part of the time axis the window
        gained or lost."""
        params: dict[str, Any] = {"from": kept.read_from - self.inbox_grace}
        arrived = "arrived >= {from:DateTime64(6, 'UTC')}"
        ctx.command(f"CREATE TABLE {ids} (id String) ENGINE = Memory")
        ctx.command(f"INSERT INTO {ids} SELECT id FROM journey_inbox WHERE {arrived}", params)
        ctx.command(
            f"""INSERT INTO {ids} SELECT anonymous_id FROM identities
            WHERE user_id IN (SELECT id FROM journey_inbox WHERE {arrived} AND kind = 'link')""",
            params,
        )
        for bound, before, after in (
            ("since", kept.filters.since, ctx.filters.since),
            ("until", kept.filters.until, ctx.filters.until),
        ):
            if before == after:
                continue
            window: dict[str, Any]
            if before is None or after is None:
                # The bound appeared or went: every event on its far side moved.
                window = {"edge": after if before is None else before}
                op = "<" if bound == "since" else ">="
                moved = f"timestamp {op} {{edge:DateTime64(3, 'UTC')}}"
            else:
                window = {"low": min(before, after), "high": max(before, after)}
                moved = (
                    "timestamp >= {low:DateTime64(3, 'UTC')} "
                    "AND timestamp < {high:DateTime64(3, 'UTC')}"
                )
            self.store.command(
                f"INSERT INTO {ids} SELECT DISTINCT person_id FROM events WHERE {moved}",
                parameters=window,
                settings={"final": 0},  # any copy of a moved event will do
            )

    def _touched_persons(self, ctx: BuildContext, ids: str, persons: str) -> int:
        """The persons the affected ids belonged to (their kept rows) and belong to now
        (resolved through today's links); how many."""
        scope = f"(SELECT id FROM {ids})"
        first_hop = links_sql(scope)
        second_hop = links_sql(f"(SELECT to_id FROM ({first_hop}))")
        ctx.command(
            f"""CREATE TABLE {persons} ENGINE = Memory AS
            SELECT DISTINCT person FROM (
                SELECT person FROM {ctx.persons} ARRAY JOIN ids AS id WHERE id IN {scope}
                UNION ALL
                SELECT if(l2.to_id != '', l2.to_id, if(l1.to_id != '', l1.to_id, a.id)) AS person
                FROM (SELECT DISTINCT id FROM {ids}) AS a
                LEFT JOIN ({first_hop}) AS l1 ON a.id = l1.from_id
                LEFT JOIN ({second_hop}) AS l2 ON l1.to_id = l2.from_id
            )"""
        )
        return int(ctx.rows(f"SELECT count() FROM {persons}")[0][0])

    def _replace(self, ctx: BuildContext, kept: Kept, temp: dict[str, str]) -> None:
        """Recompute the touched persons' rows from all their ids' events and swap them in."""
        persons, scope, rows = temp["touched"], temp["scope"], temp["rows"]
        touched = f"(SELECT person FROM {persons})"
        # Every stored id that can resolve to a touched person: the person's own id, ids
        # linked to it, and ids linked to those (any link row: a superset is harmless, the
        # rows are filtered by person below).
        ctx.command(
            f"""CREATE TABLE {scope} ENGINE = Memory AS
            WITH hop1 AS (SELECT anonymous_id FROM identities WHERE user_id IN {touched})
            SELECT DISTINCT id FROM (
                SELECT id FROM {temp["ids"]}
                UNION ALL SELECT person AS id FROM {persons}
                UNION ALL SELECT anonymous_id AS id FROM hop1
                UNION ALL SELECT anonymous_id AS id FROM identities WHERE user_id IN hop1
                UNION ALL SELECT arrayJoin(ids) AS id FROM {ctx.persons} WHERE person IN {touched}
            )"""
        )
        # The scope's ids holding two rows of one message (resends not merged yet): only
        # their events need FINAL (see `persons_sql`).
        dups = temp["dups"]
        ctx.command(
            f"""CREATE TABLE {dups} ENGINE = Memory AS
            SELECT DISTINCT person_id AS id FROM events
            WHERE person_id IN (SELECT id FROM {scope})
            GROUP BY person_id, message_id HAVING count() > 1""",
            final=False,
        )
        params: dict[str, Any] = {}
        select = ctx.persons_select(
            params,
            id_scope=f"(SELECT id FROM {scope})",
            final_scope=f"(SELECT id FROM {dups})",
        )
        ctx.command(
            f"CREATE TABLE {rows} ENGINE = Memory AS "
            f"SELECT * FROM ({select}) WHERE person IN {touched}",
            params,
            final=False,
        )
        if kept.engine == "Memory":  # mutations of Memory tables are synchronous
            ctx.command(f"ALTER TABLE {ctx.persons} DELETE WHERE person IN {touched}")
        else:
            ctx.command(f"DELETE FROM {ctx.persons} WHERE person IN {touched}")
        ctx.command(f"INSERT INTO {ctx.persons} SELECT * FROM {rows}")


def _without_window(filters: MapFilters) -> MapFilters:
    return msgspec.structs.replace(filters, since=None, until=None)
