"""A captured call, from the tuple the hot path queues to the JSON bytes a batch carries.

The hot path stores a plain tuple (:data:`Captured`) because building a msgspec Struct costs
~0.7 µs and encoding ~0.5 µs, together half the capture budget. The worker turns tuples into
the contract's Structs (:mod:`touchpoint_schemas.events`, so the wire format is defined in one
place), runs ``before_send``, encodes, and drops what is too large to send.

The argument checks at the bottom are the hot path's *slow* path: the hot path only calls them
when the fast type-and-length test fails, to coerce (an int user id becomes a string, as
Segment's SDKs do) or to reject with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from touchpoint.options import BeforeSend
from touchpoint.stats import Ledger, Loss
from touchpoint_schemas.events import (
    Alias,
    Event,
    EventBase,
    EventType,
    Group,
    Identify,
    Page,
    Screen,
    Track,
)
from touchpoint_schemas.limits import MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS
from touchpoint_schemas.taxonomy import (
    NAME_PATTERN,
    STANDARD_CHANNELS,
    STANDARD_TOUCHPOINTS,
    Stage,
)

JsonDict = dict[str, Any]

Captured = tuple[
    EventType,  # 0 type
    str,  # 1 message id
    int,  # 2 capture time, ns since the epoch
    str | None,  # 3 user id
    str | None,  # 4 anonymous id
    str | None,  # 5 event name (track) or page/screen name
    JsonDict | None,  # 6 properties (track, page, screen) or traits (identify, group)
    str | None,  # 7 category (page, screen), previous id (alias) or group id (group)
    JsonDict | None,  # 8 context
    datetime | None,  # 9 explicit timestamp
    JsonDict | None,  # 10 integrations
    str | None,  # 11 touchpoint
    str | None,  # 12 stage
    str | None,  # 13 channel
]
"""What the hot path queues: one flat tuple per call, nothing allocated but the tuple."""

MESSAGE_ID: Final = 1


class InvalidCall(ValueError):
    """A call the contract would refuse; it is dropped as ``invalid`` and never raised."""


def to_event(item: Captured, captured_at: datetime | None = None) -> Event:
    """The contract Struct for a captured call. `captured_at` is the capture time as a
    datetime when the caller has it at hand (the worker caches one per millisecond)."""
    kind, mid, ns, uid, aid, name, props, extra, context, ts, integrations, tp, stage, ch = item
    when = ts or captured_at or datetime.fromtimestamp(ns / 1e9, UTC)
    if kind == "track":  # most events: one constructor call (~0.25 µs, half the generic way)
        return Track(
            event=name or "",
            properties=props or {},
            message_id=mid,
            user_id=uid,
            anonymous_id=aid,
            timestamp=when,
            context=context or {},
            integrations=integrations or {},
            touchpoint=tp,
            stage=stage,
            channel=ch,
        )
    event: Event
    if kind == "page":
        event = Page(name=name, category=extra, properties=props or {})
    elif kind == "screen":
        event = Screen(name=name, category=extra, properties=props or {})
    elif kind == "identify":
        event = Identify(traits=props or {})
    elif kind == "group":
        event = Group(group_id=extra or "", traits=props or {})
    else:
        event = Alias(previous_id=extra or "")
    event.message_id = mid
    event.user_id = uid
    event.anonymous_id = aid
    event.timestamp = when
    if context:
        event.context = context
    if integrations:
        event.integrations = integrations
    event.touchpoint = tp
    event.stage = stage
    event.channel = ch
    return event


@dataclass(slots=True)
class Encoded:
    """A batch ready to send: each event's JSON bytes and message id, in capture order."""

    ids: list[str] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.events)


_json: Final = msgspec.json.Encoder()


