"""Decoding untrusted bytes into the event contract, with errors that say where and why.

A batch is decoded in two steps: the envelope with each event kept as raw bytes, then each
event on its own. One bad event therefore rejects only itself, and its exact bytes are at
hand for the dead-letter table ("failed events are data, not logs").

Every failure is a :class:`ContractError` with a stable `code` (for counting and alerting),
the JSON `path` that failed and a human `reason`. Nothing here raises anything else for any
input bytes; the property tests hold it to that.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import msgspec

from touchpoint_schemas.events import (
    Alias,
    Event,
    Group,
    JsonObject,
    event_properties,
    event_traits,
)
from touchpoint_schemas.limits import (
    FEEDBACK_SCORE_MAX,
    FEEDBACK_SCORE_MIN,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_NESTING_DEPTH,
)


class ErrorCode(enum.StrEnum):
    """Why an event or request was refused. Stored in `rejected_events.reason_code`."""

    MALFORMED_JSON = "malformed_json"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    MISSING_ID = "missing_id"
    TOO_DEEP = "too_deep"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    EVENT_TOO_LARGE = "event_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    TOO_MANY_EVENTS = "too_many_events"
    UNKNOWN_TAXONOMY = "unknown_taxonomy"
    INVALID_SCORE = "invalid_score"


class ContractError(ValueError):
    """Bytes that do not satisfy the event contract."""

    def __init__(self, code: ErrorCode, reason: str, path: str = "$") -> None:
        super().__init__(f"{reason} - at `{path}`" if path != "$" else reason)
        self.code = code
        self.reason = reason
        self.path = path

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "reason": self.reason, "path": self.path}


class RawBatch(msgspec.Struct, kw_only=True, rename="camel"):
    """The batch envelope with events left undecoded (see module docstring)."""

    batch: list[msgspec.Raw]
    sent_at: datetime | None = None
    context: JsonObject = msgspec.field(default_factory=dict)
    integrations: JsonObject = msgspec.field(default_factory=dict)
    write_key: str | None = None


_event_decoder: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
_batch_decoder: Final[msgspec.json.Decoder[RawBatch]] = msgspec.json.Decoder(RawBatch)
_AT_PATH: Final = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)


def decode_event(raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """One event from its JSON bytes, checked against every rule of the contract."""
    if len(raw) > max_bytes:
        raise ContractError(
            ErrorCode.EVENT_TOO_LARGE, f"event is {len(raw)} bytes, the limit is {max_bytes}"
        )
    try:
        event = _decode(_event_decoder, raw)
    except ContractError as error:
        event = _with_ids_as_text(raw, error)
    # Fewer brackets than the depth limit proves the limit holds: skip the walk.
    check_event(event, check_depth=raw.count(b"{") + raw.count(b"[") > MAX_NESTING_DEPTH)
    return event


_ID_FIELDS: Final = ("messageId", "anonymousId", "userId", "previousId", "groupId")


def _with_ids_as_text(raw: bytes, error: ContractError) -> Event:
    """The event of `raw` with its integer ids read as their decimal text; `error` when
    that is not what failed. Segment takes integer ids, and its SDKs send them:
    analytics-python turns ``userId`` and ``anonymousId`` into text but sends a numeric
    ``groupId`` or ``previousId`` as it is. Only a failed decode comes here."""
    if not (
        error.code is ErrorCode.INVALID_FIELD
        and error.path in {f"$.{name}" for name in _ID_FIELDS}
        and "got `int`" in error.reason
    ):
        raise error
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise error from None
    if not isinstance(body, dict):
        raise error
    for name in _ID_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            body[name] = str(value)
    return _decode(_event_decoder, msgspec.json.encode(body))


def decode_batch(raw: bytes, *, max_events: int = MAX_BATCH_EVENTS) -> RawBatch:
    """The envelope of a batch request; its events stay raw for :func:`decode_event`.

    Keeping an event raw still checks its JSON, so one event the decoder cannot take (a
    lone surrogate escape such as ``"\\ud800"``, which Python's and JavaScript's JSON
    encoders both write, or nesting too deep to scan) failed the whole envelope, and with
    it the batch's good events. Then the batch array is split by its brackets and quotes
    alone (:func:`_split_batch`), so that each event fails on its own.
    """
    try:
        envelope = _decode(_batch_decoder, raw, prefix="$")
    except ContractError as error:
        if error.code not in (ErrorCode.MALFORMED_JSON, ErrorCode.TOO_DEEP):
            raise
        envelope = _split_envelope(raw, error)
    if len(envelope.batch) > max_events:
        raise ContractError(
            ErrorCode.TOO_MANY_EVENTS,
            f"batch has {len(envelope.batch)} events, the limit is {max_events}",
            "$.batch",
        )
    return envelope


_TOKEN: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
"""A JSON string (escapes skipped, not read) or a structural character."""


def _split_envelope(raw: bytes, error: ContractError) -> RawBatch:
    """The envelope of `raw` with its ``batch`` events as raw byte slices, undecoded;
    `error` (the envelope's own) when the bytes around the events do not decode."""
    found = _split_batch(raw)
    if found is None:
        raise error
    start, end, events = found
    try:
        envelope = _batch_decoder.decode(raw[:start] + b"[]" + raw[end:])
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise error from None
    envelope.batch = [msgspec.Raw(event) for event in events]
    return envelope


def _split_batch(raw: bytes) -> tuple[int, int, list[bytes]] | None:
    """Where the top-level ``"batch"`` array starts and ends in `raw`, and its elements'
    bytes, found from brackets, commas and strings only (iteratively: no depth is too
    deep); None when there is no such array."""
    depth, key, array_at, element_at = 0, b"", -1, -1
    events: list[bytes] = []
    for token in _TOKEN.finditer(raw):
        text = token.group()
        if text.startswith(b'"'):
            key = text if depth == 1 else b""
            continue
        if text == b":" and depth == 1 and key == b'"batch"':
            after = raw[token.end() :].lstrip()
            if not after.startswith(b"[") or array_at >= 0:
                return None
            array_at = len(raw) - len(after)
        key = b""
        if text in (b"[", b"{"):
            depth += 1
            if depth == 2 and token.start() == array_at:
                element_at = array_at + 1
        elif text in (b"]", b"}"):
            depth -= 1
            if depth == 1 and element_at >= 0:
                last = raw[element_at : token.start()].strip()
                if last or events:
                    events.append(last)
                return array_at, token.end(), events
            if depth < 1:
                return None
        elif text == b"," and depth == 2 and element_at >= 0:
            events.append(raw[element_at : token.start()].strip())
            element_at = token.end()
    return None


def check_event(event: Event, *, check_depth: bool = True) -> None:
    """The rules a schema cannot express: identity and nesting depth."""
    if isinstance(event, Alias):
        if event.user_id is None:
            raise ContractError(ErrorCode.MISSING_ID, "alias requires `userId`", "$.userId")
    elif event.user_id is None and event.anonymous_id is None:
        raise ContractError(ErrorCode.MISSING_ID, "either `userId` or `anonymousId` is required")
    if isinstance(event, Group) and not event.group_id:
        raise ContractError(ErrorCode.MISSING_ID, "group requires `groupId`", "$.groupId")
    if not check_depth:
        return
    for name, value in (
        ("properties", event_properties(event)),
        ("traits", event_traits(event)),
        ("context", event.context),
    ):
        if value and _depth(value) > MAX_NESTING_DEPTH:
            raise ContractError(
                ErrorCode.TOO_DEEP,
                f"nesting deeper than {MAX_NESTING_DEPTH} levels",
                f"$.{name}",
            )


def check_score(properties: JsonObject) -> float:
    """The 1-10 feedback score a scoring touchpoint must carry in `properties.score`."""
    score = properties.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ContractError(
            ErrorCode.INVALID_SCORE,
            f"a feedback touchpoint needs a numeric score from {FEEDBACK_SCORE_MIN} "
            f"to {FEEDBACK_SCORE_MAX}",
            "$.properties.score",
        )
    if not FEEDBACK_SCORE_MIN <= score <= FEEDBACK_SCORE_MAX:
        raise ContractError(
            ErrorCode.INVALID_SCORE,
            f"score {score} is outside {FEEDBACK_SCORE_MIN}..{FEEDBACK_SCORE_MAX}",
            "$.properties.score",
        )
    return float(score)


def as_utc(value: datetime) -> datetime:
    """Naive timestamps are UTC (what Segment's SDKs mean when they omit the offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


T = TypeVar("T")


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes, prefix: str = "$") -> T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _classify(str(exc), prefix) from None
    except msgspec.DecodeError as exc:
        raise ContractError(ErrorCode.MALFORMED_JSON, str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ContractError(
            ErrorCode.INVALID_UTF8, f"body is not valid UTF-8: {exc.reason}"
        ) from None
    except RecursionError:
        raise ContractError(ErrorCode.TOO_DEEP, "JSON nesting is too deep to decode") from None


def _classify(message: str, prefix: str) -> ContractError:
    match = _AT_PATH.match(message)
    assert match is not None  # the pattern matches any string
    reason = match["reason"]
    path = match["path"] or prefix
    if reason.startswith("Object missing required field"):
        code = ErrorCode.MISSING_FIELD
    elif reason.startswith("Invalid value") and path.endswith(".type"):
        code = ErrorCode.UNKNOWN_TYPE
        reason = f"{reason}; expected one of track, identify, alias, page, screen, group"
    elif reason.startswith("Number out of range"):
        code = ErrorCode.NUMBER_OUT_OF_RANGE
    else:
        code = ErrorCode.INVALID_FIELD
    return ContractError(code, reason, path)


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, iteratively (hostile input must not blow the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING_DEPTH:
                return deepest
        if isinstance(node, dict):
            stack.extend(
                (child, depth + 1) for child in node.values() if isinstance(child, dict | list)
            )
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return deepest
