"""Turning one request body into stored rows: accepted events, identity links, dead letters.

Each event in a batch is judged on its own. Valid ones become ``events`` rows (and
``identities`` links); each invalid one becomes a ``rejected_events`` row carrying its exact
bytes and the reason, and is reported back to the sender by index and ``messageId``.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from touchpoint_collector.enrich import Arrival, event_row, identity_rows
from touchpoint_schemas.decode import ContractError, ErrorCode, decode_batch, decode_event
from touchpoint_schemas.events import Alias, Identify
from touchpoint_schemas.limits import MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from touchpoint_schemas.taxonomy import Taxonomy

REJECTED_COLUMNS: Final[tuple[str, ...]] = (
    "received_at",
    "source",
    "endpoint",
    "reason_code",
    "reason",
    "path",
    "event_index",
    "message_id",
    "payload",
    "client_ip",
    "user_agent",
    "collector_id",
    "ingest_seq",
)

_sequence = itertools.count(time.time_ns())
"""Arrival order within this collector: starts at the wall clock so it keeps rising across
restarts, and breaks timestamp ties in journeys."""


def next_seq() -> int:
    return next(_sequence)


class _MessageIdProbe(msgspec.Struct, rename="camel"):
    message_id: Any = None


_probe_decoder: Final = msgspec.json.Decoder(_MessageIdProbe)
_LINKING: Final = frozenset({Identify, Alias})
"""The event types that can link identities (see :func:`identity_rows`)."""


@dataclass(slots=True)
class Rejection:
    index: int
    message_id: str
    error: ContractError
    payload: bytes

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "messageId": self.message_id, **self.error.as_dict()}


@dataclass(slots=True)
class Prepared:
    """The rows one request produces. Nothing is stored yet."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    identities: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.events)

    def rejected_rows(self, arrival: Arrival, endpoint: str) -> list[tuple[Any, ...]]:
        return [
            rejected_row(arrival, endpoint, r.error, r.payload, r.index, r.message_id)
            for r in self.rejections
        ]


def rejected_row(
    arrival: Arrival,
    endpoint: str,
    error: ContractError,
    payload: bytes,
    index: int = -1,
    message_id: str = "",
) -> tuple[Any, ...]:
    """A ``rejected_events`` row (column order: :data:`REJECTED_COLUMNS`)."""
    return (
        arrival.received_at,
        arrival.source,
        endpoint,
        error.code.value,
        error.reason,
        error.path,
        index,
        message_id,
        payload,
        arrival.client_ip,
        arrival.user_agent,
        arrival.collector_id,
        next_seq(),
    )


def derived_message_id(source: str, raw: bytes) -> str:
    """A stable id for an event sent without ``messageId``: a resend of the same bytes from
    the same source gets the same id, so it still deduplicates."""
    return "tp-" + hashlib.blake2b(source.encode() + b"\0" + raw, digest_size=16).hexdigest()


def prepare_batch(
    body: bytes,
    arrival: Arrival,
    taxonomy: Taxonomy,
    *,
    max_events: int = MAX_BATCH_EVENTS,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> tuple[Prepared, Arrival]:
    """Rows for a ``/v1/batch`` body. Raises :class:`ContractError` when the envelope itself
    is unreadable (the whole request is then refused and dead-lettered by the caller)."""
    envelope = decode_batch(body, max_events=max_events)
    arrival = Arrival(
        source=arrival.source,
        received_at=arrival.received_at,
        collector_id=arrival.collector_id,
        client_ip=arrival.client_ip,
        user_agent=arrival.user_agent,
        batch_sent_at=envelope.sent_at,
        batch_context=envelope.context or None,
        batch_integrations=envelope.integrations or None,
    )
    prepared = Prepared()
    for index, raw in enumerate(envelope.batch):
        add_event(prepared, bytes(raw), index, arrival, taxonomy, max_event_bytes)
    return prepared, arrival


def prepare_single(
    body: bytes,
    event_type: str,
    arrival: Arrival,
    taxonomy: Taxonomy,
    *,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> Prepared:
    """Rows for a single-event endpoint (``/v1/track`` ...): the path names the type, as in
    Segment's API, so a body without ``"type"`` is accepted."""
    prepared = Prepared()
    try:
        raw = _with_type(body, event_type)
    except ContractError as error:
        prepared.rejections.append(Rejection(0, _probe_message_id(body), error, body))
        return prepared
    # The limit is on what was sent, not on the body with the endpoint's type added.
    limit = max_event_bytes + max(0, len(raw) - len(body))
    add_event(prepared, raw, 0, arrival, taxonomy, limit, original=body)
    return prepared


def add_event(
    prepared: Prepared,
    raw: bytes,
    index: int,
    arrival: Arrival,
    taxonomy: Taxonomy,
    max_event_bytes: int,
    original: bytes | None = None,
) -> None:
    sender_id: str | None = None
    try:
        event = decode_event(raw, max_bytes=max_event_bytes)
        sender_id = event.message_id or ""
        message_id = sender_id or derived_message_id(arrival.source, raw)
        row = event_row(event, arrival, taxonomy, next_seq(), message_id)
    except ContractError as error:
        if sender_id is None:
            sender_id = _probe_message_id(raw)
        prepared.rejections.append(Rejection(index, sender_id, error, original or raw))
        return
    prepared.events.append(row)
    if type(event) in _LINKING:
        prepared.identities.extend(identity_rows(event, arrival, message_id, row[12]))


def _probe_message_id(raw: bytes) -> str:
    """The ``messageId`` of an event that failed validation, when it can still be read."""
    try:
        value = _probe_decoder.decode(raw).message_id
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return ""
    return value if isinstance(value, str) else ""


_type_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def _with_type(body: bytes, event_type: str) -> bytes:
    """The body with ``"type"`` set from the endpoint when it has none."""
    stripped = body.lstrip()
    if not stripped.startswith(b"{"):
        return body  # not an object: let the decoder report it properly
    try:
        obj = _type_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return body
    if "type" in obj:
        if obj["type"] != event_type:
            raise ContractError(
                ErrorCode.INVALID_FIELD,
                f"type {obj['type']!r} sent to the {event_type} endpoint",
                "$.type",
            )
        return body
    obj["type"] = event_type
    return msgspec.json.encode(obj)
