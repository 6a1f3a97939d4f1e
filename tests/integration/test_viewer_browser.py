"""The journey-map viewer in a real browser (headless Chromium, driven by Playwright).

A real collector gets a small shop's journeys; then the live page at ``/map`` and an
exported file from ``touchpoint map --html`` are opened and read back: stage columns,
touchpoints, numbers and filters must match the collector's ``/v1/map`` JSON, a filter
change must update the numbers, and the console must stay free of errors. Screenshots at
1280 and 390 px wide go to ``test-output/viewer/``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.harness import CollectorProcess

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
SHOTS = REPO_ROOT / "test-output" / "viewer"
PERSONAS = ("saver", "spender", "explorer")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install chromium); it is not installed here",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package (the dev extra)"
)


class Person:
    """One person's events, in time order: anonymous until identified."""

    def __init__(self, events: list[dict[str, Any]], name: str, start: datetime, now: datetime):
        self.events = events
        self.name = name
        self.clock = start
        self.latest = now - timedelta(seconds=5)
        self.known = False

    def step(self, touchpoint: str, minutes: float, **extra: Any) -> None:
        self.clock += timedelta(minutes=minutes)
        who = (
            {"userId": f"user-{self.name}"} if self.known else {"anonymousId": f"anon-{self.name}"}
        )
        self.events.append(
            {
                "type": "track",
                "event": touchpoint.replace("_", " ").title(),
                "touchpoint": touchpoint,
                "timestamp": min(self.clock, self.latest).isoformat(),
                "messageId": f"{self.name}-{len(self.events)}",
                **who,
                **extra,
            }
        )

    def identify(self, persona: str) -> None:
        self.events.append(
            {
                "type": "identify",
                "anonymousId": f"anon-{self.name}",
                "userId": f"user-{self.name}",
                "timestamp": min(self.clock, self.latest).isoformat(),
                "traits": {"persona": persona},
                "messageId": f"{self.name}-id",
            }
        )
        self.known = True