class EventEncoder:
    """Captured tuples to JSON bytes, settling the ones that cannot be sent."""

    def __init__(self, ledger: Ledger, before_send: BeforeSend | None) -> None:
        self._ledger = ledger
        self._before_send = before_send
        self._filtered = 0
        self._invalid: dict[str, list[str]] = {}
        self._clock: tuple[int, datetime] = (-1, datetime.now(UTC))
        """The last capture millisecond and its datetime: at load, hundreds of events share
        one, and ``datetime.fromtimestamp`` is a fifth of the per-event cost. Millisecond
        precision is what the store keeps (``DateTime64(3)``)."""

    def encode(self, items: list[Captured]) -> Encoded:
        out = Encoded()
        self._filtered = 0
        self._invalid = {}
        oversize: list[str] = []
        for item in items:
            raw = self._encode_one(item)
            if raw is None:
                continue
            if len(raw) > MAX_EVENT_BYTES:
                oversize.append(item[MESSAGE_ID])
                continue
            out.ids.append(item[MESSAGE_ID])
            out.events.append(raw)
            out.nbytes += len(raw)
        self._ledger.filtered(self._filtered)
        for detail, ids in self._invalid.items():
            self._ledger.drop(Loss("invalid", tuple(ids), detail))
        if oversize:
            detail = f"encoded event larger than {MAX_EVENT_BYTES} bytes"
            self._ledger.drop(Loss("oversize", tuple(oversize), detail))
        return out

    def _encode_one(self, item: Captured) -> bytes | None:
        """The event's JSON, or None when it was filtered or found invalid (and noted)."""
        try:
            ms = item[2] // 1_000_000
            clock = self._clock
            if clock[0] != ms:
                clock = self._clock = (ms, datetime.fromtimestamp(ms / 1000, UTC))
            event = to_event(item, clock[1])
            if self._before_send is not None:
                try:
                    hooked = self._before_send(event)
                except Exception as exc:  # application code: its failure drops the event
                    self._reject(item, f"before_send raised {type(exc).__name__}: {exc}")
                    return None
                if hooked is None:
                    self._filtered += 1
                    return None
                if not isinstance(hooked, EventBase):  # typed, but it is application code
                    self._reject(item, "before_send must return the event or None")
                    return None
                event = hooked
                # The id is the caller's receipt: a hook may not change it.
                event.message_id = item[MESSAGE_ID]
            # Identity was checked at capture. Nesting depth is left to the collector: the
            # check walks every value (0.4-2.5 µs an event), too deep is a rare bug, and the
            # collector's rejection still reaches on_error with its reason.
            return _json.encode(event)
        except Exception as exc:  # unencodable values, a failing hook: never kill the worker
            self._reject(item, f"{type(exc).__name__}: {exc}")
            return None

    def _reject(self, item: Captured, detail: str) -> None:
        self._invalid.setdefault(detail, []).append(item[MESSAGE_ID])


# -- the hot path's slow path ------------------------------------------------------------

_NAME_RE: Final = re.compile(NAME_PATTERN)
KNOWN_NAMES: Final = frozenset(
    [tp.name for tp in STANDARD_TOUCHPOINTS]
    + [stage.value for stage in Stage]
    + [ch.name for ch in STANDARD_CHANNELS]
)
"""Standard touchpoint, stage and channel names: accepted without running the pattern."""


def as_id(value: object, what: str) -> str:
    """An id as a string: ints are converted (Segment's SDKs do the same)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return _text(value, what, MAX_ID_CHARS)


def as_name(value: object, what: str) -> str:
    return _text(value, what, MAX_NAME_CHARS)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidCall(f"{what} must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= limit:
        raise InvalidCall(f"{what} must have 1 to {limit} characters")
    return value


def as_dict(value: object, what: str) -> JsonDict:
    """A private shallow copy: a caller reusing its dict must not change a queued event."""
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidCall(f"{what} must be a mapping, got {type(value).__name__}")


def as_snake(value: object, what: str) -> str:
    """A touchpoint, stage or channel: snake_case (the collector checks it is known)."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidCall(f"{what} must match {NAME_PATTERN}, got {value!r}")
    return value


def as_timestamp(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidCall(f"timestamp must be a datetime, got {type(value).__name__}")
    return value
