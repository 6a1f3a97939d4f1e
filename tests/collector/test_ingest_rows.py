"""The rows the request path builds, and how ClickHouse reads them back.

Times travel as RFC 3339 text (msgspec's form for datetimes) and are parsed by ClickHouse
with ``best_effort``; logs written by older collectors hold epoch seconds instead, and a
replay of such a log must still store the same instants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from touchpoint_collector.enrich import EVENT_COLUMNS, Arrival, event_row, event_time
from touchpoint_collector.ingest import prepare_batch
from touchpoint_collector.store import EMBEDDED_MALLOC_CONF, Store
from touchpoint_collector.writer import encode_rows, insert_encoded, write_rows
from touchpoint_schemas import Taxonomy
from touchpoint_schemas.decode import decode_event
from touchpoint_schemas.events import event_name, event_properties, event_traits, event_type

RECEIVED = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
TIMES = ("timestamp", "original_timestamp", "sent_at", "received_at", "clock_skew_ms")


def ms(value: datetime) -> datetime:
    """What DateTime64(3) keeps of an instant: UTC, truncated to the millisecond."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def stored_times(store: Store, message_id: str) -> tuple[object, ...]:
    rows = store.rows(
        f"SELECT {', '.join(TIMES)} FROM events WHERE message_id = {{m:String}}", {"m": message_id}
    )
    assert len(rows) == 1, rows
    return rows[0]


