"""The journey map served by a running collector: /v1/map, the CLI through it, and the
refreshable journey_steps table, all read back from the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.harness import CollectorProcess


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(
        tmp_path / "data",
        env={
            "TOUCHPOINT_MAP__REFRESH_SECONDS": "2",
            "TOUCHPOINT_MAP__INBOX_LOOKBACK_SECONDS": "0.2",
        },
    ).start()
    now = datetime.now(UTC)

    def at(hours: float) -> str:
        return (now - timedelta(hours=hours)).isoformat()

    batch = []
    for i in range(12):
        anon, user = f"anon-{i}", f"user-{i}"
        batch += [
            {
                "type": "track",
                "event": "Ad Clicked",
                "anonymousId": anon,
                "timestamp": at(50),
                "messageId": f"{i}-1",
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": anon,
                "timestamp": at(49),
                "messageId": f"{i}-2",
            },
            {
                "type": "identify",
                "anonymousId": anon,
                "userId": user,
                "timestamp": at(48.5),
                "traits": {"persona": "saver" if i % 2 else "spender"},
                "messageId": f"{i}-3",
            },
        ]
        if i < 8:  # eight buy, four drop off after viewing
            batch.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": user,
                    "timestamp": at(48),
                    "messageId": f"{i}-4",
                }
            )
    response = process.post("/v1/batch", {"batch": batch})
    assert response.json()["accepted"] == len(batch)
    process.wait_drained()
    yield process
    process.stop()


def test_map_endpoint_serves_the_current_map(shop: CollectorProcess) -> None:
    response = shop.request(
        "GET", "/v1/map?fresh=1", headers={"Authorization": f"Bearer {shop.read_key()}"}
    )
    assert response.status == 200, response
    journey_map = response.json()
    coverage = journey_map["coverage"]
    assert coverage["persons"] == 12
    assert coverage["stitched_journeys"] == 12  # every journey began anonymous
    assert coverage["converted_persons"] == 8
    stages = {row["stage"]: row for row in journey_map["stages"]}
    assert stages["awareness"]["persons"] == 12
    assert stages["consideration"]["converted_persons"] == 8
    edges = {(e["source"], e["target"]): e for e in journey_map["edges"]}
    assert edges[("product_viewed", "purchase")]["persons"] == 8
    assert edges[("START", "ad_click")]["transitions"] == 12
    assert journey_map["path_to_goal"]["steps"] == ["ad_click", "product_viewed", "purchase"]
    assert journey_map["comparison"] is not None  # the default map has a window to compare
    assert len(journey_map["grid"]) == 5


def test_map_filters_and_auth(shop: CollectorProcess) -> None:
    auth = {"Authorization": f"Bearer {shop.read_key()}"}
    savers = shop.request("GET", "/v1/map?persona=saver&since=30d", headers=auth).json()
    assert savers["coverage"]["persons"] == 6
    assert savers["filters"]["persona"] == "saver"
    assert shop.request("GET", "/v1/map").status == 401
    bad = shop.request("GET", "/v1/map?since=yesterday-ish", headers=auth)
    assert bad.status == 400
    assert "since" in bad.json()["error"]["message"] or "time" in bad.json()["error"]["message"]


def test_a_polled_filtered_map_is_built_once_per_refresh_interval(shop: CollectorProcess) -> None:
    """Viewer tabs poll filtered maps; the same filters within `map.refresh_seconds` get the
    map already built (same `built_at`), `fresh=1` rebuilds, other filters build their own."""
    auth = {"Authorization": f"Bearer {shop.read_key()}"}

    def built_at(query: str) -> str:
        response = shop.request("GET", f"/v1/map?{query}", headers=auth)
        assert response.status == 200
        return str(response.json()["built_at"])

    first = built_at("since=30d&source=web")
    assert built_at("source=web&since=30d") == first  # same filters, any order
    assert built_at("since=30d&source=web&fresh=1") != first
    assert built_at("since=31d&source=web") != first


def map_cli(shop: CollectorProcess, fmt: str) -> subprocess.CompletedProcess[str]:
    """`touchpoint map` in another process, pointed at the running collector's data dir."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(shop.data_dir),
            "map",
            "--since",
            "30d",
            "--format",
            fmt,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_touchpoint_map_cli_goes_through_the_running_collector(shop: CollectorProcess) -> None:
    out = map_cli(shop, "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["coverage"]["converted_persons"] == 8
    mermaid = map_cli(shop, "mermaid")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR")
    assert "product viewed" in mermaid.stdout


def test_journey_steps_refresh_inside_clickhouse(shop: CollectorProcess) -> None:
    rows = shop.wait_until(
        "SELECT uniqExact(person), count() FROM journey_steps", [[12, 32]], timeout=30
    )
    assert rows == [[12, 32]]  # 12 x (ad click, product view) + 8 purchases
    status = shop.query(
        "SELECT status FROM system.view_refreshes WHERE view = 'journey_steps_refresh'"
    )
    assert status and status[0][0] in ("Scheduled", "Running")
    snapshots = shop.wait_until("SELECT count() > 0 FROM map_snapshots", [[1]], timeout=30)
    assert snapshots == [[1]]


def test_map_results_are_plain_tables_for_analysts(shop: CollectorProcess) -> None:
    auth = {"Authorization": f"Bearer {shop.read_key()}"}
    served = shop.request("GET", "/v1/map?fresh=1", headers=auth).json()
    latest = "built_at = (SELECT max(built_at) FROM {table})"
    edges = shop.query(
        "SELECT source, target, persons FROM map_edges WHERE "
        + latest.format(table="map_edges")
        + " ORDER BY source, target"
    )
    assert sorted([e["source"], e["target"], e["persons"]] for e in served["edges"]) == edges
    stages = shop.query(
        "SELECT stage, persons FROM map_stages WHERE "
        + latest.format(table="map_stages")
        + " ORDER BY persons DESC, stage"
    )
    assert stages[0] == ["awareness", 12]
    nodes = shop.query("SELECT count() FROM map_nodes WHERE " + latest.format(table="map_nodes"))
    assert nodes == [[len(served["nodes"])]]


def test_the_default_map_follows_new_events_by_recomputing_only_their_persons(
    shop: CollectorProcess,
) -> None:
    """The collector keeps the default map's person rows: after more events arrive, the
    next rebuild recomputes only the persons they touch, and the map shows them."""
    auth = {"Authorization": f"Bearer {shop.read_key()}"}
    time.sleep(0.5)  # past the look-back: later rebuilds re-read none of the fixture's rows
    before = shop.request("GET", "/v1/map?fresh=1", headers=auth).json()
    assert before["coverage"]["converted_persons"] == 8
    rebuilds_before = len([e for e in shop.logs() if e.get("event") == "map rebuilt"])
    late = datetime.now(UTC) - timedelta(hours=1)
    extra = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"user-{i}",
            "timestamp": late.isoformat(),
            "messageId": f"late-{i}",
        }
        for i in (8, 9)  # two who had dropped off come back and buy
    ]
    assert shop.post("/v1/batch", {"batch": extra}).json()["accepted"] == 2
    shop.wait_drained()
    after = shop.request("GET", "/v1/map?fresh=1", headers=auth).json()
    assert after["coverage"]["converted_persons"] == 10
    assert after["coverage"]["persons"] == 12
    # Background rebuilds (every 2 s here) may have run in between, and a rebuild re-reads
    # the inbox 0.2 s before the previous one: each recomputed at most the two persons.
    since = [e for e in shop.logs() if e.get("event") == "map rebuilt"][rebuilds_before:]
    assert since and all(e["mode"] == "incremental" for e in since), since
    assert all(e["persons_recomputed"] <= 2 for e in since), since
    assert sum(e["persons_recomputed"] for e in since) >= 2, since


