from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.collector.helpers import write_prepared
from touchpoint_collector import cli
from touchpoint_collector.enrich import Arrival
from touchpoint_collector.ingest import prepare_batch
from touchpoint_collector.store import Store, StoreTarget
from touchpoint_schemas import Taxonomy

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def batch(*events: dict[str, object]) -> bytes:
    return json.dumps({"batch": list(events)}).encode()


def ingest(store: Store, body: bytes, source: str = "web") -> object:
    arrival = Arrival(source=source, received_at=NOW, collector_id="test")
    prepared, arrival = prepare_batch(body, arrival, Taxonomy.standard())
    write_prepared(store, prepared, arrival)
    return prepared


def test_events_written_through_the_store_read_back(store: Store) -> None:
    ingest(
        store,
        batch(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u1",
                "messageId": "m1",
                "properties": {"revenue": 42.5, "big": 123456789012345678901234567890},
                "timestamp": "2026-11-24T11:59:00Z",
            },
            {
                "type": "track",
                "event": "Feedback Submitted",
                "anonymousId": "a1",
                "messageId": "m2",
                "properties": {"score": 3},
                "channel": "phone",
            },
        ),
    )
    rows = store.rows(
        "SELECT message_id, source, touchpoint, stage, channel, person_id, timestamp, score, properties "
        "FROM events ORDER BY message_id"
    )
    assert rows[0][:7] == (
        "m1",
        "web",
        "purchase",
        "purchase",
        "web",
        "u1",
        datetime(2026, 11, 24, 11, 59, tzinfo=UTC),
    )
    assert rows[0][7] is None
    assert json.loads(rows[0][8]) == {"revenue": 42.5, "big": 123456789012345678901234567890}
    assert rows[1][2:6] == ("feedback_given", "retention", "phone", "a1")
    assert rows[1][7] == 3.0


def test_identify_and_alias_write_identity_links(store: Store) -> None:
    ingest(
        store,
        batch(
            {
                "type": "identify",
                "anonymousId": "anon",
                "userId": "alice",
                "traits": {"persona": "saver"},
            },
            {"type": "alias", "previousId": "old-alice", "userId": "alice"},
            {"type": "identify", "userId": "bob"},
        ),
    )
    links = store.rows("SELECT anonymous_id, user_id, kind FROM identities ORDER BY anonymous_id")
    assert links == [("anon", "alice", "identify"), ("old-alice", "alice", "alias")]


def test_resent_message_ids_count_once_through_the_analyst_query_path(
    store: Store,
    store_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "dup-1"}
    ingest(store, batch(first, {**first, "messageId": "other"}))
    ingest(store, batch(first))  # an SDK retry whose first attempt did land
    assert store.rows("SELECT count() FROM events", final=0) == [(3,)]  # as stored

    monkeypatch.setenv("TOUCHPOINT_STORE__DATABASE", store.database)
    code = cli.main(
        [
            "--dsn",
            store_dsn,
            "sql",
            "--format",
            "json",
            "SELECT message_id, count() AS n FROM events GROUP BY message_id ORDER BY message_id",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"message_id": "dup-1", "n": 1}, {"message_id": "other", "n": 1}]


def test_invalid_events_land_in_rejected_events_with_a_reason(store: Store) -> None:
    prepared = ingest(
        store,
        batch(
            {"type": "track", "event": "ok", "userId": "u"},
            {"type": "track", "userId": "u", "messageId": "no-name"},
            {"type": "track", "event": "x", "userId": "u", "touchpoint": "teleport"},
            {
                "type": "track",
                "event": "Survey Submitted",
                "userId": "u",
                "properties": {"score": 11},
            },
            {"type": "warp", "userId": "u"},
        ),
    )
    assert prepared.accepted == 1  # type: ignore[attr-defined]
    rejected = store.rows(
        "SELECT event_index, message_id, reason_code, path, reason, payload "
        "FROM rejected_events ORDER BY event_index"
    )
    assert [r[:4] for r in rejected] == [
        (1, "no-name", "missing_field", "$"),
        (2, "", "unknown_taxonomy", "$.touchpoint"),
        (3, "", "invalid_score", "$.properties.score"),
        (4, "", "unknown_type", "$.type"),
    ]
    assert "event" in rejected[0][4]
    assert json.loads(rejected[3][5]) == {"type": "warp", "userId": "u"}
    assert store.rows("SELECT count() FROM events") == [(1,)]


def test_target_describes_without_credentials(tmp_path: Path) -> None:
    target = StoreTarget("https://analyst:s3cret@ch.example:8443/x", "touchpoint")
    assert "s3cret" not in target.describe()
    assert not target.embedded
    assert target.path is None
    embedded = StoreTarget(f"chdb://{tmp_path}/s", "touchpoint")
    assert embedded.embedded
    assert embedded.path == (tmp_path / "s").resolve()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from touchpoint_collector.store import Store
    store = Store.open(sys.argv[1], role="holder-under-test")
    store.advertise(command="holder-under-test", query_url="http://127.0.0.1:9/v1/query")
    print("ready", flush=True)
    time.sleep(60)
    """
)
OPENER = textwrap.dedent(
    """
    import sys
    from touchpoint_collector.store import Store, StoreLockedError
    try:
        Store.open(sys.argv[1])
    except StoreLockedError as exc:
        print("LOCKED:", exc)
    else:
        print("OPENED")
    """
)


def test_second_process_gets_a_clear_lock_error_naming_the_holder(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        out = subprocess.run(
            [sys.executable, "-c", OPENER, dsn], capture_output=True, text=True, timeout=60
        )
        assert f"in use by process {holder.pid} (holder-under-test)" in out.stdout
        assert "http://127.0.0.1:9/v1/query" in out.stdout
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone (even by SIGKILL) the store opens again
    out = subprocess.run(
        [sys.executable, "-c", OPENER, dsn], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "OPENED", out.stderr


def test_a_lane_is_the_same_engine_on_a_client_of_its_own(store: Store) -> None:
    """Map views run on two lanes at once: what one lane writes the other reads, the
    lane is made once, and it runs beside the store's own client rather than behind it."""
    lane = store.lane()
    assert lane is store.lane()
    assert lane.client is not store.client
    lane.command("CREATE TABLE lane_probe (n UInt8) ENGINE = Memory")
    try:
        lane.command("INSERT INTO lane_probe VALUES (7)")
        assert store.rows("SELECT n FROM lane_probe") == [(7,)]
        # A session setting of one client does not leak into the other.
        lane.command("SET max_block_size = 1234")
        block = "SELECT value FROM system.settings WHERE name = 'max_block_size'"
        assert lane.rows(block) == [("1234",)]
        assert store.rows(block) != [("1234",)]
    finally:
        store.command("DROP TABLE IF EXISTS lane_probe SYNC")
        lane.command("SET max_block_size = DEFAULT")