def test_event_times_read_back_as_the_same_instants(store: Store) -> None:
    body = json.dumps(
        {
            "sentAt": "2026-11-24T11:00:00.5+00:00",  # the device clock is an hour slow
            "batch": [
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": "u",
                    "messageId": "offset",
                    "timestamp": "2026-11-24T12:59:30.250999+02:00",  # 10:59:30.250999 UTC
                },
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": "u",
                    "messageId": "naive",
                    "originalTimestamp": "2026-11-24T10:59:59.999",  # naive means UTC
                    "sentAt": "2026-11-24T11:59:00Z",  # its own sentAt: skew 60 s, kept
                },
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": "u",
                    "messageId": "future",
                    "timestamp": "2027-01-01T00:00:00Z",
                    "sentAt": "2027-01-01T00:00:00Z",
                },
            ],
        }
    ).encode()
    arrival = Arrival(source="web", received_at=RECEIVED, collector_id="test")
    prepared, arrival = prepare_batch(body, arrival, Taxonomy.standard())
    assert not prepared.rejections
    write_rows(store, "events", prepared.events)

    skew = RECEIVED - datetime(2026, 11, 24, 11, 0, 0, 500000, tzinfo=UTC)
    own = datetime(2026, 11, 24, 10, 59, 30, 250999, tzinfo=UTC)
    assert stored_times(store, "offset") == (
        ms(own + skew),
        ms(own),
        ms(datetime(2026, 11, 24, 11, 0, 0, 500000, tzinfo=UTC)),
        ms(RECEIVED),
        round(skew.total_seconds() * 1000),
    )
    naive = datetime(2026, 11, 24, 10, 59, 59, 999000, tzinfo=UTC)
    assert stored_times(store, "naive") == (
        ms(naive),
        ms(naive),
        datetime(2026, 11, 24, 11, 59, tzinfo=UTC),
        ms(RECEIVED),
        0,
    )
    future = stored_times(store, "future")
    assert future[0] == ms(RECEIVED)  # a clock 5 weeks ahead: corrected to the arrival
    assert future[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_logs_written_with_epoch_seconds_still_load(store: Store) -> None:
    """A log left by a collector that wrote times as epoch floats replays unchanged."""
    ids = ["old-format", "web", "track", "Order Completed", "purchase", "purchase", "web"]
    people = ["u", "", "u", "", ""]
    times = [1795521540.25, 1795521540.25, None, 1795521600.5, 0, None]
    row = [*ids, *people, *times, {"revenue": 1}, {}, {}, {}, "test", 7]
    assert len(row) == len(EVENT_COLUMNS)
    insert_encoded(store, "events", encode_rows([row]))
    assert stored_times(store, "old-format") == (
        datetime(2026, 11, 24, 11, 59, 0, 250000, tzinfo=UTC),
        datetime(2026, 11, 24, 11, 59, 0, 250000, tzinfo=UTC),
        None,
        datetime(2026, 11, 24, 12, 0, 0, 500000, tzinfo=UTC),
        0,
    )


_zones = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))])
_times = st.builds(
    lambda when, zone: when.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    _zones,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["track", "identify", "alias", "page", "screen", "group"]),
    timestamp=st.none() | _times,
    original=st.none() | _times,
    sent_at=st.none() | _times,
    batch_sent_at=st.none() | _times,
)
def test_event_row_agrees_with_the_schema_helpers_and_event_time(
    kind: str,
    timestamp: datetime | None,
    original: datetime | None,
    sent_at: datetime | None,
    batch_sent_at: datetime | None,
) -> None:
    """The request path's shortcuts (a per-class table instead of isinstance chains, times
    kept as datetimes) give what the public helpers and :func:`event_time` define."""
    fields: dict[str, object] = {
        "type": kind,
        "userId": "u",
        "anonymousId": "a",
        "event": "Product Viewed",
        "name": "Pricing",
        "previousId": "p",
        "groupId": "g",
        "properties": {"x": 1},
        "traits": {"plan": "pro"},
    }
    for key, value in (
        ("timestamp", timestamp),
        ("originalTimestamp", original),
        ("sentAt", sent_at),
    ):
        if value is not None:
            fields[key] = value.isoformat()
    allowed = {
        "track": {"event", "properties"},
        "identify": {"traits"},
        "alias": {"previousId"},
        "page": {"name", "properties"},
        "screen": {"name", "properties"},
        "group": {"groupId", "traits"},
    }[kind]
    common = {"type", "userId", "anonymousId", "timestamp", "originalTimestamp", "sentAt"}
    raw = json.dumps({k: v for k, v in fields.items() if k in allowed | common}).encode()
    event = decode_event(raw)
    arrival = Arrival(
        source="web", received_at=RECEIVED, collector_id="c", batch_sent_at=batch_sent_at
    )
    row = dict(
        zip(EVENT_COLUMNS, event_row(event, arrival, Taxonomy.standard(), 1, "m"), strict=True)
    )
    assert row["type"] == event_type(event)
    assert row["event"] == (event_name(event) or "")
    assert row["properties"] == event_properties(event)
    assert row["traits"] == event_traits(event)
    assert row["group_id"] == getattr(event, "group_id", "")
    assert row["previous_id"] == getattr(event, "previous_id", "")
    expected = event_time(
        event.timestamp, event.original_timestamp, event.sent_at or batch_sent_at, RECEIVED
    )
    assert row["timestamp"] == expected.timestamp
    assert row["clock_skew_ms"] == expected.skew_ms
    for column, value in (
        ("original_timestamp", event.original_timestamp or event.timestamp),
        ("sent_at", event.sent_at or batch_sent_at),
    ):
        if value is None:
            assert row[column] is None
        else:
            assert row[column] == (value if value.tzinfo else value.replace(tzinfo=UTC))
            assert row[column].tzinfo is not None  # naive times must not reach ClickHouse
    assert row["timestamp"].tzinfo is not None


def test_embedded_store_sets_its_allocator_before_loading_chdb(tmp_path: Path) -> None:
    """A fresh process: the allocator setting is in place when chdb loads, an operator's
    own setting wins, and the store works with either (rows read back)."""
    script = textwrap.dedent(
        """
        import os, sys
        from touchpoint_collector.store import Store
        with Store.open("chdb://" + sys.argv[1]) as store:
            store.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
            store.command("INSERT INTO t VALUES (7)")
            assert store.rows("SELECT x FROM t") == [(7,)]
            assert "chdb" in sys.modules
            print(os.environ["JE_MALLOC_CONF"])
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    for extra, expected in (
        ({}, EMBEDDED_MALLOC_CONF),
        ({"JE_MALLOC_CONF": "narenas:1"}, "narenas:1"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / expected)],
            env={**env, **extra},
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected
