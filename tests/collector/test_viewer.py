"""The journey-map viewer page without a browser: one self-contained file, the map's JSON
inside it intact and unable to break out of its element, and the collector's routes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from touchpoint_collector.journey.model import (
    ChannelShare,
    Comparison,
    Coverage,
    Edge,
    GridColumn,
    JourneyMap,
    MapFilters,
    MapSettings,
    Node,
    PainPoint,
    PathVariant,
    StageRow,
    TouchpointReach,
)
from touchpoint_collector.journey.params import MapParamError
from touchpoint_collector.viewer import register, render_html

EVIL = "</script><script>alert(1)</script>"
BUILT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def coverage(persons: int, events: int) -> Coverage:
    return Coverage(
        events=events,
        persons=persons,
        journeys=persons,
        stitched_journeys=0,
        stitched_share=0.0,
        ended_journeys=persons,
        in_progress_journeys=0,
        converted_persons=persons // 2,
        goal_rate=0.5 if persons else 0.0,
        as_of=BUILT,
        end_after_seconds=86_400.0,
        first_event=BUILT if events else None,
        last_event=BUILT if events else None,
    )


def empty_map(**filters: Any) -> JourneyMap:
    return JourneyMap(
        filters=MapFilters(**filters),
        settings=MapSettings(),
        built_at=BUILT,
        build_seconds=0.1,
        coverage=coverage(0, 0),
        stages=[],
        backward_moves=[],
        nodes=[],
        edges=[],
        paths=[],
        path_to_goal=None,
        drivers=[],
    )


def small_map(touchpoint: str = "product_viewed", persona: str | None = None) -> JourneyMap:
    """Two persons: both view a product (named `touchpoint`), one buys."""

    def node(id: str, kind: str, stage: str, persons: int) -> Node:
        return Node(
            id=id,
            kind=kind,
            stage=stage,
            persons=persons,
            steps=persons,
            events=persons,
            reach=persons / 2,
            repeat_rate=0.0,
        )

    def edge(source: str, target: str, persons: int) -> Edge:
        return Edge(
            source=source,
            target=target,
            transitions=persons,
            persons=persons,
            p_next=1.0,
            median_seconds=60.0,
            p90_seconds=60.0,
            goal_after_persons=0,
            goal_after_rate=0.0,
        )

    stages = ["awareness", "consideration", "purchase", "retention", "advocacy"]
    persons = {"consideration": 2, "purchase": 1}
    return JourneyMap(
        filters=MapFilters(persona=persona),
        settings=MapSettings(),
        built_at=BUILT,
        build_seconds=0.2,
        coverage=coverage(2, 3),
        stages=[
            StageRow(
                stage=stage,
                persons=persons.get(stage, 0),
                next_stage=stages[i + 1] if i < 4 else None,
                converted_persons=1 if stage == "consideration" else 0,
                conversion_rate=(0.5 if stage == "consideration" else 0.0)
                if persons.get(stage) and i < 4
                else None,
                median_seconds_to_next=60.0 if stage == "consideration" else None,
                p90_seconds_to_next=60.0 if stage == "consideration" else None,
                dropped_persons=1 if stage in persons else 0,
                dropoff_rate=(1 / persons[stage]) if stage in persons else None,
            )
            for i, stage in enumerate(stages)
        ],
        backward_moves=[],
        nodes=[
            node("START", "start", "", 2),
            node(touchpoint, "touchpoint", "consideration", 2),
            node("purchase", "touchpoint", "purchase", 1),
            node("END", "end", "", 2),
        ],
        edges=[
            edge("START", touchpoint, 2),
            edge(touchpoint, "purchase", 1),
            edge(touchpoint, "END", 1),
            edge("purchase", "END", 1),
        ],
        paths=[
            PathVariant(
                steps=[touchpoint], journeys=1, coverage=0.5, goal_journeys=0, goal_rate=0.0
            )
        ],
        path_to_goal=PathVariant(
            steps=[touchpoint, "purchase"], journeys=1, coverage=0.5, goal_journeys=1, goal_rate=1.0
        ),
        drivers=[],
        pain_points=[
            PainPoint(
                kind="dropoff",
                touchpoint=touchpoint,
                stage="consideration",
                persons=1,
                rate=0.5,
                baseline=0.1,
                examples=[EVIL],
                detail=f"half stop after {touchpoint}",
            )
        ],
        grid=[
            GridColumn(
                stage=stage,
                phase="before_purchase",
                persons=persons.get(stage, 0),
                touchpoints=[TouchpointReach(touchpoint=touchpoint, persons=2, reach=1.0)]
                if stage == "consideration"
                else [],
                channels=[ChannelShare(channel="web", online=True, steps=2, share=1.0)]
                if stage in persons
                else [],
                conversion_to_next=None,
                dropoff_rate=None,
                median_seconds_in_stage=None,
                mean_score=None,
                negative_signal_rate=0.0,
                sentiment=None,
                pain_points=[],
                opportunities=[],
            )
            for stage in stages
        ],
        comparison=Comparison(
            previous_since="2026-10-01T00:00:00+00:00",
            previous_until="2026-11-01T00:00:00+00:00",
            persons_before=0,
            new_edges=[],
            vanished_edges=[],
            node_deltas=[],
            stage_shifts=[],
        ),
    )


class PageParts(HTMLParser):
    """Every element's attributes, and the text of each <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._open: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._open is None:
            return
        tag, attrs = self._open
        if tag == "script":
            self.scripts.append((attrs, data))
        else:
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def parse(page: str) -> PageParts:
    parts = PageParts()
    parts.feed(page)
    parts.close()
    return parts


