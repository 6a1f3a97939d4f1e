"""Helpers for testing code that tracks touchpoints: assert on events, send nothing.

::

    from touchpoint.testing import capture

    def test_checkout_tags_a_purchase():
        with capture() as tracked:
            checkout(cart)                        # calls touchpoint.purchase(...) inside
        [event] = tracked.events_for("purchase")
        assert event.properties["revenue"] == 42.0

:class:`CaptureClient` is a real :class:`~touchpoint.Client` in ``sync_mode`` whose transport
is replaced by an in-memory collector: calls go through the same validation, ``before_send``
and encoding as in production, and each batch is decoded with the contract's own decoder, so
an event the collector would refuse shows up in :attr:`CaptureClient.rejected` (and as an
``invalid`` loss), not in :attr:`CaptureClient.events`. Events are there as soon as the call
returns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Unpack

import msgspec

from touchpoint._default import set_default
from touchpoint.client import Client
from touchpoint.options import ClientOptions
from touchpoint.transport import Reply
from touchpoint_schemas.decode import (
    ContractError,
    ErrorCode,
    check_score,
    decode_batch,
    decode_event,
)
from touchpoint_schemas.events import Event, Track, event_name, event_properties, event_type
from touchpoint_schemas.taxonomy import Taxonomy, TaxonomyError

__all__ = ["CaptureClient", "CaptureSender", "Rejection", "capture", "check_taxonomy"]


class Rejection(msgspec.Struct, frozen=True):
    """An event the in-memory collector refused, and why (the collector's codes)."""

    message_id: str
    code: str
    reason: str
    path: str


class CaptureSender:
    """A sender that keeps what a collector would accept, instead of posting it."""

    def __init__(self, taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy
        """When set, touchpoints, stages and channels must be known to it (and feedback
        touchpoints must carry a score), as in a collector configured with it."""
        self.events: list[Event] = []
        self.rejected: list[Rejection] = []
        self._lock = threading.Lock()

    def post(self, body: bytes, timeout: float) -> Reply:
        envelope = decode_batch(body)
        answer: list[dict[str, Any]] = []
        accepted: list[Event] = []
        for index, raw in enumerate(envelope.batch):
            try:
                event = decode_event(bytes(raw))
                self._check(event)
            except ContractError as exc:
                message_id = _message_id(bytes(raw))
                self.rejected.append(Rejection(message_id, exc.code.value, exc.reason, exc.path))
                answer.append({"index": index, "messageId": message_id, **exc.as_dict()})
                continue
            accepted.append(event)
        with self._lock:
            self.events.extend(accepted)
        reply = {"accepted": len(accepted), "rejected": answer}
        return Reply(200, msgspec.json.encode(reply))

    def _check(self, event: Event) -> None:
        if self.taxonomy is not None:
            check_taxonomy(self.taxonomy, event)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class CaptureClient(Client):
    """A client that records events in memory; see the module docstring."""

    def __init__(
        self, *, taxonomy: Taxonomy | None = None, **options: Unpack[ClientOptions]
    ) -> None:
        self.sender = CaptureSender(taxonomy)
        options["sender"] = self.sender
        options.setdefault("sync_mode", True)
        super().__init__("capture", "http://capture.invalid", **options)

    @property
    def events(self) -> list[Event]:
        """Everything accepted so far, in call order."""
        return list(self.sender.events)

    @property
    def rejected(self) -> list[Rejection]:
        return list(self.sender.rejected)

    def tracked(self, event: str | None = None) -> list[Track]:
        """``track`` events, optionally only those named `event`."""
        return [e for e in self.events if isinstance(e, Track) and event in (None, e.event)]

    def events_for(self, touchpoint: str) -> list[Event]:
        """Events that explicitly carry `touchpoint`."""
        return [e for e in self.events if e.touchpoint == touchpoint]

    def find(self, message_id: str) -> Event:
        """The event with `message_id` (what every call returns)."""
        for event in self.events:
            if event.message_id == message_id:
                return event
        raise LookupError(f"no captured event has messageId {message_id!r}")

    def clear(self) -> None:
        self.sender.events.clear()
        self.sender.rejected.clear()


@contextmanager
def capture(
    *, taxonomy: Taxonomy | None = None, **options: Unpack[ClientOptions]
) -> Iterator[CaptureClient]:
    """Route the module-level API (``touchpoint.track`` ...) into a :class:`CaptureClient`
    for the duration of the block; the previous default client is restored afterwards."""
    client = CaptureClient(taxonomy=taxonomy, **options)
    previous = set_default(client)
    try:
        yield client
    finally:
        set_default(previous)
        client.shutdown(0)


def check_taxonomy(taxonomy: Taxonomy, event: Event) -> None:
    """What a collector configured with `taxonomy` checks beyond the contract: explicit
    touchpoints, stages and channels are known, and feedback touchpoints carry a score."""
    try:
        placed = taxonomy.resolve(
            event_type(event), event_name(event), event.touchpoint, event.stage, event.channel
        )
    except TaxonomyError as exc:
        raise ContractError(ErrorCode.UNKNOWN_TAXONOMY, exc.reason, exc.path) from None
    definition = taxonomy.touchpoint(placed.touchpoint) if placed.touchpoint else None
    if definition is not None and definition.carries_score:
        check_score(event_properties(event))


def _message_id(raw: bytes) -> str:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return ""
    found = value.get("messageId") if isinstance(value, dict) else None
    return found if isinstance(found, str) else ""
