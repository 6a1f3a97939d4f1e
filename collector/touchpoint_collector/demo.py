"""``touchpoint demo``: show the pipeline working on the embedded store.

At this stage it feeds a small Segment-shaped batch, good and bad events mixed, through the
same ingest code the collector runs, then reads back what ClickHouse holds.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from touchpoint_collector.config import Config
from touchpoint_collector.enrich import Arrival
from touchpoint_collector.ingest import prepare_batch
from touchpoint_collector.migrations import migrate
from touchpoint_collector.store import Store
from touchpoint_collector.tables import render
from touchpoint_collector.writer import write_rows


def sample_batch(now: datetime) -> bytes:
    def at(minutes: int) -> str:
        return (now - timedelta(minutes=minutes)).isoformat()

    anon = f"anon-{uuid.uuid4().hex[:8]}"
    events = [
        {"type": "track", "event": "Ad Clicked", "anonymousId": anon, "timestamp": at(60)},
        {"type": "page", "name": "Pricing", "anonymousId": anon, "timestamp": at(55)},
        {"type": "track", "event": "Product Viewed", "anonymousId": anon, "timestamp": at(50)},
        {"type": "identify", "anonymousId": anon, "userId": "ada", "traits": {"persona": "saver"}},
        {"type": "track", "event": "Order Completed", "userId": "ada", "timestamp": at(40)},
        {
            "type": "track",
            "event": "Survey Submitted",
            "userId": "ada",
            "properties": {"score": 9},
            "timestamp": at(10),
        },
        {"type": "track", "event": "Store Visit", "userId": "ada", "touchpoint": "store_visit"},
        # two events the contract refuses: they land in rejected_events, not in the void
        {
            "type": "track",
            "event": "Survey Submitted",
            "userId": "ada",
            "properties": {"score": 42},
        },
        {"type": "teleport", "userId": "ada"},
    ]
    return json.dumps({"batch": events, "sentAt": now.isoformat()}).encode()


def run_demo(config: Config) -> int:
    taxonomy = config.build_taxonomy()
    with Store.open(config.dsn, config.store.database, role="touchpoint demo") as store:
        print(f"store: {store.target.describe()}")
        for migration in migrate(store):
            print(f"applied {migration.filename}")
        arrival = Arrival(source="demo", received_at=datetime.now(UTC), collector_id="demo")
        prepared, arrival = prepare_batch(sample_batch(arrival.received_at), arrival, taxonomy)
        write_rows(store, "events", prepared.events)
        write_rows(store, "identities", prepared.identities)
        write_rows(store, "rejected_events", prepared.rejected_rows(arrival, "/v1/batch"))
        print(f"\naccepted {prepared.accepted} events, rejected {len(prepared.rejections)}\n")
        for title, sql in (
            (
                "touchpoints by stage",
                "SELECT stage, touchpoint, channel, count() AS events, uniqExact(person_id) AS persons "
                "FROM events WHERE touchpoint != '' GROUP BY stage, touchpoint, channel "
                "ORDER BY min(timestamp)",
            ),
            (
                "rejected events",
                "SELECT reason_code, path, count() AS events FROM rejected_events "
                "GROUP BY reason_code, path ORDER BY events DESC",
            ),
        ):
            result = store.query(sql, settings={"final": 1})
            print(f"== {title}")
            print(render(result.column_names, result.result_rows))
    print('Query it yourself: .venv/bin/touchpoint sql "SELECT * FROM events LIMIT 5"')
    return 0
