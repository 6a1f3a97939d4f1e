"""``touchpoint demo``: the whole job on a fresh machine, in one command.

Starts the collector on a fresh embedded store (under ``<data_dir>/demo``), simulates a
few thousand persons of three businesses sending touchpoints through the real SDK over
HTTP, waits until ClickHouse has every event, builds the journey map, prints it, checks
that the planted pain points were found, writes ``journey-map.html``, and keeps serving the
live map at ``/map`` until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from touchpoint_collector.config import Config
from touchpoint_collector.journey.model import JourneyMap
from touchpoint_collector.journey.render import to_text
from touchpoint_collector.keys import KeyKind, KeyStore
from touchpoint_collector.server import Running, serve
from touchpoint_collector.simulator import (
    BUSINESSES,
    PLANTED,
    RETURNING_PRODUCT,
    progress_bar,
    send,
    simulate,
)


def demo_config(config: Config, port: int | None) -> Config:
    data_dir = config.data_path / "demo"
    return msgspec.structs.replace(
        config,
        data_dir=str(data_dir),
        store=msgspec.structs.replace(config.store, dsn="", database="touchpoint"),
        server=msgspec.structs.replace(
            config.server,
            port=config.server.port if port is None else port,
            open_read_on_loopback=True,
            shutdown_timeout_seconds=10.0,
        ),
        wal=msgspec.structs.replace(config.wal, segment_max_age_seconds=0.25),
        log_level="warning",
    )


def planted_findings(journey_map: JourneyMap) -> dict[str, bool]:
    """Which planted pain points a map reveals."""
    found = {(p.kind, p.touchpoint) for p in journey_map.pain_points}
    return {name: target in found for name, target in PLANTED.items()}


def run_demo(
    config: Config,
    *,
    persons: int = 3000,
    seed: int = 7,
    serve_forever: bool = True,
    html: Path | None = Path("journey-map.html"),
    json_out: Path | None = None,
    port: int | None = None,
) -> int:
    config = demo_config(config, port)
    shutil.rmtree(config.data_path, ignore_errors=True)  # a fresh demo every time
    config.data_path.mkdir(parents=True)
    keys = KeyStore(config.data_path)
    write_keys = {
        name: keys.create(name, KeyKind.WRITE, note="touchpoint demo")[0] for name in BUSINESSES
    }
    print(f"Touchpoint demo: {persons:,} persons of an online shop, a B2B SaaS and a bank")
    return asyncio.run(_demo(config, write_keys, persons, seed, serve_forever, html, json_out))


async def _demo(
    config: Config,
    write_keys: dict[str, str],
    persons: int,
    seed: int,
    serve_forever: bool,
    html: Path | None,
    json_out: Path | None,
) -> int:
    ready: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(config, on_ready=ready.set_result))
    waiting: set[asyncio.Future[Any]] = {ready, server}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        return server.result()  # it failed to start (the error is already reported)
    running = ready.result()
    print(f"collector on {running.url} (embedded ClickHouse under {config.data_path})")

    people = list(simulate(persons, seed=seed))
    started = time.monotonic()
    stats = await asyncio.to_thread(_send_through_sdk, running.url, write_keys, people)
    print(
        f"sent {stats['sent']:,} events through the SDK in {time.monotonic() - started:.1f} s; lost: {stats['lost'] or 'none'}"
    )

    collector = running.app
    # Every acknowledged event into ClickHouse: the loader empties the log in the
    # background, and the log has no event to wait on, so look every 100 ms.
    while collector.wal.backlog_bytes:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert collector.maps is not None
    maps = collector.maps
    overall = await maps.rebuild_default()
    # A journey map is drawn per business: one map per source, over the same window.
    now = overall.coverage.as_of
    per_business = {}
    for name in BUSINESSES:
        filters = msgspec.structs.replace(maps.default_filters(now), sources=(name,))
        per_business[name] = await maps.build(filters, maps.settings, now)
    for name, journey_map in per_business.items():
        print(f"\n=== {TITLES[name]} ===")
        print(to_text(journey_map), end="")
    # The shop's returns: the same map filtered by product shows which one comes back.
    print("\nReturns soon after purchase, by product (shop maps filtered by product):")
    for product in PRODUCTS:
        filters = msgspec.structs.replace(
            maps.default_filters(now), sources=("shop",), properties=(("product", product),)
        )
        by_product = await maps.build(filters, maps.settings, now)
        returners = next((n.persons for n in by_product.nodes if n.id == "return_requested"), 0)
        buyers = by_product.coverage.converted_persons
        flagged = any(
            (p.kind, p.touchpoint) == PLANTED["shop-returns"] for p in by_product.pain_points
        )
        print(
            f"  {product:<15} {returners:>4} of {buyers:>4} buyers asked to return it "
            f"({returners / buyers if buyers else 0:.0%}){'  <- pain point' if flagged else ''}"
        )
        if product == RETURNING_PRODUCT:
            per_business["shop-returns"] = by_product
    print()
    findings = {
        name: planted_findings(per_business[name if name in per_business else "shop"])[name]
        for name in PLANTED
    }
    for name, (kind, touchpoint) in PLANTED.items():
        mark = "found" if findings[name] else "NOT FOUND"
        print(f"planted pain point ({name}): {kind} at {touchpoint}: {mark}")
    print(
        f"stitched journeys: {overall.coverage.stitched_journeys:,} of {overall.coverage.journeys:,} "
        f"({overall.coverage.stitched_share:.0%}) began anonymous and were joined to a known person"
    )
    if html is not None:
        from touchpoint_collector.viewer import render_html

        await asyncio.to_thread(html.write_text, render_html(overall))
        print(f"wrote {html}")
    if json_out is not None:
        await asyncio.to_thread(
            json_out.write_bytes, msgspec.json.encode({"overall": overall, **per_business})
        )
    if serve_forever:
        print(f"\nThe live map: {running.url}/map   (Ctrl-C to stop)")
        sys.stdout.flush()
    else:
        running.stop()
    code = await server
    return code if all(findings.values()) else 1


TITLES = {"shop": "online shop (B2C)", "saas": "B2B SaaS", "bank": "bank"}
PRODUCTS = ("Trail Runner X", "City Walker", "Court Classic")


def _send_through_sdk(url: str, write_keys: dict[str, str], people: list[Any]) -> dict[str, Any]:
    import touchpoint

    clients = {
        name: touchpoint.Client(key, host=url, max_queue_size=500_000, max_queue_bytes=1 << 30)
        for name, key in write_keys.items()
    }
    sent = send(people, clients, progress=progress_bar("simulating"))
    lost: dict[str, int] = {}
    for client in clients.values():
        client.flush(timeout=120)
        client.shutdown(timeout=30)
        for reason, count in _losses(client).items():
            lost[reason] = lost.get(reason, 0) + count
    return {"sent": sent, "lost": lost}


def _losses(client: Any) -> dict[str, int]:
    """Events the SDK counted as lost, by reason (it never loses one silently)."""
    import touchpoint

    stats = client.stats()
    return {
        reason: getattr(stats, reason)
        for reason in touchpoint.DROP_REASONS
        if getattr(stats, reason)
    }
