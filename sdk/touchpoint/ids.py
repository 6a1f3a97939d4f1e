"""Message ids: UUIDv7 strings made cheaply enough for the capture hot path.

The id is fixed when the event is captured and travels with it through every retry, so the
collector's deduplication (``ReplacingMergeTree`` on ``message_id``) turns an SDK resend into
one stored event. UUIDv7 (RFC 9562) puts the millisecond time first, so ids sort by capture
time and ClickHouse's primary index stays local.

Why not :func:`uuid.uuid4`: it costs ~3 µs here (``os.urandom`` per call plus the UUID object),
more than the whole budget of a ``track()`` call. Instead this follows RFC 9562 §6.2
"method 2" (monotonic random): per process, 24 random bits fill ``rand_a`` and the top of
``rand_b``, and the remaining 48 bits are a counter that starts at a random value and
increments per id. Only the last group of the string changes from one id to the next, so a
call formats 6 bytes and concatenates a cached prefix (~0.2 µs).

Uniqueness: within a process the counter never repeats; across processes two generators
collide only if they share 24 random bits *and* land on the same counter value in the same
millisecond. A forked child must :meth:`IdGenerator.reseed` (the client does it), otherwise it
would continue its parent's sequence.
"""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Final

_COUNTER_BITS: Final = 48
_COUNTER_LIMIT: Final = 1 << _COUNTER_BITS
_COUNTER_START_LIMIT: Final = 1 << (_COUNTER_BITS - 1)
"""The counter starts below half its range, so it cannot wrap in any realistic lifetime (2^47
ids); if it ever does, :meth:`IdGenerator.new` reseeds."""


class IdGenerator:
    """Makes UUIDv7 strings; thread-safe (the counter is an :func:`itertools.count`)."""

    __slots__ = ("_cache", "_counter", "_middle")

    def __init__(self) -> None:
        self._middle = ""
        self._cache: tuple[int, str] = (-1, "")
        self._counter = itertools.count()
        self.reseed()

    def reseed(self) -> None:
        """New random bits and counter: after a fork, parent and child must not share them."""
        rand = int.from_bytes(os.urandom(9))
        rand_a = (rand >> 60) & 0xFFF
        rand_b_high = (rand >> 48) & 0xFFF
        # version 7 in the top nibble of group 3; variant 0b10 in the top bits of group 4.
        self._middle = f"7{rand_a:03x}-{0x8000 | (rand_b_high & 0x3FFF):04x}-"
        self._counter = itertools.count(rand % _COUNTER_START_LIMIT)
        self._cache = (-1, "")

    def new(self, time_ns: int) -> str:
        """A UUIDv7 for an event captured at `time_ns` (nanoseconds since the epoch)."""
        ms = time_ns // 1_000_000
        cache = self._cache
        if cache[0] != ms:
            cache = self._prefix(ms)
        try:
            return cache[1] + next(self._counter).to_bytes(6).hex()
        except OverflowError:  # 2^47 ids later: start a fresh random sequence
            self.reseed()
            return self.new(time_ns)

    def _prefix(self, ms: int) -> tuple[int, str]:
        t = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
        cache = (ms, f"{t[:8]}-{t[8:]}-{self._middle}")
        self._cache = cache  # one tuple: readers never see a prefix for another ms
        return cache


def uuid7_unix_ms(message_id: str) -> int:
    """The capture time (ms since the epoch) encoded in a UUIDv7 made here."""
    value = uuid.UUID(message_id)
    if value.version != 7:
        raise ValueError(f"{message_id!r} is not a UUIDv7")
    return value.int >> 80
