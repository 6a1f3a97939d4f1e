"""The collector's journey map: kept current in the background, served by ``/v1/map``.

Map builds are heavy ClickHouse queries, so they run one at a time, in a worker thread, on
a store connection of their own. The default map (the configured window, no filters) is
rebuilt every ``map.refresh_seconds`` by a :class:`MapKeeper` (which recomputes only the
persons touched since its last build) and served from memory; a filtered request builds
its own map on demand, and the same request within ``map.refresh_seconds`` is served that
map again (the default map's freshness), so a viewer tab polling a filtered map costs one
build per refresh interval, not one per poll. ``fresh=1`` always rebuilds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import structlog

from touchpoint_collector.config import Config
from touchpoint_collector.journey import refresh, tables
from touchpoint_collector.journey.keeper import MapKeeper
from touchpoint_collector.journey.model import JourneyMap, MapFilters
from touchpoint_collector.journey.params import parse
from touchpoint_collector.journey.service import current_map
from touchpoint_collector.journey.settings import settings_from_config
from touchpoint_collector.store import Store

log = structlog.get_logger("touchpoint.map")

QUERY_KEYS = (
    "since",
    "until",
    "persona",
    "goal",
    "gap_days",
    "end_after_days",
    "top_n",
    "min_support",
)
LIST_KEYS = {"source": "sources", "channel": "channels", "property": "properties"}
CACHED_MAPS = 32
"""Filtered maps kept for reuse (the least recently built go first)."""


class MapService:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.taxonomy = config.build_taxonomy()
        self.settings = settings_from_config(config, self.taxonomy)
        self._store = store
        self._map_store: Store | None = None
        self._lock = asyncio.Lock()
        self.latest: JourneyMap | None = None
        self._cache: dict[tuple[tuple[str, tuple[str, ...]], ...], tuple[float, JourneyMap]] = {}
        self._task: asyncio.Task[None] | None = None
        self._keeper: MapKeeper | None = None

    def _store_for_maps(self) -> Store:
        if self._map_store is None:
            self._map_store = Store(self._store.target, role="touchpoint serve (maps)")
        return self._map_store

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.to_thread(
                refresh.install,
                self._store_for_maps(),
                self.settings,
                self.config.map.refresh_seconds,
            )
        except Exception as exc:  # a map problem must never stop ingestion
            log.error("could not install the journey_steps refresh", error=str(exc))
        while True:
            try:
                await self.rebuild_default()
            except Exception as exc:
                log.error("map rebuild failed", error=str(exc))
            await asyncio.sleep(self.config.map.refresh_seconds)

    def default_filters(self, now: datetime) -> MapFilters:
        """The last ``map.default_window_days``, from a whole UTC day (a whole hour for a
        window under a day). The start moves once a day, so the previous period is one
        fixed window all day: built once, then read from its snapshot (a start moving with
        the clock would rebuild it from scratch at every refresh)."""
        window = timedelta(days=self.config.map.default_window_days)
        grain = (
            timedelta(days=1) if window >= timedelta(days=1) else timedelta(hours=1)
        ).total_seconds()
        start = (now - window).timestamp()
        return MapFilters(since=datetime.fromtimestamp(start // grain * grain, UTC))

    def previous_filters(self, current: MapFilters) -> MapFilters:
        """The window of ``map.default_window_days`` just before the default map's."""
        assert current.since is not None
        window = timedelta(days=self.config.map.default_window_days)
        return msgspec.structs.replace(current, since=current.since - window, until=current.since)

    async def rebuild_default(self) -> JourneyMap:
        now = datetime.now(UTC)
        if self._keeper is None and self.config.map.keep_rows:
            self._keeper = MapKeeper(
                self._store_for_maps(),
                self.settings,
                taxonomy=self.taxonomy,
                inbox_grace=timedelta(seconds=self.config.map.inbox_lookback_seconds),
            )
        filters = self.default_filters(now)
        # One hold of the lock from building to serving: a build queued behind this one
        # must not replace the keeper's account of it before it is logged, nor have its
        # newer map overwritten by this older one.
        async with self._lock:
            built = await self._build(
                filters, self.settings, now, self._keeper, self.previous_filters(filters)
            )
            last = self._keeper.last if self._keeper else None
            await asyncio.to_thread(tables.write, self._store_for_maps(), built)
            self.latest = built
        log.info(
            "map rebuilt",
            persons=built.coverage.persons,
            events=built.coverage.events,
            seconds=built.build_seconds,
            mode=last.mode if last else None,
            persons_recomputed=last.persons_recomputed if last else None,
            persons_appended=last.persons_appended if last else None,
            views_recounted=last.views_recounted if last else None,
            reason=last.reason if last else None,
        )
        return built

    async def build(self, filters: MapFilters, settings: object, now: datetime) -> JourneyMap:
        """A map built on demand, after any build already running."""
        async with self._lock:
            return await self._build(filters, settings, now)

    async def _build(
        self,
        filters: MapFilters,
        settings: object,
        now: datetime,
        keeper: MapKeeper | None = None,
        previous: MapFilters | None = None,
    ) -> JourneyMap:
        """`build` for a caller that holds the lock."""
        return await asyncio.to_thread(
            current_map,
            self._store_for_maps(),
            filters,
            settings,  # type: ignore[arg-type]
            taxonomy=self.taxonomy,
            now=now,
            keeper=keeper,
            previous=previous,
            inbox_grace=timedelta(seconds=self.config.map.inbox_lookback_seconds),
        )

    async def for_request(self, query: Mapping[str, Sequence[str]]) -> JourneyMap:
        """The map a request asks for; the kept-current default map when it asks for nothing
        (or ``?fresh=1`` to rebuild it now)."""
        wanted = {k: v for k, v in query.items() if k != "fresh"}
        if not wanted:
            if self.latest is None or query.get("fresh"):
                return await self.rebuild_default()
            return self.latest
        key = tuple(sorted((k, tuple(v)) for k, v in wanted.items()))
        cached = self._cache.get(key)
        if cached and not query.get("fresh"):
            built_at, found = cached
            if time.monotonic() - built_at < self.config.map.refresh_seconds:
                return found
        kwargs: dict[str, object] = {key: query[key][-1] for key in QUERY_KEYS if key in query}
        for name, target in LIST_KEYS.items():
            if name in query:
                kwargs[target] = list(query[name])
        now = datetime.now(UTC)
        filters, settings = parse(**kwargs, base=self.settings, now=now)  # type: ignore[arg-type]
        built = await self.build(filters, settings, now)
        self._cache[key] = (time.monotonic(), built)
        while len(self._cache) > CACHED_MAPS:
            del self._cache[min(self._cache, key=lambda k: self._cache[k][0])]
        return built

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            if self._map_store is not None:
                if self._keeper is not None:
                    with contextlib.suppress(Exception):
                        self._keeper.forget()  # its Memory table would not survive anyway
                self._map_store.close()
