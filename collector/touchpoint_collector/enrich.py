"""From a decoded event to the rows stored for it: timestamps, identity, taxonomy, context.

Pure functions of (event, request facts, taxonomy): no I/O, so the request path can run
them before the write-ahead log and replaying the log reproduces the same rows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from touchpoint_schemas.decode import ContractError, ErrorCode, check_score
from touchpoint_schemas.events import Alias, Event, Group, Identify, Page, Screen, Track
from touchpoint_schemas.limits import EARLIEST_TIME
from touchpoint_schemas.taxonomy import Taxonomy, TaxonomyError

SKEW_THRESHOLD: Final = timedelta(minutes=5)
"""Device clocks wrong by less than this are left alone (network delay looks like skew)."""
HISTORICAL_AGE: Final = timedelta(hours=24)
"""An event dated this long before it was sent is a deliberate historical import, not a
live event on a wrong clock, and its timestamp is kept as sent."""
FUTURE_TOLERANCE: Final = timedelta(minutes=5)
"""Events dated further ahead of their arrival than this are clamped to the arrival time."""

EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "message_id",
    "source",
    "type",
    "event",
    "touchpoint",
    "stage",
    "channel",
    "person_id",
    "anonymous_id",
    "user_id",
    "group_id",
    "previous_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "clock_skew_ms",
    "score",
    "properties",
    "traits",
    "context",
    "integrations",
    "collector_id",
    "ingest_seq",
)

IDENTITY_COLUMNS: Final[tuple[str, ...]] = (
    "anonymous_id",
    "user_id",
    "source",
    "kind",
    "message_id",
    "first_seen",
    "received_at",
)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the collector knows about the request an event came in."""

    source: str
    received_at: datetime
    collector_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    batch_sent_at: datetime | None = None
    batch_context: dict[str, Any] | None = None
    batch_integrations: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EventTime:
    timestamp: datetime
    skew_ms: int


_ZERO: Final = timedelta(0)


def event_time(
    timestamp: datetime | None,
    original_timestamp: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> EventTime:
    """When the event happened, corrected for a wrong sender clock.

    ``timestamp = received_at - (sent_at - original)`` when the sender's clock is off by
    at least :data:`SKEW_THRESHOLD` and the event is live (dated within
    :data:`HISTORICAL_AGE` of its sending); never for a historical import. Anything still
    dated beyond :data:`FUTURE_TOLERANCE` ahead of arrival is clamped to the arrival.
    """
    return EventTime(*_event_time(timestamp or original_timestamp, sent_at, received_at))


def _event_time(
    own: datetime | None, sent_at: datetime | None, received_at: datetime
) -> tuple[datetime, int]:
    """:func:`event_time` as a plain tuple: it runs once per event on the request path.

    Naive times are UTC; aware ones keep their offset (the instant is what counts: they
    compare, subtract and are stored as the same instant)."""
    if own is None:
        return received_at, 0
    if own.tzinfo is None:
        own = own.replace(tzinfo=UTC)
    corrected, skew_ms = own, 0
    if sent_at is not None:
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        skew = received_at - sent_at
        if abs(skew) >= SKEW_THRESHOLD and _ZERO <= sent_at - own <= HISTORICAL_AGE:
            corrected = own + skew
            skew_ms = round(skew.total_seconds() * 1000)
    if corrected > received_at + FUTURE_TOLERANCE:
        skew_ms += round((received_at - corrected).total_seconds() * 1000)
        corrected = received_at
    return corrected, skew_ms


def _before_earliest(value: datetime) -> bool:
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value) < EARLIEST_TIME


def _refuse_too_early(
    timestamp: datetime, original: datetime | None, sent_at: datetime | None
) -> None:
    """Which of an event's times ClickHouse's ``DateTime64`` cannot hold (only called when
    one cannot: the request path checks all three in one expression)."""
    for value, path in (
        (timestamp, "$.timestamp"),
        (original, "$.originalTimestamp"),
        (sent_at, "$.sentAt"),
    ):
        if value is not None and _before_earliest(value):
            raise ContractError(
                ErrorCode.INVALID_FIELD,
                f"{value.isoformat()} is before {EARLIEST_TIME:%Y-%m-%d}",
                path,
            )


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class _Shape:
    """What an event class carries, looked up once per event instead of isinstance chains
    (isinstance against msgspec Struct classes costs a few hundred ns)."""

    kind: str
    name: str | None
    """The attribute holding the event's name (``event``, or ``name`` of a page/screen)."""
    properties: bool
    traits: bool
    group_id: bool
    previous_id: bool


