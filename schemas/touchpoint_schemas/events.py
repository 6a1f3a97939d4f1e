"""The event contract: what the SDK sends and the collector accepts.

The shape is Segment's tracking API (names, camelCase, one object per call, a batch
envelope) so any Segment-instrumented app can send here by changing its host. Touchpoint adds
three optional first-class fields, `touchpoint`, `stage` and `channel`, that place an event on
the journey map; the collector derives them from the event name when they are absent.

`properties`, `traits` and `context` are open JSON objects and are stored losslessly.
Ids are text; an integer id (Segment takes them, and some of its SDKs send them) is
read as its decimal text by :func:`touchpoint_schemas.decode.decode_event`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct, field

from touchpoint_schemas.limits import MAX_ID_CHARS, MAX_NAME_CHARS

Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
SnakeName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
JsonObject = dict[str, Any]

EventType = Literal["track", "identify", "alias", "page", "screen", "group"]
EVENT_TYPES: Final[tuple[str, ...]] = ("track", "identify", "alias", "page", "screen", "group")


class EventBase(
    Struct,
    kw_only=True,
    rename="camel",
    omit_defaults=True,
    tag_field="type",
):
    """Fields every call carries.

    Either `userId` or `anonymousId` is required (checked in :mod:`touchpoint_schemas.decode`,
    because a schema cannot say "one of"). `timestamp` is when the event happened; `sentAt`
    when the sender sent it, used by the collector to correct a wrong device clock.
    """

    message_id: Id | None = None
    anonymous_id: Id | None = None
    user_id: Id | None = None
    timestamp: datetime | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    context: JsonObject = field(default_factory=dict)
    integrations: JsonObject = field(default_factory=dict)
    touchpoint: SnakeName | None = None
    stage: SnakeName | None = None
    channel: SnakeName | None = None


class Track(EventBase, tag="track"):
    """Something the person did: the usual carrier of a touchpoint."""

    event: Name
    properties: JsonObject = field(default_factory=dict)


class Identify(EventBase, tag="identify"):
    """Who the person is; links `anonymousId` to `userId` and sets traits (e.g. persona)."""

    traits: JsonObject = field(default_factory=dict)


class Alias(EventBase, tag="alias"):
    """Merges a previous identity (`previousId`) into `userId`."""

    previous_id: Id


class Page(EventBase, tag="page"):
    """A web page view; a `site_visit` touchpoint unless it says otherwise."""

    name: Name | None = None
    category: Name | None = None
    properties: JsonObject = field(default_factory=dict)


class Screen(EventBase, tag="screen"):
    """A mobile screen view; an `app_opened` touchpoint unless it says otherwise."""

    name: Name | None = None
    category: Name | None = None
    properties: JsonObject = field(default_factory=dict)


class Group(EventBase, tag="group"):
    """Associates the person with an account or company."""

    group_id: Id
    traits: JsonObject = field(default_factory=dict)


Event = Track | Identify | Alias | Page | Screen | Group


class Batch(Struct, kw_only=True, rename="camel", omit_defaults=True):
    """The batch request body (Segment's `/v1/batch`).

    Batch-level `context` and `integrations` are merged under each event's own, which win.
    `writeKey` in the body is one of three ways to authenticate (browsers that cannot set
    headers use it).
    """

    batch: list[Event]
    sent_at: datetime | None = None
    context: JsonObject = field(default_factory=dict)
    integrations: JsonObject = field(default_factory=dict)
    write_key: str | None = None


_NAMED: Final = (Page, Screen)
_WITH_PROPERTIES: Final = (Track, Page, Screen)
_WITH_TRAITS: Final = (Identify, Group)


def event_name(event: Event) -> str | None:
    """The name an event is known by: the tracked event, or a page or screen name."""
    if isinstance(event, Track):
        return event.event
    if isinstance(event, _NAMED):
        return event.name
    return None


def event_type(event: Event) -> str:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def event_properties(event: Event) -> JsonObject:
    return event.properties if isinstance(event, _WITH_PROPERTIES) else {}


def event_traits(event: Event) -> JsonObject:
    return event.traits if isinstance(event, _WITH_TRAITS) else {}


json_encoder: Final = msgspec.json.Encoder()