def script_data(page: str, element_id: str) -> Any:
    for attrs, text in parse(page).scripts:
        if attrs.get("id") == element_id:
            return json.loads(text)
    raise AssertionError(f"no script element {element_id}")


def as_json(journey_map: JourneyMap) -> Any:
    return json.loads(msgspec.json.encode(journey_map))


def test_page_is_one_self_contained_file() -> None:
    page = render_html(small_map())
    parts = parse(page)
    for tag, attrs in parts.attrs:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith(("#", "data:")), (tag, href)
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in "".join(parts.styles).replace("url(#", "")
    # the script and the stylesheet are inlined, and the CSP admits exactly those
    code = [text for attrs, text in parts.scripts if "type" not in attrs]
    assert len(code) == 1 and "renderAll" in code[0]
    assert len(parts.styles) == 1 and ".jgrid" in parts.styles[0]
    csp = next(
        a["content"] for t, a in parts.attrs if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp is not None
    for text in (code[0], parts.styles[0]):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp


def test_page_carries_the_map_json() -> None:
    journey_map = small_map()
    page = render_html(journey_map)
    assert script_data(page, "tp-map") == as_json(journey_map)
    boot = script_data(page, "tp-boot")
    assert boot["live"] is False
    assert boot["mermaid"].startswith("flowchart LR")
    assert boot["dot"].startswith("digraph journey")
    assert boot["exports_for"] == script_data(page, "tp-map")["built_at"]  # same spelling


def test_live_page_may_call_its_collector() -> None:
    page = render_html(small_map(), live=True, default_window_days=90.0)
    boot = script_data(page, "tp-boot")
    assert boot["live"] is True and boot["default_window_days"] == 90.0
    assert "connect-src 'self'" in page.replace("&#x27;", "'")
    assert 'data-mode="live"' in page


@pytest.mark.parametrize("where", ["persona", "touchpoint"])
def test_script_end_tags_in_the_data_cannot_break_out(where: str) -> None:
    journey_map = small_map(persona=EVIL) if where == "persona" else small_map(touchpoint=EVIL)
    page = render_html(journey_map)
    assert EVIL not in page
    assert page.lower().count("</script") == 3  # the map, the boot data and the code
    assert "<!--" not in page
    parts = parse(page)
    assert len(parts.scripts) == 3
    data = script_data(page, "tp-map")
    assert data == as_json(journey_map)
    assert data["pain_points"][0]["examples"] == [EVIL]
    if where == "persona":
        assert data["filters"]["persona"] == EVIL
    else:
        assert data["nodes"][1]["id"] == EVIL
        assert EVIL in script_data(page, "tp-boot")["mermaid"]  # intact, yet escaped


def test_empty_map_renders() -> None:
    journey_map = empty_map(persona="nobody")
    page = render_html(journey_map)
    assert script_data(page, "tp-map")["coverage"]["events"] == 0
    assert 'id="empty"' in page
    assert re.search(r"<title>[^<]*Journey map[^<]*</title>", page)


def test_title_is_escaped() -> None:
    page = render_html(small_map())
    title = re.search(r"<title>([^<]*)</title>", page)
    assert title is not None and "2026-11-01 12:00 UTC" in title[1]


# -- routes ---------------------------------------------------------------------------


class FakeMaps:
    def __init__(self, result: JourneyMap | Exception) -> None:
        self.result = result
        self.queries: list[dict[str, list[str]]] = []

    async def for_request(self, query: dict[str, list[str]]) -> JourneyMap:
        self.queries.append(dict(query))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def fake_collector(maps: FakeMaps | None) -> Any:
    def authorize_read(request: web.Request) -> None:
        if request.headers.get("Authorization") != "Bearer read":
            raise web.HTTPUnauthorized()

    return SimpleNamespace(
        authorize_read=authorize_read,
        maps=maps,
        config=SimpleNamespace(map=SimpleNamespace(default_window_days=90.0)),
    )


async def client_for(maps: FakeMaps | None) -> TestClient[Any, Any]:
    app = web.Application()
    register(app, fake_collector(maps))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


AUTH = {"Authorization": "Bearer read"}


async def test_map_route_serves_the_live_page_with_its_filters() -> None:
    maps = FakeMaps(small_map(persona="saver"))
    client = await client_for(maps)
    try:
        response = await client.get("/map?persona=saver&since=30d&bogus=1", headers=AUTH)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
        assert script_data(page, "tp-boot")["live"] is True
        assert script_data(page, "tp-map")["filters"] == {"persona": "saver"}
        assert maps.queries == [{"persona": ["saver"], "since": ["30d"]}]  # no unknown keys
        assert (await client.get("/map")).status == 401
    finally:
        await client.close()


async def test_map_exports_and_errors() -> None:
    client = await client_for(FakeMaps(small_map()))
    try:
        mermaid = await client.get("/map/export/mermaid?persona=saver", headers=AUTH)
        assert mermaid.status == 200
        assert (await mermaid.text()).startswith("flowchart LR")
        assert "journey-map.mmd" in mermaid.headers["Content-Disposition"]
        dot = await client.get("/map/export/dot", headers=AUTH)
        assert (await dot.text()).startswith("digraph journey")
        assert (await client.get("/map/export/svg", headers=AUTH)).status == 404
    finally:
        await client.close()
    client = await client_for(FakeMaps(MapParamError("cannot read time 'soon'")))
    try:
        bad = await client.get("/map?since=soon", headers=AUTH)
        assert bad.status == 400
        assert "cannot read time" in await bad.text()
    finally:
        await client.close()
    client = await client_for(None)
    try:
        assert (await client.get("/map", headers=AUTH)).status == 503
    finally:
        await client.close()


def _collector_with_map(keys: Any) -> Any:
    """The real CollectorApp (real auth and routes) with a map service that needs no store."""
    from unittest.mock import MagicMock

    from touchpoint_collector.app import CollectorApp
    from touchpoint_collector.config import load_config
    from touchpoint_collector.metrics import Metrics

    collector = CollectorApp(
        load_config(env={}), MagicMock(), MagicMock(), MagicMock(), keys, Metrics(), "x"
    )
    collector.maps = FakeMaps(small_map())  # type: ignore[assignment]
    return collector


async def test_a_read_key_opens_the_map_through_a_cookie(tmp_path: Path) -> None:
    """Browsers cannot send a Bearer header when they open a page: /map offers a form, trades
    the key for an HttpOnly cookie, and drops the key from the address."""
    from touchpoint_collector.keys import KeyKind, KeyStore

    keys = KeyStore(tmp_path)
    read_key, _ = keys.create("analysts", KeyKind.READ)
    write_key, _ = keys.create("shop", KeyKind.WRITE)
    collector = _collector_with_map(keys)
    async with TestClient(TestServer(collector.build())) as client:
        form = await client.get("/map")
        assert form.status == 401
        assert 'name="key"' in await form.text()
        wrong = await client.get("/map", params={"key": write_key}, allow_redirects=False)
        assert wrong.status == 401
        signed = await client.get(
            "/map", params={"key": read_key, "persona": "saver"}, allow_redirects=False
        )
        assert signed.status == 303
        assert "key=" not in signed.headers["Location"]
        assert "persona=saver" in signed.headers["Location"]
        cookie = signed.cookies["tp_read_key"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        page = await client.get("/map", cookies={"tp_read_key": read_key})
        assert page.status == 200
        assert "<!doctype html>" in (await page.text()).lower()
        data = await client.get("/v1/map", cookies={"tp_read_key": read_key})
        assert data.status == 200