def shop_events(
    persons: int, now: datetime, *, seed: int = 7, days_ago: tuple[float, float] = (1, 40)
) -> list[dict[str, Any]]:
    """Journeys of a small shop: awareness to advocacy, with drop-offs, loops, offline
    touchpoints, support contacts, returns and feedback scores, and three personas."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(persons):
        start = now - timedelta(days=rng.uniform(*days_ago))
        p = Person(events, f"{seed}-{i:03d}", start, now)
        p.step(
            rng.choice(["ad_click", "social_engagement", "email_opened", "site_visit", "ad_click"]),
            0,
        )
        if rng.random() < 0.5:
            p.step("site_visit", rng.uniform(1, 30))
        if rng.random() < 0.08:
            p.step("unsubscribed", rng.uniform(1, 300))
        if rng.random() < 0.15:
            continue
        p.step("product_viewed", rng.uniform(5, 600))
        if rng.random() < 0.5:
            p.step("pricing_viewed", rng.uniform(1, 60))
            if rng.random() < 0.4:
                p.step("product_viewed", rng.uniform(1, 60))
        if rng.random() < 0.25:
            p.step(
                "feedback_given", rng.uniform(1, 20), properties={"score": rng.choice([8, 7, 9, 6])}
            )
        if rng.random() < 0.2:
            p.step("store_visit", rng.uniform(600, 4000), channel="store")
        if rng.random() < 0.1:
            p.step("phone_call", rng.uniform(60, 600))
        p.identify(PERSONAS[i % 3])
        if rng.random() < 0.3 + 0.15 * (i % 3 == 1):
            continue
        p.step("cart_added", rng.uniform(2, 2000))
        if rng.random() < 0.2:
            p.step("support_contact", rng.uniform(1, 30), channel="chat")
        p.step("checkout_started", rng.uniform(1, 20))
        if rng.random() < 0.25:
            if rng.random() < 0.5:
                p.step(
                    "feedback_given",
                    rng.uniform(1, 30),
                    properties={"score": rng.choice([2, 3, 4, 5])},
                )
            continue
        p.step("purchase", rng.uniform(1, 15))
        p.step("delivery_received", rng.uniform(1440, 6000), channel="delivery")
        if rng.random() < 0.2:
            p.step("support_contact", rng.uniform(60, 3000), channel="phone")
            if rng.random() < 0.5:
                p.step("return_requested", rng.uniform(60, 600))
        if rng.random() < 0.6:
            score = rng.choice([9, 8, 7, 10, 3, 6, 2])
            p.step("feedback_given", rng.uniform(600, 5000), properties={"score": score})
        if rng.random() < 0.4:
            p.step("app_opened", rng.uniform(60, 9000), channel="app")
        if rng.random() < 0.25:
            p.step("review_posted", rng.uniform(600, 9000))
            if rng.random() < 0.5:
                p.step(
                    "feedback_given",
                    rng.uniform(5, 60),
                    properties={"score": rng.choice([9, 10, 8])},
                )
        if rng.random() < 0.1:
            p.step("referral_made", rng.uniform(600, 9000))
    return events


def send(collector: CollectorProcess, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 2000):
        response = collector.post("/v1/batch", {"batch": events[start : start + 2000]})
        assert response.status == 200, response
        assert response.json()["accepted"] == len(events[start : start + 2000]), response


def api_map(collector: CollectorProcess, **query: str) -> dict[str, Any]:
    path = "/v1/map" + ("?" + urlencode(query) if query else "")
    response = collector.request("GET", path)
    assert response.status == 200, response
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """A collector (read endpoints open on loopback) with 240 persons in the last 40 days,
    150 in the period before, and one person of their own persona ("solo")."""
    process = CollectorProcess(
        tmp_path_factory.mktemp("viewer") / "data",
        config_text="[server]\nopen_read_on_loopback = true\n",
    ).start()
    try:
        now = datetime.now(UTC)
        events = shop_events(240, now) + shop_events(150, now, seed=3, days_ago=(100, 160))
        solo: list[dict[str, Any]] = [
            {
                "type": "track",
                "event": event,
                "userId": "solo-1",
                "timestamp": (now - timedelta(hours=hours)).isoformat(),
                "messageId": f"solo-{hours}",
            }
            for event, hours in (
                ("Ad Clicked", 30),
                ("Product Viewed", 29),
                ("Order Completed", 28),
            )
        ]
        solo.append(
            {
                "type": "identify",
                "userId": "solo-1",
                "traits": {"persona": "solo"},
                "messageId": "solo-id",
            }
        )
        send(process, events + solo)
        process.wait_drained()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


class Page:
    """A browser page that records console errors and failed requests."""

    def __init__(self, browser: Any, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(
            viewport=viewport, accept_downloads=True, has_touch=viewport["width"] < 600
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console {msg.type}: {msg.text}")
                if msg.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("requestfailed", lambda req: self.errors.append(f"request failed: {req.url}"))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready]", timeout=15_000)
        return self.page

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def desktop(browser: Any) -> Iterator[Page]:
    page = Page(browser, DESKTOP)
    yield page
    page.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Page]:
    page = Page(browser, PHONE)
    yield page
    page.close()


def kpi(page: Any, key: str) -> str:
    text: str = page.inner_text(f"[data-kpi={key}] .v")
    return text


def count(n: int) -> str:
    return f"{n:,}"


def assert_page_shows(page: Any, journey_map: dict[str, Any]) -> None:
    """Stage columns, touchpoints, flow nodes and the headline numbers match the JSON."""
    coverage = journey_map["coverage"]
    assert kpi(page, "persons") == count(coverage["persons"])
    assert kpi(page, "events") == count(coverage["events"])
    assert page.inner_text("[data-meta=events] dd") == count(coverage["events"])
    assert page.inner_text("[data-meta=persons] dd") == count(coverage["persons"])
    stages = page.eval_on_selector_all("#grid .stage-head", "els => els.map(e => e.dataset.stage)")
    assert stages == [column["stage"] for column in journey_map["grid"]]
    for column in journey_map["grid"]:
        head = page.locator(f"#grid .stage-head[data-stage={column['stage']}]")
        assert head.locator(".stage-persons").inner_text() == count(column["persons"])
    shown = page.eval_on_selector_all(
        "#grid .tp",
        "els => els.map(e => [e.dataset.touchpoint, Number(e.dataset.persons)])",
    )
    expected = [
        [tp["touchpoint"], tp["persons"]]
        for column in journey_map["grid"]
        for tp in column["touchpoints"]
    ]
    assert shown == expected
    nodes = page.eval_on_selector_all(
        "#flow .node", "els => els.map(e => [e.dataset.node, Number(e.dataset.persons)])"
    )
    assert sorted(nodes) == sorted([n["id"], n["persons"]] for n in journey_map["nodes"])
    for row in journey_map["stages"]:
        if row["conversion_rate"] is not None:
            text = page.text_content(f"#funnel [data-conv={row['stage']}]") or ""
            assert text.startswith(f"{round(row['conversion_rate'] * 100)}% go on"), text


def test_live_page_matches_the_api_and_filters_update_it(
    shop: CollectorProcess, desktop: Page
) -> None:
    page = desktop.open(shop.url + "/map?fresh=1")
    journey_map = api_map(shop)  # the kept-current map the page was just built from
    assert page.url.endswith("/map")  # a reload will not rebuild it again
    assert page.inner_text("#mode") == "Live"
    assert page.inner_text("[data-meta=built-at] dd").startswith(journey_map["built_at"][:10])
    assert_page_shows(page, journey_map)
    assert not page.is_disabled("#f-persona")
    assert page.input_value("#f-since") == "90d"  # the collector's default window
    # the persona filter comes from the collector's identify traits
    page.locator("#dl-persona option[value=saver]").wait_for(state="attached")
    desktop.shot("live-1280")

    page.fill("#f-persona", "saver")
    with page.expect_response(lambda r: "/v1/map?" in r.url and "persona=saver" in r.url):
        page.click("#f-apply")
    sync_api.expect(page.locator("[data-meta=filters] dd")).to_contain_text("saver")
    savers = api_map(shop, since="90d", persona="saver")
    assert savers["coverage"]["persons"] < journey_map["coverage"]["persons"]
    assert_page_shows(page, savers)
    assert "persona=saver" in page.url
    with page.expect_response(lambda r: "/v1/map?" in r.url and "persona=saver" in r.url):
        page.click("#refresh-now")  # on demand, with the same filters
    desktop.shot("live-1280-saver")
    # the Mermaid text of the filtered map comes from the collector (render.to_mermaid)
    with page.expect_response(
        lambda r: "/map/export/mermaid?" in r.url and "persona=saver" in r.url
    ):
        page.click("details[data-format=mermaid] summary")
    sync_api.expect(page.locator("#code-mermaid")).to_contain_text("flowchart LR")
    assert desktop.errors == []


def test_flow_is_keyboard_accessible(shop: CollectorProcess, desktop: Page) -> None:
    page = desktop.open(shop.url + "/map")
    journey_map = api_map(shop)
    nodes = {n["id"]: n for n in journey_map["nodes"]}
    page.focus("#flow .node[data-node=START]")
    page.keyboard.press("ArrowDown")  # the biggest line out of START
    focused = page.evaluate("document.activeElement.dataset.node")
    assert focused in nodes and focused != "START"
    page.keyboard.press("Enter")
    details = page.locator("#flow-details")
    assert details.locator("h3").get_attribute("data-details") == focused
    assert details.locator("[data-field=persons]").inner_text().split()[0] == count(
        nodes[focused]["persons"]
    )
    desktop.shot("flow-selected-1280", full_page=False)  # the details stay in view
    # an edge, reached from the details panel by keyboard
    page.focus("#flow-details [data-select-edge]")
    key = page.get_attribute("#flow-details [data-select-edge]", "data-select-edge")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.dataset.edge") == key
    source, target = key.split("\u2192")
    edge = next(e for e in journey_map["edges"] if (e["source"], e["target"]) == (source, target))
    assert details.locator("[data-field=transitions]").inner_text() == count(edge["transitions"])
    page.keyboard.press("Escape")
    assert details.locator("h3").inner_text() == "Select a touchpoint"
    assert desktop.errors == []


def test_exported_file_is_a_snapshot(
    shop: CollectorProcess, desktop: Page, phone: Page, tmp_path: Path
) -> None:
    html_file = tmp_path / "journey-map.html"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(shop.data_dir),
            "map",
            "--since",
            "90d",
            "--html",
            str(html_file),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    text = html_file.read_text()
    start = text.index('<script type="application/json" id="tp-map">') + len(
        '<script type="application/json" id="tp-map">'
    )
    embedded = json.loads(text[start : text.index("</script>", start)])
    page = desktop.open(html_file.as_uri())
    assert page.inner_text("#mode") == "Snapshot"
    assert_page_shows(page, embedded)
    for field in ("#f-since", "#f-source", "#f-channel", "#f-persona", "#f-apply"):
        assert page.is_disabled(field), field
    assert "snapshot" in page.inner_text("#filter-note")
    with page.expect_download() as download:
        page.click("#dl-svg")
    svg = Path(download.value.path()).read_text()
    assert svg.startswith("<?xml") and "<svg" in svg and "product viewed" in svg
    page.click("details[data-format=mermaid] summary")
    sync_api.expect(page.locator("#code-mermaid")).to_contain_text("flowchart LR")
    desktop.shot("snapshot-1280")
    assert desktop.errors == []

    page = phone.open(html_file.as_uri())
    assert_page_shows(page, embedded)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # the flow fits a phone's width: no sideways scrolling
    assert page.evaluate("document.getElementById('flow').scrollWidth") <= PHONE["width"]
    phone.shot("snapshot-390")
    page.tap("#flow .node[data-node=purchase]")
    assert page.locator("#flow-details h3").get_attribute("data-details") == "purchase"
    phone.shot("flow-selected-390", full_page=False)
    assert phone.errors == []


def test_empty_and_single_person_maps(shop: CollectorProcess, phone: Page) -> None:
    page = phone.open(shop.url + "/map?persona=nobody")
    assert page.is_visible("#empty")
    assert "No touchpoint events match" in page.inner_text("#empty")
    assert page.is_hidden("#content")
    phone.shot("empty-390")

    page = phone.open(shop.url + "/map?persona=solo&since=90d")
    solo = api_map(shop, persona="solo", since="90d")
    assert solo["coverage"]["persons"] == 1
    assert_page_shows(page, solo)
    assert "Only 1 person" in page.inner_text("#banner")
    assert "No drivers yet" in page.inner_text("#drivers")
    phone.shot("solo-390")
    assert phone.errors == []