def test_without_kept_rows_every_rebuild_starts_from_scratch(tmp_path: Path) -> None:
    process = CollectorProcess(
        tmp_path / "data", env={"TOUCHPOINT_MAP__KEEP_ROWS": "false"}
    ).start()
    try:
        now = datetime.now(UTC)
        batch = [
            {
                "type": "track",
                "event": "Order Completed",
                "userId": f"user-{i}",
                "timestamp": (now - timedelta(hours=i + 1)).isoformat(),
                "messageId": f"m-{i}",
            }
            for i in range(3)
        ]
        assert process.post("/v1/batch", {"batch": batch}).json()["accepted"] == 3
        process.wait_drained()
        auth = {"Authorization": f"Bearer {process.read_key()}"}
        built = process.request("GET", "/v1/map?fresh=1", headers=auth).json()
        assert built["coverage"]["converted_persons"] == 3
        rebuilt = [e for e in process.logs() if e.get("event") == "map rebuilt"]
        assert rebuilt and rebuilt[-1]["mode"] is None
        tables = process.query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            "AND name LIKE '\\_map\\_%'"
        )
        assert tables == [[0]]  # no rows kept between builds
    finally:
        process.stop()


def test_the_previous_period_is_built_once_and_then_read_from_its_snapshot(
    shop: CollectorProcess,
) -> None:
    """The default window starts at a whole UTC day, so the window it is compared with
    stays put between refreshes (every 2 s here): one snapshot of it serves them all."""
    auth = {"Authorization": f"Bearer {shop.read_key()}"}
    for _ in range(3):
        built = shop.request("GET", "/v1/map?fresh=1", headers=auth).json()
        assert built["comparison"] is not None
    since = datetime.fromisoformat(built["filters"]["since"])
    assert (since.hour, since.minute, since.second) == (0, 0, 0)
    rebuilds = [e for e in shop.logs() if e.get("event") == "map rebuilt"]
    assert len(rebuilds) >= 3
    previous = shop.query(
        "SELECT since, until, count() FROM map_snapshots WHERE until IS NOT NULL "
        "GROUP BY since, until"
    )
    # One window (two if the test straddles midnight UTC), built once each.
    assert 1 <= len(previous) <= 2 and all(n == 1 for *_, n in previous), previous
