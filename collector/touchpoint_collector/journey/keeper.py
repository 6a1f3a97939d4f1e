"""A map kept current between builds: its person rows stay in ClickHouse, and each rebuild
updates only the persons that changed since the previous one.

Every figure of the map is a function of the person rows (``docs/journey-map.md``), and a
person's row depends only on the events of the stored ids that resolve to them and on
those ids' identity links. So a rebuild needs to update the persons of:

* ids with new events, resends included;
* ids whose link changed, and the ids linked to those (persons resolve in two hops), on
  both sides of the change: the person an id leaves and the person it joins;
* ids with events that entered or left the window, when ``since`` or ``until`` moved.

New rows are found in ``journey_inbox``, which materialized views fill on every insert into
``events`` and ``identities``, whoever writes them; a rebuild never scans the events to
learn what is new. An event's inbox row carries the event, so a person who only has new
events gets them merged into their kept row without their earlier events being read
again ("appended"); the others are recomputed from all their ids' events. Replaced rows
are marked dead (a ``Set`` of row ids that every read skips) rather than deleted, and
every view runs over the live rows as in a one-off build, so the result is the same map
``build_map`` makes: the tests hold the two to equality.

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
from touchpoint_collector.journey.ledger import Change, Ledger
from touchpoint_collector.journey.model import JourneyMap, MapFilters, MapSettings
from touchpoint_collector.journey.steps import EVENT_COLUMNS, KEPT_COLUMNS, links_sql
from touchpoint_collector.store import Store, quote_ident
from touchpoint_schemas.taxonomy import Taxonomy

log = structlog.get_logger("touchpoint.map")

INBOX_GRACE: Final = timedelta(seconds=60)
"""Inbox rows are stamped (``arrived``) when their insert writes them, and ClickHouse does
not order their visibility against the events of the same insert: either may be seen
first. So each rebuild reads the inbox from this long before the previous one started,
skipping the rows whose events the previous one put in their rows (``Kept.seen``); the
others only recompute a few persons twice. It also absorbs clock skew
between the nodes of a cluster (each shard stamps its own rows), which must stay well
under it."""
SEEN_KEY: Final = "cityHash64({id}, {message_id}, {arrived})"
"""What identifies an inbox row among those seen, hashed: a build tests each row its
look-back reads against every row the previous builds merged, and a set of 64-bit
numbers does that in 30 to 45 ms for 400,000 rows against 300,000, where a set of the
three columns themselves took 150 to 200 ms (a 128-bit hash: 90 to 100 ms). Two rows
that share a hash (a few chances in 10^9 per build at 100,000 rows a batch) would skip a
new event until the next full rebuild."""
FULL_EVERY_SECONDS: Final = 3 * 3600.0
FULL_ABOVE_SHARE: Final = 0.4
"""Past this share of the kept persons touched, a rebuild starts over instead: the update's
scoped reads cost about twice a full build when they cover everybody (measured at 10M)."""
COMPACT_ABOVE_SHARE: Final = 0.25
"""Past this many replaced rows per live one, an update deletes them for good (a rewrite of
the table), so reads never skip more than this."""
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

    generation: int = 0
    """How many updates the table has had: the high half of the ``rid`` of the rows the
    next one inserts."""
    dead_rows: int = 0
    """Rows replaced since the table was last compacted."""

    @property
    def dead(self) -> str:
        """The Set of the ``rid`` of replaced rows, which every read skips: marking a row
        replaced costs a few milliseconds, deleting it rewrites the whole in-memory table
        (0.8 to 1.2 s at 10M events), and skipping 10% dead rows costs a view 4 to 20 ms."""
        return self.table.removesuffix("_persons") + "_dead"

    @property
    def killed(self) -> str:
        """The ``rid`` of the rows the current update replaced, until its views have read
        them (``ledger.py``: they count with sign -1)."""
        return self.table.removesuffix("_persons") + "_killed"

    @property
    def seen(self) -> str:
        """The table of the inbox rows whose events the previous build put in their
        persons' rows (``h``: :data:`SEEN_KEY` of the row, and ``arrived``): the next one
        reads the inbox from before it started again (``INBOX_GRACE``), and must not
        append those twice, nor recompute their persons again for them."""
        return self.table.removesuffix("_persons") + "_seen"


@dataclass(frozen=True)
class LastBuild:
    """What the keeper's last build did, for logs and the benchmark."""

    mode: str
    """``full`` or ``incremental``."""
    reason: str
    persons_recomputed: int
    """Persons whose rows were replaced, ``persons_appended`` of them by appending."""
    persons_appended: int
    persons_total: int
    timings: list[tuple[str, float]]
    """(query's first words, seconds) for every query of the build."""
    views_corrected: list[str]
    """The tallied views counted over the changed rows only (``ledger.py``)..."""
    views_recounted: list[str]
    """... and those counted over every live row: all of them in a full build."""


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
        self.ledger = Ledger()
        """The tallied views' figures as of the previous build (``ledger.py``)."""
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
        ctx.compiled = full
        try:
            recomputed = appended = 0
            if full:
                self._rebuild(ctx)
            else:
                reason = "new events, links or a moved window"
                touched = self._update(ctx)
                if touched is None:
                    # A backfill or a large merge: scoped to most persons, the update would
                    # cost more than starting over.
                    full, reason = True, "most persons touched"
                    ctx.prefix, ctx.compiled = new_prefix(), True
                    self._rebuild(ctx)
                else:
                    recomputed, appended = touched
            kept = self.kept
            assert kept is not None
            kept.read_from = server_now
            book = ctx.ledger = self.ledger
            book.corrected, book.recounted, book.value_changes = [], [], {}
            try:
                ctx.finish()
                built = assemble(ctx, self.taxonomy, started)
            finally:
                if book.changed_rows:
                    self.store.command(f"DROP TABLE IF EXISTS {book.changed_rows} SYNC")
                book.changed_rows = ""
            book.as_of_ms, book.end_after_ms = ctx.as_of_ms, ctx.end_after_ms
            book.change = None
            kept.rows = built.coverage.persons  # one per live row
            self._forget_views(book.untouched())
            self._compact(ctx, kept)
        except BaseException:
            self.forget()  # rows or figures may be half updated: the next build starts over
            raise
        self.last = LastBuild(
            mode="full" if full else "incremental",
            reason=reason,
            persons_recomputed=built.coverage.persons if full else recomputed,
            persons_appended=0 if full else appended,
            persons_total=built.coverage.persons,
            timings=ctx.timings,
            views_corrected=self.ledger.corrected,
            views_recounted=self.ledger.recounted,
        )
        return built

    def forget(self) -> None:
        """Drop the kept rows; the next build is a full one."""
        if self.kept is not None:
            kept = self.kept
            for table in (kept.table, kept.dead, kept.seen, kept.killed):
                self.store.command(f"DROP TABLE IF EXISTS {quote_ident(table)} SYNC")
        book = self.ledger
        self._forget_views(sorted(book.views.keys() | book.spreads.keys() | book.ranks.keys()))
        self.kept = None
        self.ledger = Ledger()

    def _forget_views(self, names: list[str]) -> None:
        """Drop what the ledger keeps of the views `names`: the next build counts them
        over every live row again. A view the map skipped (say, paths while no journey
        is in the window) did not see this build's change."""
        book = self.ledger
        for name in names:
            book.views.pop(name, None)
            if (spread := book.spreads.pop(name, None)) is not None:
                self.store.command(f"DROP TABLE IF EXISTS {quote_ident(spread.table)} SYNC")
            if (ranking := book.ranks.pop(name, None)) is not None:
                self.store.command(f"DROP TABLE IF EXISTS {ranking.table} SYNC")

    # -- when to start over ---------------------------------------------------------------

    def _look_back(self, kept: Kept) -> datetime:
        """Where a build starts reading the inbox: `inbox_grace` before the previous one
        started (see ``INBOX_GRACE``)."""
        return kept.read_from - self.inbox_grace

    def _links_arrived(self, kept: Kept) -> bool:
        found = self.store.query(
            "SELECT count() FROM journey_inbox "
            "WHERE arrived >= {from:DateTime64(6, 'UTC')} AND kind = 'link'",
            parameters={"from": self._look_back(kept)},
        ).result_rows
        return bool(found[0][0])

    def _count_rows(self, kept: Kept) -> int:
        """Live person rows in the kept table; -1 when it or its dead set is gone."""
        for table in (kept.table, kept.dead):
            found = self.store.query(f"EXISTS TABLE {quote_ident(table)}").result_rows
            if not found or not found[0][0]:
                return -1
        live = f"{quote_ident(kept.table)} WHERE rid NOT IN {quote_ident(kept.dead)}"
        return int(self.store.query(f"SELECT count() FROM {live}").result_rows[0][0])

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
        if self._count_rows(kept) != kept.rows:
            # Dropped, or emptied: a Memory table loses its rows when a ClickHouse server
            # restarts under a running collector.
            return "kept rows are gone"
        return ""

    def _rebuild(self, ctx: BuildContext) -> None:
        self.forget()
        sweep_stale(self.store)
        ctx.table, ctx.dead = f"{ctx.prefix}_persons", ""
        ctx.load_names()
        params: dict[str, Any] = {}
        engine = ctx.engine()
        ctx.command(
            f"CREATE TABLE {ctx.persons} ENGINE = {engine} AS "
            f"SELECT toUInt64(rowNumberInAllBlocks()) AS rid, * "
            f"FROM ({ctx.persons_select(params, kept=True)})",
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
        self.store.command(
            f"CREATE TABLE {quote_ident(self.kept.seen)} "
            "(h UInt64, arrived DateTime64(6, 'UTC')) ENGINE = Memory"
        )
        self._new_dead_set(self.kept)
        self.ledger = Ledger(home=ctx.table.removesuffix("_persons"))  # records every view

    def _new_dead_set(self, kept: Kept) -> None:
        self.store.command(f"DROP TABLE IF EXISTS {quote_ident(kept.dead)} SYNC")
        self.store.command(
            f"CREATE TABLE {quote_ident(kept.dead)} (rid UInt64) ENGINE = Set "
            "SETTINGS persistent = 0"
        )
        kept.dead_rows = 0

    # -- updating the persons that changed -----------------------------------------------

    def _update(self, ctx: BuildContext) -> tuple[int, int] | None:
        """Update the changed persons' rows: how many were replaced, and how many of those
        by appending their new events (None: too many, rebuild in full)."""
        kept = self.kept
        assert kept is not None
        ctx.table = kept.table
        ctx.dead = kept.dead if kept.dead_rows else ""
        self.store.command(f"DROP TABLE IF EXISTS {quote_ident(kept.killed)} SYNC")
        self.ledger.change = Change(killed="", born_from=(kept.generation + 1) << 32)
        ctx.load_names((kept.touchpoints, kept.channels), self._look_back(kept))
        temp = {
            name: quote_ident(f"{ctx.prefix}_{name}")
            for name in ("ids", "inbox", "news", "old", "fresh", "touched", "scope", "dups", "rows")
        }
        # Whether a new event passes a property or persona filter is not in its inbox row.
        appending = ctx.filters.persona is None and not ctx.filters.properties
        try:
            self._affected_ids(ctx, kept, temp["ids"], appending)
            if appending:
                self._news(ctx, kept, temp["inbox"], temp["news"])
            self._touched_persons(ctx, temp["ids"], temp["touched"])
            if appending:
                # What merging needs of the kept rows of the persons with new events, read
                # once: a search reads the columns it takes of every kept row.
                ctx.command(
                    f"CREATE TABLE {temp['old']} ENGINE = Memory AS "
                    f"SELECT rid, person, ids, {EVENT_COLUMNS} FROM "
                    + ctx.persons_where(f"person IN (SELECT person FROM {temp['news']})")
                )
            appended = self._appendable(ctx, kept, temp) if appending else 0
            recomputed = int(ctx.rows(f"SELECT count() FROM {temp['touched']}")[0][0])
            if recomputed + appended > self.full_above_share * max(kept.rows, 1):
                return None
            if recomputed or appended:
                self._replace(ctx, kept, temp, recomputed, appended)
            if appending and (recomputed or appended):
                self._remember_read(ctx, kept, temp)
        finally:
            for table in temp.values():
                self.store.command(f"DROP TABLE IF EXISTS {table} SYNC")
        kept.filters = ctx.filters
        kept.touchpoints, kept.channels = ctx.touchpoints, ctx.channels
        return recomputed + appended, appended

    def _affected_ids(self, ctx: BuildContext, kept: Kept, ids: str, appending: bool) -> None:
        """Stored ids whose person must be recomputed from their events: with new links,
        linked to an id with a new link, with events in the part of the time axis the
        window gained or lost, and (unless `appending`, which decides on new events
        later) with new events."""
        params: dict[str, Any] = {"from": self._look_back(kept)}
        arrived = "arrived >= {from:DateTime64(6, 'UTC')}"
        # Rows written before the inbox carried events (payload = 0) only name their id.
        kinds = "(kind = 'link' OR payload = 0)" if appending else "1"
        ctx.command(f"CREATE TABLE {ids} (id String) ENGINE = Memory")
        ctx.command(
            f"INSERT INTO {ids} SELECT id FROM journey_inbox WHERE {arrived} AND {kinds}", params
        )
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

    def _news(self, ctx: BuildContext, kept: Kept, inbox: str, news: str) -> None:
        """The new events, from the inbox rows that arrived since the previous build and
        whose events are not in their rows already (copied once: resolving their persons
        reads them three times), each marked with whether the map's filters keep it
        (``passes``: see ``steps.news_sql``)."""
        params: dict[str, Any] = {"from": self._look_back(kept)}
        ctx.command(
            f"""CREATE TABLE {inbox} ENGINE = Memory AS
            SELECT * FROM journey_inbox
            PREWHERE arrived >= {{from:DateTime64(6, 'UTC')}}
                AND {SEEN_KEY.format(id="id", message_id="message_id", arrived="arrived")}
                    NOT IN (SELECT h FROM {quote_ident(kept.seen)})
            WHERE kind = 'event' AND payload = 1""",
            params,
        )
        ctx.command(
            f"CREATE TABLE {news} ENGINE = Memory AS {ctx.news_select(params, inbox)}", params
        )

    def _touched_persons(self, ctx: BuildContext, ids: str, persons: str) -> None:
        """The persons the affected ids belonged to (their kept rows) and belong to now
        (resolved through today's links)."""
        if not int(ctx.rows(f"SELECT count() FROM {ids}")[0][0]):
            # Only new events (the usual update): no need to search every kept row's ids.
            ctx.command(f"CREATE TABLE {persons} (person String) ENGINE = Memory")
            return
        scope = f"(SELECT id FROM {ids})"
        first_hop = links_sql(scope)
        second_hop = links_sql(f"(SELECT to_id FROM ({first_hop}))")
        ctx.command(
            f"""CREATE TABLE {persons} ENGINE = Memory AS
            SELECT DISTINCT person FROM (
                SELECT person FROM {ctx.persons_where(f"arrayExists(x -> x IN {scope}, ids)")}
                UNION ALL
                SELECT if(l2.to_id != '', l2.to_id, if(l1.to_id != '', l1.to_id, a.id)) AS person
                FROM (SELECT DISTINCT id FROM {ids}) AS a
                LEFT JOIN ({first_hop}) AS l1 ON a.id = l1.from_id
                LEFT JOIN ({second_hop}) AS l2 ON l1.to_id = l2.from_id
            )"""
        )

    def _appendable(self, ctx: BuildContext, kept: Kept, temp: dict[str, str]) -> int:
        """Sort the persons with new events (and no other change) into those whose events
        can be merged into their kept rows, and those to recompute (added to the touched
        persons, their new events' ids to the affected ids); how many can be merged.

        A kept row holds its person's events, so merging gives the row recomputing would
        wherever the new events fall (before, between, inside or tied with kept steps),
        unless one is a resend: its message is in the row's ``ev_mid``, or twice among
        the new events. Which copy of a resend counts is ``FINAL``'s choice, so those
        persons are read from ``events``. A person without a kept row had no event in the
        map before.

        The same goes for a new event the map's filters drop whose message is in the row,
        or among the person's new events the filters keep: if ``FINAL`` keeps that copy,
        the event leaves the map. Persons with only such dropped events and no resend
        among them are left as they are.
        """
        news, fresh, touched = temp["news"], temp["fresh"], temp["touched"]
        ctx.command(
            f"""CREATE TABLE {fresh} ENGINE = Memory AS
            SELECT n.person AS person,
                   toUInt8(
                       n.unique AND NOT hasAny(k.ev_mid, arrayConcat(n.mids, n.dropped))
                       AND NOT hasAny(n.mids, n.dropped)
                   ) AS ok
            FROM (
                SELECT person,
                       groupArrayIf(mid, passes = 1) AS mids,
                       groupArrayIf(mid, passes = 0) AS dropped,
                       uniqExactIf(person_id, mid, passes = 1) = countIf(passes = 1) AS unique
                FROM {news}
                WHERE person NOT IN (SELECT person FROM {touched})
                GROUP BY person
            ) AS n
            LEFT JOIN {temp["old"]} AS k ON k.person = n.person
            WHERE notEmpty(n.mids) OR ok = 0""",
            final=False,
        )
        ctx.command(
            f"""INSERT INTO {temp["ids"]} SELECT person_id FROM {news}
            WHERE person IN (SELECT person FROM {fresh} WHERE ok = 0)""",
            final=False,
        )
        ctx.command(f"INSERT INTO {touched} SELECT person FROM {fresh} WHERE ok = 0", final=False)
        return int(ctx.rows(f"SELECT count() FROM {fresh} WHERE ok = 1")[0][0])

    def _replace(
        self, ctx: BuildContext, kept: Kept, temp: dict[str, str], recomputed: int, appended: int
    ) -> None:
        """Compute the changed persons' rows and swap them in: the touched persons' from all
        their ids' events, the others' by appending their new events to their kept rows."""
        persons, scope, rows = temp["touched"], temp["scope"], temp["rows"]
        touched = f"(SELECT person FROM {persons})"
        appending = f"(SELECT person FROM {temp['fresh']} WHERE ok = 1)"
        ctx.command(
            f"CREATE TABLE {rows} ENGINE = Memory AS SELECT {KEPT_COLUMNS} FROM {ctx.persons} "
            "LIMIT 0"
        )
        if recomputed:
            # Every stored id that can resolve to a touched person: the person's own id, ids
            # linked to it, and ids linked to those (any link row: a superset is harmless,
            # the rows are filtered by person below).
            ctx.command(
                f"""CREATE TABLE {scope} ENGINE = Memory AS
                WITH hop1 AS (SELECT anonymous_id FROM identities WHERE user_id IN {touched})
                SELECT DISTINCT id FROM (
                    SELECT id FROM {temp["ids"]}
                    UNION ALL SELECT person AS id FROM {persons}
                    UNION ALL SELECT anonymous_id AS id FROM hop1
                    UNION ALL SELECT anonymous_id AS id FROM identities WHERE user_id IN hop1
                    UNION ALL
                    SELECT arrayJoin(ids) AS id FROM {ctx.persons_where(f"person IN {touched}")}
                )"""
            )
            # The scope's ids holding two rows of one message (resends not merged yet): only
            # their events need FINAL (see `persons_sql`).
            dups = temp["dups"]
            ctx.command(
                f"""CREATE TABLE {dups} ENGINE = Memory AS
                SELECT DISTINCT person_id AS id FROM events
                PREWHERE person_id IN (SELECT id FROM {scope})
                GROUP BY person_id, message_id HAVING count() > 1""",
                final=False,
            )
            params: dict[str, Any] = {}
            select = ctx.persons_select(
                params,
                id_scope=f"(SELECT id FROM {scope})",
                final_scope=f"(SELECT id FROM {dups})",
                kept=True,
            )
            ctx.command(
                f"INSERT INTO {rows} SELECT * FROM ({select}) WHERE person IN {touched}",
                params,
                final=False,
            )
        if appended:
            params = {}
            news = f"(SELECT * FROM {temp['news']} WHERE passes = 1 AND person IN {appending})"
            select = ctx.appended_select(params, news, temp["old"])
            ctx.command(f"INSERT INTO {rows} {select}", params, final=False)
        # Mark the replaced rows dead rather than delete them (see `Kept.dead`), and add the
        # new rows after them with ids of their own.
        table = quote_ident(kept.table)
        killed = quote_ident(kept.killed)
        replaced = (
            [f"SELECT rid FROM {ctx.persons_where(f'person IN {touched}')}"] if recomputed else []
        )
        if appended:
            replaced.append(f"SELECT rid FROM {temp['old']} WHERE person IN {appending}")
        ctx.command(f"CREATE TABLE {killed} ENGINE = Memory AS {' UNION ALL '.join(replaced)}")
        marked = int(ctx.rows(f"SELECT count() FROM {killed}")[0][0])
        ctx.command(f"INSERT INTO {quote_ident(kept.dead)} SELECT rid FROM {killed}")
        kept.generation += 1
        ctx.command(
            f"INSERT INTO {table} SELECT {kept.generation} * 4294967296 + rowNumberInAllBlocks() "
            f"AS rid, * FROM {rows}"
        )
        kept.dead_rows += marked
        ctx.dead = kept.dead
        self.ledger.change = Change(killed=killed, born_from=kept.generation << 32)

    def _compact(self, ctx: BuildContext, kept: Kept) -> None:
        """Once the views have read them (see `Kept.killed`), drop the replaced rows for
        good when there are too many of them to skip."""
        self.store.command(f"DROP TABLE IF EXISTS {quote_ident(kept.killed)} SYNC")
        if kept.dead_rows > COMPACT_ABOVE_SHARE * max(kept.rows, 1):
            table, dead = quote_ident(kept.table), f"rid IN {quote_ident(kept.dead)}"
            if kept.engine == "Memory":  # mutations of Memory tables are synchronous
                ctx.command(f"ALTER TABLE {table} DELETE WHERE {dead}")
            else:
                ctx.command(f"DELETE FROM {table} WHERE {dead}")
            self._new_dead_set(kept)

    def _remember_read(self, ctx: BuildContext, kept: Kept, temp: dict[str, str]) -> None:
        """Add the inbox rows whose events are in the new rows to those the next build
        skips, and forget the ones it will not read again (older than its look-back).

        Merged events are in their rows by construction. A recomputed person's event
        may not be: its inbox row can be seen before the event itself is (see
        ``INBOX_GRACE``), so only the rows whose message is among the row's events
        count. Without this, every build within the look-back would recompute the
        person again. Rows the map's filters drop are never skipped: that their message
        is in the row does not tell which copy ``FINAL`` kept (``_appendable``)."""
        seen = quote_ident(kept.seen)
        # This build's look-back start is older than the next one's: a few more
        # rows stay than need to, never fewer.
        ctx.command(
            f"ALTER TABLE {seen} DELETE WHERE arrived < {{since:DateTime64(6, 'UTC')}}",
            {"since": self._look_back(kept)},
        )
        merged = f"(SELECT person FROM {temp['fresh']} WHERE ok = 1)"
        ctx.command(
            f"""INSERT INTO {seen}
            SELECT {SEEN_KEY.format(id="person_id", message_id="mid", arrived="arrived")}, arrived
            FROM {temp["news"]} WHERE passes = 1 AND person IN {merged}
            UNION ALL
            SELECT {SEEN_KEY.format(id="person_id", message_id="mid", arrived="arrived")}, arrived
            FROM {temp["news"]} WHERE passes = 1 AND person NOT IN {merged} AND (person, mid) IN (
                -- a set of (person, message) pairs: joining each new event to its
                -- person's row instead copies the row's messages once per new event
                SELECT person, arrayJoin(ev_mid) FROM {temp["rows"]} WHERE person NOT IN {merged}
            )""",
            final=False,
        )


def _without_window(filters: MapFilters) -> MapFilters:
    return msgspec.structs.replace(filters, since=None, until=None)
