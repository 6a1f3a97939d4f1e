from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from touchpoint.record import (
    Captured,
    EventEncoder,
    InvalidCall,
    as_dict,
    as_id,
    as_snake,
    to_event,
)
from touchpoint.stats import Ledger, Loss
from touchpoint_schemas.decode import decode_event
from touchpoint_schemas.events import Alias, Event, Group, Identify, Page, Screen, Track
from touchpoint_schemas.limits import MAX_EVENT_BYTES

NS = 1_700_000_000_123_456_789


def captured(kind: str = "track", **fields: Any) -> Captured:
    base: dict[str, Any] = {
        "mid": "0189a1b2-c3d4-7abc-8def-0123456789ab",
        "uid": "user-1",
        "aid": None,
        "name": "Order Completed",
        "props": {"revenue": 12.5},
        "extra": None,
        "context": None,
        "ts": None,
        "integrations": None,
        "tp": None,
        "stage": None,
        "channel": None,
    }
    base.update(fields)
    b = base
    return (kind, b["mid"], NS, b["uid"], b["aid"], b["name"], b["props"], b["extra"],
            b["context"], b["ts"], b["integrations"], b["tp"], b["stage"], b["channel"])  # fmt: skip


@pytest.mark.parametrize(
    ("item", "expected_type"),
    [
        (captured("track", tp="purchase", stage="purchase", channel="web"), Track),
        (captured("identify", name=None, props={"plan": "pro"}), Identify),
        (captured("alias", name=None, props=None, extra="anon-1"), Alias),
        (captured("page", name="Pricing", extra="Docs"), Page),
        (captured("screen", name="Home", extra=None), Screen),
        (captured("group", name=None, props={"seats": 3}, extra="acme"), Group),
    ],
)
def test_captured_calls_become_contract_events(item: Captured, expected_type: type) -> None:
    event = to_event(item)
    assert type(event) is expected_type
    assert event.message_id == item[1]
    assert event.timestamp == datetime.fromtimestamp(NS / 1e9, UTC)
    # What the worker sends decodes under the contract's own rules.
    assert decode_event(msgspec.json.encode(event)) == event


def test_explicit_timestamp_wins_over_capture_time() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert to_event(captured(ts=when)).timestamp == when


def test_wire_format_is_segment_camel_case() -> None:
    raw = msgspec.json.decode(msgspec.json.encode(to_event(captured(aid="anon-9", tp="purchase"))))
    assert raw["type"] == "track"
    assert {"messageId", "userId", "anonymousId", "timestamp", "touchpoint"} <= set(raw)


def encoder(before_send: Any = None) -> tuple[EventEncoder, Ledger, list[Loss]]:
    losses: list[Loss] = []
    ledger = Ledger(losses.append)
    return EventEncoder(ledger, before_send), ledger, losses


def test_before_send_can_scrub_filter_or_fail() -> None:
    def hook(event: Event) -> Event | None:
        if event.user_id == "drop-me":
            return None
        if event.user_id == "explode":
            raise RuntimeError("hook bug")
        assert isinstance(event, Track)
        event.properties.pop("email", None)
        event.message_id = "hooks-cannot-change-ids"
        return event

    enc, ledger, losses = encoder(hook)
    items = [
        captured(mid="a", props={"email": "x@y.z", "n": 1}),
        captured(mid="b", uid="drop-me"),
        captured(mid="c", uid="explode"),
    ]
    ledger.take(3)
    out = enc.encode(items)
    assert out.ids == ["a"]
    sent = msgspec.json.decode(out.events[0])
    assert sent["properties"] == {"n": 1}
    assert sent["messageId"] == "a"
    stats = ledger.snapshot(0, 0)
    assert (stats.filtered, stats.invalid, stats.pending) == (1, 1, 1)
    assert [(loss.reason, loss.message_ids) for loss in losses] == [("invalid", ("c",))]
    assert "before_send raised RuntimeError" in losses[0].detail


def test_before_send_returning_garbage_drops_the_event() -> None:
    enc, _, losses = encoder(lambda event: {"not": "an event"})
    assert not enc.encode([captured(mid="a")]).events
    assert losses[0].detail == "before_send must return the event or None"


def test_unencodable_and_oversize_events_are_dropped_with_a_reason() -> None:
    enc, ledger, losses = encoder()
    items = [
        captured(mid="ok"),
        captured(mid="object", props={"thing": object()}),
        captured(mid="big", props={"blob": "x" * MAX_EVENT_BYTES}),
    ]
    ledger.take(len(items))
    out = enc.encode(items)
    assert out.ids == ["ok"]
    assert out.nbytes == len(out.events[0])
    reasons = {loss.message_ids[0]: loss.reason for loss in losses}
    assert reasons == {"object": "invalid", "big": "oversize"}
    assert "is unsupported" in losses[0].detail
    assert ledger.snapshot(0, 0).pending == 1


def test_capture_time_is_kept_to_the_millisecond_the_store_keeps() -> None:
    enc, ledger, _ = encoder()
    ledger.take(2)
    out = enc.encode([captured(mid="a"), captured(mid="b")])
    stamps = {msgspec.json.decode(raw)["timestamp"] for raw in out.events}
    assert stamps == {"2023-11-14T22:13:20.123000Z"}


def test_slow_path_checks_coerce_or_refuse() -> None:
    assert as_id(42, "user_id") == "42"
    with pytest.raises(InvalidCall, match="user_id"):
        as_id(True, "user_id")
    with pytest.raises(InvalidCall, match="1 to 256"):
        as_id("x" * 257, "user_id")
    assert as_dict({"a": 1}.items().mapping, "properties") == {"a": 1}
    with pytest.raises(InvalidCall, match="mapping"):
        as_dict([("a", 1)], "properties")
    with pytest.raises(InvalidCall, match="touchpoint"):
        as_snake("Order Completed", "touchpoint")
