"""From a decoded event to the rows stored for it: timestamps, identity, taxonomy, context.

Pure functions of (event, request facts, taxonomy): no I/O, so the request path can run
them before the write-ahead log and replaying the log reproduces the same rows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from touchpoint_schemas.decode import ContractError, ErrorCode, as_utc, check_score
from touchpoint_schemas.events import (
    Alias,
    Event,
    Identify,
    event_name,
    event_properties,
    event_traits,
    event_type,
)
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
    own = timestamp or original_timestamp
    if own is None:
        return EventTime(received_at, 0)
    own = as_utc(own)
    corrected, skew_ms = own, 0
    if sent_at is not None:
        sent = as_utc(sent_at)
        skew = received_at - sent
        if abs(skew) >= SKEW_THRESHOLD and timedelta(0) <= sent - own <= HISTORICAL_AGE:
            corrected = own + skew
            skew_ms = round(skew.total_seconds() * 1000)
    if corrected > received_at + FUTURE_TOLERANCE:
        skew_ms += round((received_at - corrected).total_seconds() * 1000)
        corrected = received_at
    return EventTime(corrected, skew_ms)


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

    JSON columns hold the decoded objects and times are epoch seconds (floats), the form
    ClickHouse parses fastest; :mod:`touchpoint_collector.writer` encodes the whole row once.

    Raises :class:`ContractError` for taxonomy violations (unknown explicit touchpoint,
    missing feedback score), which reject the event like any other contract breach.
    """
    kind = event_type(event)
    name = event_name(event)
    try:
        placed = taxonomy.resolve(kind, name, event.touchpoint, event.stage, event.channel)
    except TaxonomyError as exc:
        raise ContractError(ErrorCode.UNKNOWN_TAXONOMY, exc.reason, exc.path) from None
    properties = event_properties(event)
    score = None
    definition = taxonomy.touchpoint(placed.touchpoint) if placed.touchpoint else None
    if definition is not None and definition.carries_score:
        score = check_score(properties)
    sent_at = event.sent_at or arrival.batch_sent_at
    when = event_time(event.timestamp, event.original_timestamp, sent_at, arrival.received_at)
    # The decoded event belongs to this request alone: enrich its context in place.
    context = _merged(arrival.batch_context, event.context)
    if arrival.client_ip and "ip" not in context:
        context["ip"] = arrival.client_ip
    if arrival.user_agent and "userAgent" not in context:
        context["userAgent"] = arrival.user_agent
    integrations = _merged(arrival.batch_integrations, event.integrations)
    user_id = event.user_id or ""
    anonymous_id = event.anonymous_id or ""
    original = event.original_timestamp or event.timestamp
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
        getattr(event, "group_id", ""),
        getattr(event, "previous_id", ""),
        when.timestamp.timestamp(),
        as_utc(original).timestamp() if original else None,
        as_utc(sent_at).timestamp() if sent_at else None,
        arrival.received_at.timestamp(),
        when.skew_ms,
        score,
        properties,
        event_traits(event),
        context,
        integrations,
        arrival.collector_id,
        seq,
    )


def identity_rows(
    event: Event, arrival: Arrival, message_id: str, when: float
) -> list[tuple[Any, ...]]:
    """``identities`` links an identify or alias call makes (column order:
    :data:`IDENTITY_COLUMNS`)."""
    if isinstance(event, Identify) and event.anonymous_id and event.user_id:
        old, kind = event.anonymous_id, "identify"
    elif isinstance(event, Alias) and event.user_id and event.previous_id != event.user_id:
        old, kind = event.previous_id, "alias"
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
            arrival.received_at.timestamp(),
        )
    ]


def _merged(base: dict[str, Any] | None, own: dict[str, Any]) -> dict[str, Any]:
    """Batch-level values under the event's own; the event's dict itself when no batch values."""
    return {**base, **own} if base else own
