"""The Segment-style calls, written once for both the client and the module-level API.

``Client`` and the default-client proxy behind ``touchpoint.track(...)`` share these methods;
each supplies ``_capture``, which does the work. The signatures follow Segment's Python SDK
(``track(user_id, event, properties)``, ``identify(user_id, traits)``, ...), so moving an app
over is a change of import, plus Touchpoint's three journey fields: ``touchpoint``, ``stage``
and ``channel``. Everything after the leading positional arguments is keyword-only.

Every call returns the event's ``messageId`` and never raises: arguments the contract would
refuse are dropped as ``invalid``, logged and passed to ``on_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple, TypedDict, Unpack

from touchpoint_schemas.events import EventType
from touchpoint_schemas.taxonomy import STANDARD_TOUCHPOINTS

Properties = Mapping[str, Any]


class CallOptions(TypedDict, total=False):
    """Options every call accepts (touchpoint helpers take them as keywords)."""

    context: Properties | None
    timestamp: datetime | None
    integrations: Properties | None
    message_id: str | None


class TouchpointOptions(CallOptions, total=False):
    event: str
    """The tracked event name, instead of the touchpoint's label."""


class _Default(NamedTuple):
    event: str
    stage: str
    channel: str


TOUCHPOINT_DEFAULTS: Final = {
    tp.name: _Default(tp.label or tp.name, tp.stage.value, tp.channel)
    for tp in STANDARD_TOUCHPOINTS
}
"""Each standard touchpoint's event name, stage and channel, read from the taxonomy."""

SCORED_TOUCHPOINTS: Final = frozenset(tp.name for tp in STANDARD_TOUCHPOINTS if tp.carries_score)

_OPTION_NAMES: Final = frozenset(CallOptions.__annotations__)
logger: Final = logging.getLogger("touchpoint")


CaptureFn = Callable[
    [
        EventType,  # type
        str | None,  # user_id
        str | None,  # anonymous_id
        str | None,  # event, page or screen name
        Properties | None,  # properties or traits
        str | None,  # category, previous_id or group_id
        Properties | None,  # context
        datetime | None,  # timestamp
        Properties | None,  # integrations
        str | None,  # message_id
        str | None,  # touchpoint
        str | None,  # stage
        str | None,  # channel
    ],
    str,
]


class Calls:
    """track, identify, alias, page, screen and group."""

    __slots__ = ()

    _capture: CaptureFn
    """Validates, stamps and hands over one call; implemented by the client (the hot path)
    and by the default-client proxy (which forwards to the current default client)."""

    def track(
        self,
        user_id: str | None = None,
        event: str | None = None,
        properties: Properties | None = None,
        *,
        anonymous_id: str | None = None,
        touchpoint: str | None = None,
        stage: str | None = None,
        channel: str | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        integrations: Properties | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record something the person did. Without `touchpoint`, the collector derives one
        from the event name ("Order Completed" is a ``purchase``)."""
        return self._capture(
            "track",
            user_id,
            anonymous_id,
            event,
            properties,
            None,
            context,
            timestamp,
            integrations,
            message_id,
            touchpoint,
            stage,
            channel,
        )

    def identify(
        self,
        user_id: str | None = None,
        traits: Properties | None = None,
        *,
        anonymous_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> str:
        """Say who the person is; with both ids, links the anonymous journey to the user."""
        return self._call("identify", user_id, anonymous_id, None, traits, None, options)

    def alias(
        self,
        previous_id: str | None = None,
        user_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> str:
        """Merge the identity `previous_id` into `user_id`."""
        return self._call("alias", user_id, None, None, None, previous_id, options)

    def group(
        self,
        user_id: str | None = None,
        group_id: str | None = None,
        traits: Properties | None = None,
        *,
        anonymous_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> str:
        """Associate the person with an account or company."""
        return self._call("group", user_id, anonymous_id, None, traits, group_id, options)

    def page(
        self,
        user_id: str | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: Properties | None = None,
        *,
        anonymous_id: str | None = None,
        touchpoint: str | None = None,
        stage: str | None = None,
        channel: str | None = None,
        **options: Unpack[CallOptions],
    ) -> str:
        """A web page view (a ``site_visit`` touchpoint unless `touchpoint` says otherwise)."""
        journey = (touchpoint, stage, channel)
        return self._call(
            "page", user_id, anonymous_id, name, properties, category, options, *journey
        )

    def screen(
        self,
        user_id: str | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: Properties | None = None,
        *,
        anonymous_id: str | None = None,
        touchpoint: str | None = None,
        stage: str | None = None,
        channel: str | None = None,
        **options: Unpack[CallOptions],
    ) -> str:
        """A mobile screen view (an ``app_opened`` touchpoint unless it says otherwise)."""
        journey = (touchpoint, stage, channel)
        return self._call(
            "screen", user_id, anonymous_id, name, properties, category, options, *journey
        )

    def _touchpoint(
        self,
        touchpoint: str,
        user_id: str | None,
        properties: Properties | None,
        anonymous_id: str | None,
        stage: str | None,
        channel: str | None,
        options: TouchpointOptions,
        score: float | None = None,
    ) -> str:
        """The body of every generated touchpoint helper: a track call with the taxonomy's
        defaults filled in."""
        default = TOUCHPOINT_DEFAULTS[touchpoint]
        if score is not None and (properties is None or isinstance(properties, Mapping)):
            properties = {**(properties or {}), "score": score}
        name = options.pop("event", default.event)
        journey = (touchpoint, stage or default.stage, channel or default.channel)
        return self._call("track", user_id, anonymous_id, name, properties, None, options, *journey)

    def _call(
        self,
        kind: EventType,
        user_id: str | None,
        anonymous_id: str | None,
        name: str | None,
        properties: Properties | None,
        extra: str | None,
        options: CallOptions,
        touchpoint: str | None = None,
        stage: str | None = None,
        channel: str | None = None,
    ) -> str:
        """A call whose common options came as keywords (all but ``track``, which spells
        them out: unpacking them would cost the hot path ~0.2 µs)."""
        if len(options) > len(options.keys() & _OPTION_NAMES):
            unknown = ", ".join(sorted(set(options) - _OPTION_NAMES))
            logger.warning("touchpoint %s(): unknown option(s) ignored: %s", kind, unknown)
        return self._capture(
            kind,
            user_id,
            anonymous_id,
            name,
            properties,
            extra,
            options.get("context"),
            options.get("timestamp"),
            options.get("integrations"),
            options.get("message_id"),
            touchpoint,
            stage,
            channel,
        )