def _shape(cls: type[Event]) -> _Shape:
    fields = cls.__struct_fields__
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return _Shape(
        kind=tag,
        name="event" if "event" in fields else ("name" if "name" in fields else None),
        properties="properties" in fields,
        traits="traits" in fields,
        group_id="group_id" in fields,
        previous_id="previous_id" in fields,
    )


_SHAPES: Final[dict[type, _Shape]] = {
    cls: _shape(cls) for cls in (Track, Identify, Alias, Page, Screen, Group)
}
_NO_OBJECT: Final[dict[str, Any]] = {}


def anonymize_ip(ip: str) -> str:
    """Zero the host part: the last octet of IPv4, the last 80 bits of IPv6 (GA's rule)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def event_row(
    event: Event, arrival: Arrival, taxonomy: Taxonomy, seq: int, message_id: str
) -> tuple[Any, ...]:
    """The ``events`` row for one accepted event (column order: :data:`EVENT_COLUMNS`).

    JSON columns hold the decoded objects and times are aware datetimes, which msgspec
    writes as RFC 3339 and ClickHouse reads with ``best_effort`` (both cheaper than epoch
    floats, and exact to the microsecond); :mod:`touchpoint_collector.writer` encodes the
    whole row once.

    Raises :class:`ContractError` for taxonomy violations (unknown explicit touchpoint,
    missing feedback score), which reject the event like any other contract breach.
    """
    shape = _SHAPES[type(event)]
    kind = shape.kind
    name: str | None = getattr(event, shape.name) if shape.name else None
    try:
        placed = taxonomy.resolve(kind, name, event.touchpoint, event.stage, event.channel)
    except TaxonomyError as exc:
        raise ContractError(ErrorCode.UNKNOWN_TAXONOMY, exc.reason, exc.path) from None
    properties: dict[str, Any] = event.properties if shape.properties else {}  # type: ignore[union-attr]
    score = None
    if placed.touchpoint:
        definition = taxonomy.touchpoint(placed.touchpoint)
        if definition is not None and definition.carries_score:
            score = check_score(properties)
    sent_at = event.sent_at or arrival.batch_sent_at
    received_at = arrival.received_at
    timestamp, skew_ms = _event_time(
        event.timestamp or event.original_timestamp, sent_at, received_at
    )
    original = event.original_timestamp
    if (
        timestamp < EARLIEST_TIME
        or (original is not None and _before_earliest(original))
        or (sent_at is not None and _before_earliest(sent_at))
    ):
        _refuse_too_early(timestamp, original, sent_at)
    # The decoded event belongs to this request alone: enrich its context in place.
    base = arrival.batch_context
    context = {**base, **event.context} if base else event.context
    if arrival.client_ip and "ip" not in context:
        context["ip"] = arrival.client_ip
    if arrival.user_agent and "userAgent" not in context:
        context["userAgent"] = arrival.user_agent
    base = arrival.batch_integrations
    integrations = {**base, **event.integrations} if base else event.integrations
    user_id = event.user_id or ""
    anonymous_id = event.anonymous_id or ""
    return (
        message_id,
        arrival.source,
        kind,
        name or "",
        placed.touchpoint,
        placed.stage,
        placed.channel,
        user_id or anonymous_id,
        anonymous_id,
        user_id,
        event.group_id if shape.group_id else "",  # type: ignore[union-attr]
        event.previous_id if shape.previous_id else "",  # type: ignore[union-attr]
        timestamp,
        _utc(event.original_timestamp or event.timestamp),
        _utc(sent_at),
        received_at,
        skew_ms,
        score,
        properties,
        event.traits if shape.traits else _NO_OBJECT,  # type: ignore[union-attr]
        context,
        integrations,
        arrival.collector_id,
        seq,
    )


def identity_rows(
    event: Event, arrival: Arrival, message_id: str, when: datetime
) -> list[tuple[Any, ...]]:
    """``identities`` links an identify or alias call makes (column order:
    :data:`IDENTITY_COLUMNS`)."""
    cls = type(event)
    if cls is Identify and event.anonymous_id and event.user_id:
        old, kind = event.anonymous_id, "identify"
    elif cls is Alias and event.user_id and event.previous_id != event.user_id:  # type: ignore[union-attr]
        old, kind = event.previous_id, "alias"  # type: ignore[union-attr]
    else:
        return []
    return [
        (
            old,
            event.user_id,
            arrival.source,
            kind,
            message_id,
            when,
            arrival.received_at,
        )
    ]
