from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from touchpoint_schemas import (
    Alias,
    ContractError,
    ErrorCode,
    Group,
    Identify,
    Page,
    Screen,
    Track,
    decode_batch,
    decode_event,
)
from touchpoint_schemas.decode import as_utc, check_score
from touchpoint_schemas.events import Batch, event_name, event_type
from touchpoint_schemas.limits import MAX_BATCH_EVENTS, MAX_NESTING_DEPTH


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


SEGMENT_SHAPES = [
    (
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u1",
            "messageId": "m1",
            "properties": {"revenue": 19.99, "products": [{"sku": "A"}]},
            "timestamp": "2026-11-24T10:00:00.123Z",
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics.js"}},
        },
        Track,
    ),
    (
        {"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {"plan": "pro"}},
        Identify,
    ),
    ({"type": "alias", "previousId": "a1", "userId": "u1"}, Alias),
    ({"type": "page", "anonymousId": "a1", "name": "Pricing", "properties": {"path": "/p"}}, Page),
    ({"type": "screen", "anonymousId": "a1", "name": "Home"}, Screen),
    ({"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "ACME"}}, Group),
]


@pytest.mark.parametrize(("payload", "cls"), SEGMENT_SHAPES)
def test_every_segment_call_decodes_to_its_struct(payload: dict[str, object], cls: type) -> None:
    event = decode_event(enc(payload))
    assert isinstance(event, cls)
    assert event_type(event) == payload["type"]


def test_track_fields_survive_decoding() -> None:
    event = decode_event(enc(SEGMENT_SHAPES[0][0]))
    assert isinstance(event, Track)
    assert event_name(event) == "Order Completed"
    assert event.message_id == "m1"
    assert event.properties["products"] == [{"sku": "A"}]
    assert event.timestamp == datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=UTC)


def test_touchpoint_fields_are_first_class() -> None:
    event = decode_event(
        enc(
            {
                "type": "track",
                "event": "x",
                "userId": "u",
                "touchpoint": "store_visit",
                "stage": "consideration",
                "channel": "store",
            }
        )
    )
    assert (event.touchpoint, event.stage, event.channel) == (
        "store_visit",
        "consideration",
        "store",
    )


@pytest.mark.parametrize(
    ("payload", "code", "path"),
    [
        (b"{not json", ErrorCode.MALFORMED_JSON, "$"),
        (
            b'{"type": "track", "event": "x", "userId": "u", "properties": {"a": NaN}}',
            ErrorCode.MALFORMED_JSON,
            "$",
        ),
        (b'{"type": "track", "event": "\xff\xfe", "userId": "u"}', ErrorCode.INVALID_UTF8, "$"),
        (enc({"type": "teleport", "userId": "u"}), ErrorCode.UNKNOWN_TYPE, "$.type"),
        (enc({"type": "track", "userId": "u"}), ErrorCode.MISSING_FIELD, "$"),
        (enc({"type": "track", "event": "x"}), ErrorCode.MISSING_ID, "$"),
        (enc({"type": "alias", "previousId": "a"}), ErrorCode.MISSING_ID, "$.userId"),
        (enc({"type": "track", "event": "x", "userId": 4.2}), ErrorCode.INVALID_FIELD, "$.userId"),
        (enc({"type": "track", "event": "x", "userId": ""}), ErrorCode.INVALID_FIELD, "$.userId"),
        (
            enc({"type": "track", "event": "x", "userId": "u", "timestamp": "yesterday"}),
            ErrorCode.INVALID_FIELD,
            "$.timestamp",
        ),
        (
            enc({"type": "track", "event": "x", "userId": "u", "properties": []}),
            ErrorCode.INVALID_FIELD,
            "$.properties",
        ),
        (
            enc({"type": "track", "event": "x", "userId": "u", "stage": "Bad Stage"}),
            ErrorCode.INVALID_FIELD,
            "$.stage",
        ),
        (
            b'{"type": "track", "event": "x", "userId": "u", "properties": {"n": 1e999}}',
            ErrorCode.NUMBER_OUT_OF_RANGE,
            "$.properties[...]",
        ),
        (enc([1, 2]), ErrorCode.INVALID_FIELD, "$"),
    ],
)
def test_bad_input_names_code_and_path(payload: bytes, code: ErrorCode, path: str) -> None:
    with pytest.raises(ContractError) as info:
        decode_event(payload)
    assert info.value.code is code
    assert info.value.path == path
    assert info.value.reason


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_nesting_within_limit_is_accepted_and_beyond_is_refused() -> None:
    ok = {"type": "track", "event": "x", "userId": "u", "properties": nested(MAX_NESTING_DEPTH - 1)}
    decode_event(enc(ok))
    bad = {
        "type": "track",
        "event": "x",
        "userId": "u",
        "properties": nested(MAX_NESTING_DEPTH + 1),
    }
    with pytest.raises(ContractError) as info:
        decode_event(enc(bad))
    assert (info.value.code, info.value.path) == (ErrorCode.TOO_DEEP, "$.properties")


def test_pathological_nesting_does_not_crash_the_decoder() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"type":"track","event":"x","userId":"u","properties":{"a":' + deep + b"}}"
    with pytest.raises(ContractError) as info:
        decode_event(body, max_bytes=10**6)
    assert info.value.code is ErrorCode.TOO_DEEP


def test_oversize_event_is_refused_before_decoding() -> None:
    with pytest.raises(ContractError) as info:
        decode_event(b" " * 100, max_bytes=99)
    assert info.value.code is ErrorCode.EVENT_TOO_LARGE


def test_batch_keeps_each_event_raw_so_one_bad_event_does_not_sink_the_rest() -> None:
    body = enc(
        {
            "batch": [{"type": "track", "event": "a", "userId": "u"}, {"type": "nope"}, 3],
            "sentAt": "2026-11-24T10:00:00Z",
            "context": {"k": 1},
        }
    )
    envelope = decode_batch(body)
    assert len(envelope.batch) == 3
    assert isinstance(decode_event(bytes(envelope.batch[0])), Track)
    with pytest.raises(ContractError):
        decode_event(bytes(envelope.batch[1]))
    assert envelope.context == {"k": 1}


def test_batch_envelope_errors() -> None:
    with pytest.raises(ContractError) as info:
        decode_batch(enc({"events": []}))
    assert info.value.code is ErrorCode.MISSING_FIELD
    with pytest.raises(ContractError) as info:
        decode_batch(enc({"batch": [{}] * 3}), max_events=2)
    assert info.value.code is ErrorCode.TOO_MANY_EVENTS
    assert MAX_BATCH_EVENTS == 2500


@pytest.mark.parametrize(
    ("score", "ok"),
    [
        (1, True),
        (10, True),
        (7.5, True),
        (0, False),
        (11, False),
        ("9", False),
        (True, False),
        (None, False),
    ],
)
def test_feedback_score_range(score: object, ok: bool) -> None:
    if ok:
        assert check_score({"score": score}) == float(score)  # type: ignore[arg-type]
    else:
        with pytest.raises(ContractError) as info:
            check_score({"score": score})
        assert info.value.path == "$.properties.score"


def test_naive_timestamps_are_utc() -> None:
    assert as_utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)


# --- property tests -------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_raises_only_contract_errors_for_any_bytes(data: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode_event(data)
    with contextlib.suppress(ContractError):
        decode_batch(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_decoder_raises_only_contract_errors_for_any_json(value: object) -> None:
    for wrapped in (value, {"type": "track", "event": "e", "userId": "u", "properties": value}):
        with contextlib.suppress(ContractError):
            decode_event(enc(wrapped))


track_events = st.builds(
    Track,
    event=st.text(min_size=1, max_size=30),
    user_id=st.text(min_size=1, max_size=20),
    message_id=st.text(min_size=1, max_size=20) | st.none(),
    properties=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    timestamp=st.datetimes(timezones=st.just(UTC)) | st.none(),
)


@settings(max_examples=200, deadline=None)
@given(track_events)
def test_encode_decode_roundtrip(event: Track) -> None:
    assert decode_event(msgspec.json.encode(event)) == event


@settings(max_examples=50, deadline=None)
@given(st.lists(track_events, max_size=10))
def test_batch_roundtrip(events: list[Track]) -> None:
    body = msgspec.json.encode(Batch(batch=list(events)))
    envelope = decode_batch(body)
    assert [decode_event(bytes(raw)) for raw in envelope.batch] == events


@settings(max_examples=300, deadline=None)
@given(
    st.lists(json_values, max_size=6),
    st.dictionaries(st.sampled_from(["sentAt", "context", "x"]), json_values, max_size=2),
    st.booleans(),
)
def test_a_batch_split_by_brackets_alone_holds_the_same_events(
    events: list[object], around: dict[str, object], spaced: bool
) -> None:
    """The fallback that splits a batch the decoder refused (``_split_batch``) finds the
    same events, byte for byte, as the decoder does in a batch it takes."""
    from touchpoint_schemas.decode import _split_batch

    separators = (", ", ": ") if spaced else (",", ":")
    body = {**around, "batch": events, "z": ']}\\"batch": ['}
    raw = json.dumps(body, separators=separators, ensure_ascii=False).encode()
    found = _split_batch(raw)
    assert found is not None
    start, end, split = found
    assert [json.loads(part) for part in split] == events
    assert json.loads(raw[start:end]) == events
    as_decoded = msgspec.json.decode(raw, type=RawEvents).batch
    assert split == [bytes(part) for part in as_decoded]


class RawEvents(msgspec.Struct):
    batch: list[msgspec.Raw]


def test_an_event_the_decoder_cannot_scan_fails_alone() -> None:
    good = enc({"type": "track", "event": "e", "userId": "u", "messageId": "m1"})
    lone = b'{"type": "track", "event": "\\ud800", "userId": "u", "messageId": "m2"}'
    deep = (
        b'{"type": "track", "event": "e", "userId": "u", "properties": {"p": '
        + (b"[" * 5000 + b"]" * 5000)
        + b"}}"
    )
    envelope = decode_batch(
        b'{"sentAt": "2026-01-01T00:00:00Z", "batch": [' + b", ".join([good, lone, deep]) + b"]}"
    )
    assert envelope.sent_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert decode_event(bytes(envelope.batch[0])).message_id == "m1"
    codes = []
    for raw in envelope.batch[1:]:
        with pytest.raises(ContractError) as refused:
            decode_event(bytes(raw))
        codes.append(refused.value.code)
    assert codes == [ErrorCode.MALFORMED_JSON, ErrorCode.TOO_DEEP]
    with pytest.raises(ContractError):  # the envelope's own bytes still decide
        decode_batch(b'{"batch": [' + good + b'], "sentAt": "\\ud800"}')


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"type": "group", "userId": "u", "groupId": 777}, "group_id", "777"),
        (
            {"type": "alias", "userId": "u", "previousId": 12345678901234567890},
            "previous_id",
            "12345678901234567890",
        ),
        ({"type": "track", "event": "e", "userId": 42}, "user_id", "42"),
        ({"type": "track", "event": "e", "anonymousId": -1, "messageId": 9}, "message_id", "9"),
    ],
)
def test_integer_ids_are_read_as_their_text(body: dict[str, object], field: str, text: str) -> None:
    """analytics-python sends a numeric groupId or previousId as it is (it turns only
    userId and anonymousId into text), and Segment takes it."""
    assert getattr(decode_event(enc(body)), field) == text


@pytest.mark.parametrize("value", [True, 1.5, [1], {"a": 1}])
def test_ids_that_are_not_text_or_integers_are_refused(value: object) -> None:
    with pytest.raises(ContractError) as refused:
        decode_event(enc({"type": "group", "userId": "u", "groupId": value}))
    assert (refused.value.code, refused.value.path) == (ErrorCode.INVALID_FIELD, "$.groupId")
