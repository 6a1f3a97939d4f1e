"""The journey-map viewer: one self-contained HTML page, served at ``/map`` by the
collector and written by ``touchpoint map --html FILE``.

(Placeholder until the viewer lands: a minimal page, so the hooks and the CLI flag work.)
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from touchpoint_collector.journey.model import JourneyMap

if TYPE_CHECKING:
    from touchpoint_collector.app import CollectorApp


def render_html(journey_map: JourneyMap, *, live: bool = False) -> str:
    """The page for a map; `live` pages poll the collector's ``/v1/map`` for updates."""
    data = html.escape(msgspec.json.encode(journey_map).decode())
    return (
        f"<!doctype html><meta charset=utf-8><title>Touchpoint journey map</title><pre>{data}</pre>"
    )


def register(app: web.Application, collector: CollectorApp) -> None:
    """Add the viewer's routes to the collector's application."""

    async def page(request: web.Request) -> web.Response:
        collector.authorize_read(request)
        if collector.maps is None:
            raise web.HTTPServiceUnavailable()
        journey_map = await collector.maps.for_request({})
        return web.Response(text=render_html(journey_map, live=True), content_type="text/html")

    app.router.add_get("/map", page)
