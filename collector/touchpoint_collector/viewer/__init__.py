"""The journey-map viewer: one self-contained HTML page, served at ``/map`` by the
collector and written by ``touchpoint map --html FILE``.

The page is a template (``static/page.html``) with the stylesheet, the script and the map's
JSON inlined, so it opens offline and never loads anything from elsewhere: its
Content-Security-Policy allows only its own inline script and style (by hash) and, on a
live page, requests to the collector that served it. A live page polls ``/v1/map`` with
the filters the reader picked; an exported page is a snapshot and says so.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from touchpoint_collector.journey.model import JourneyMap
from touchpoint_collector.journey.params import MapParamError
from touchpoint_collector.journey.render import to_dot, to_mermaid
from touchpoint_collector.mapservice import LIST_KEYS, QUERY_KEYS

if TYPE_CHECKING:
    from touchpoint_collector.app import CollectorApp

POLL_SECONDS = 30
"""How often a live page asks the collector for the map again."""

EXPORTS = {
    "mermaid": (to_mermaid, "journey-map.mmd"),
    "dot": (to_dot, "journey-map.dot"),
}
_PAGE_KEYS = frozenset((*QUERY_KEYS, *LIST_KEYS, "fresh"))
_SLOT = re.compile(r"\{\{([A-Z_]+)\}\}")


class _Boot(msgspec.Struct, kw_only=True):
    """What the script needs besides the map itself."""

    live: bool
    poll_seconds: int
    default_window_days: float | None
    exports_for: datetime
    """The ``built_at`` of the map the embedded Mermaid and DOT texts were made from."""
    mermaid: str
    dot: str


@cache
def _asset(name: str) -> str:
    text = resources.files(__name__).joinpath("static", name).read_text("utf-8")
    # Inlined verbatim, so nothing in them may end their element early.
    for closer in ("</script", "</style", "<!--"):
        if name != "page.html" and closer in text.lower():
            raise ValueError(f"viewer asset {name} contains {closer!r}")
    return text


def script_json(value: object) -> str:
    """JSON that is safe as the text of a ``<script type="application/json">`` element.

    ``<``, ``>`` and ``&`` can only occur inside JSON strings, where their ``\\u`` escapes
    mean the same, so no value (a persona named ``</script>``, say) can close the element.
    """
    text = msgspec.json.encode(value).decode()
    for char in ("<", ">", "&", "\u2028", "\u2029"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(*, live: bool) -> str:
    """Only the page's own inline script and style run; a live page may call back home."""
    connect = "'self'" if live else "'none'"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_sha256(_asset('viewer.js'))}",
            f"style-src {_sha256(_asset('viewer.css'))}",
            "img-src data: blob:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def render_html(
    journey_map: JourneyMap, *, live: bool = False, default_window_days: float | None = None
) -> str:
    """The page for a map; `live` pages poll the collector's ``/v1/map`` for updates.

    `default_window_days` is the window of the collector's kept-current map, so a live
    page can offer it as the time filter's default.
    """
    boot = _Boot(
        live=live,
        poll_seconds=POLL_SECONDS,
        default_window_days=default_window_days,
        exports_for=journey_map.built_at,
        mermaid=to_mermaid(journey_map),
        dot=to_dot(journey_map),
    )
    built = f"{journey_map.built_at:%Y-%m-%d %H:%M} UTC"
    slots = {
        "TITLE": html.escape(f"Journey map · {built} · Touchpoint"),
        "CSP": html.escape(content_security_policy(live=live)),
        "MODE": "live" if live else "snapshot",
        "CSS": _asset("viewer.css"),
        "MAP": script_json(journey_map),
        "BOOT": script_json(boot),
        "JS": _asset("viewer.js"),
    }
    return _SLOT.sub(lambda match: slots[match[1]], _asset("page.html"))


def _map_query(request: web.Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query if key in _PAGE_KEYS}


_KEY_FORM = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Touchpoint journey map: read key</title>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem">
<h1>Touchpoint journey map</h1>
<p>This collector needs a read key to show the map ({message}).</p>
<form method="get" action="/map">
<label for="key">Read key</label><br>
<input id="key" name="key" type="password" autocomplete="off" required
       style="width: 100%; padding: .5rem; margin: .5rem 0" placeholder="tpr_...">
<button type="submit">Open the map</button>
</form>
<p><small>Create one with <code>touchpoint keys create --read --source NAME</code>. The key is
kept in a cookie for this site only and never shown in the address bar.</small></p>
</body></html>"""


def _sign_in(request: web.Request, collector: CollectorApp, key: str) -> web.Response:
    """Trade a read key from the form for a cookie, and reload without it in the URL."""
    from touchpoint_collector.app import READ_KEY_COOKIE  # app imports this module
    from touchpoint_collector.keys import KeyKind

    if collector.keys.authenticate(key, KeyKind.READ) is None:
        return web.Response(
            text=_KEY_FORM.format(message="that key is unknown, revoked, or not a read key"),
            status=401,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )
    rest = [(k, v) for k, v in request.query.items() if k != "key"]
    target = request.rel_url.with_query(rest) if rest else request.rel_url.with_query(None)
    response = web.Response(status=303, headers={"Location": str(target)})
    response.set_cookie(
        READ_KEY_COOKIE,
        key,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
    )
    return response


def register(app: web.Application, collector: CollectorApp) -> None:
    """Add the viewer's routes to the collector's application: the page at ``/map`` (with
    the same filters as ``/v1/map``) and its Mermaid and DOT exports."""

    async def journey_map_for(request: web.Request) -> JourneyMap:
        collector.authorize_read(request)
        if collector.maps is None:
            raise web.HTTPServiceUnavailable(text="the map service is not running")
        query: Mapping[str, Sequence[str]] = _map_query(request)
        try:
            return await collector.maps.for_request(query)
        except MapParamError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    async def page(request: web.Request) -> web.Response:
        from touchpoint_collector.app import HttpError  # app imports this module

        key = request.query.get("key")
        if key is not None:
            return _sign_in(request, collector, key)
        try:
            journey_map = await journey_map_for(request)
        except HttpError as exc:
            if exc.status != 401:
                raise
            return web.Response(
                text=_KEY_FORM.format(message=html.escape(exc.message)),
                status=401,
                content_type="text/html",
                headers={"Cache-Control": "no-store"},
            )
        text = render_html(
            journey_map, live=True, default_window_days=collector.config.map.default_window_days
        )
        return web.Response(
            text=text, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def export(request: web.Request) -> web.Response:
        renderer, filename = EXPORTS[request.match_info["format"]]
        journey_map = await journey_map_for(request)
        return web.Response(
            text=renderer(journey_map),
            content_type="text/plain",
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    app.router.add_get("/map", page)
    app.router.add_get("/map/export/{format:mermaid|dot}", export)
