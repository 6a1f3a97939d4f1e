"""The bounded in-memory buffer between the capture hot path and the worker.

Full-queue policy: **drop the newest** (tail drop). When the queue is full, the event being
captured is refused and counted ``queue_full``; nothing already queued is evicted and the
caller never waits. Why this one:

- never blocking is the SDK's first promise, so "block until there is room" is out;
- evicting the oldest would need the worker's cooperation on every overflowing call, while a
  tail drop is one comparison;
- a full queue means the collector has been unreachable or slow for a while; the queued events
  are the start of that story (and may hold the ``identify`` that later events hang on), so
  keeping them and refusing the newest keeps whole journeys rather than fragments.

The bound is by count *and* bytes. Measuring each event's size on the hot path would cost
more than the rest of the call, so bytes are estimated: the worker measures the encoded size
of every batch it sends and keeps a running mean, and the count limit becomes
``min(max_queue_size, max_queue_bytes // mean)``. Queues of large events are therefore held
to the byte budget within a batch or two, at the price of one integer comparison per call.

``deque.append`` and ``popleft`` are atomic, so the hot path takes no lock: concurrent
producers may overshoot the bound by at most one event each, which is immaterial.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from touchpoint.record import Captured
from touchpoint_schemas.limits import MAX_BATCH_EVENTS

INITIAL_EVENT_BYTES: Final = 512
"""The mean encoded event size assumed until the worker has measured some."""
_SMOOTHING: Final = 0.25
_REQUEST_FILL: Final = 0.9
"""Share of ``max_batch_bytes`` a take aims at, so that a mean-size estimate slightly off
still fits one request."""


class EventQueue:
    """FIFO of captured calls with a count-and-bytes bound and a wake-up threshold."""

    __slots__ = (
        "_flush_at",
        "_items",
        "_kick",
        "_max_batch_bytes",
        "_max_bytes",
        "_max_size",
        "batch_size",
        "limit",
        "mean_event_bytes",
        "wake_at",
    )

    def __init__(
        self,
        *,
        max_size: int,
        max_bytes: int,
        flush_at: int,
        max_batch_bytes: int,
        kick: Callable[[], None],
    ) -> None:
        self._items: deque[Captured] = deque()
        self._max_size = max_size
        self._max_bytes = max_bytes
        self._flush_at = flush_at
        self._max_batch_bytes = max_batch_bytes
        self._kick = kick
        self.mean_event_bytes = float(INITIAL_EVENT_BYTES)
        self.limit = 0
        """Current count bound; 0 refuses everything (closed, or not queueing at all)."""
        self.wake_at = 1
        """Queue length that makes a batch worth sending now: `flush_at`, or fewer when events
        are large (a batch then fills `max_batch_bytes` first)."""
        self.batch_size = 1
        """Most events the worker takes at once: one full request. Normally it finds about
        `wake_at`; after a stall it drains the backlog in requests as large as the collector
        takes, which also means fewer requests, compressions and thread switches per event."""
        self._resize()

    def put(self, item: Captured) -> bool:
        """Queue `item`, or refuse it (False) when full. Wakes the worker when the queue
        leaves empty (so a lone event is sent after `flush_interval`) or a batch is ready."""
        items = self._items
        n = len(items)
        if n >= self.limit:
            return False
        items.append(item)
        if n == 0 or n + 1 >= self.wake_at:
            self._kick()
        return True

    def take(self, n: int) -> list[Captured]:
        """Up to `n` of the oldest events."""
        out: list[Captured] = []
        popleft = self._items.popleft
        try:
            for _ in range(n):
                out.append(popleft())
        except IndexError:
            pass
        return out

    def __len__(self) -> int:
        return len(self._items)

    def observe(self, events: int, nbytes: int) -> None:
        """Feed the measured size of `events` encoded events into the byte estimate."""
        if events > 0:
            mean = nbytes / events
            self.mean_event_bytes += _SMOOTHING * (mean - self.mean_event_bytes)
            self._resize()

    def close(self) -> None:
        """Refuse all further events (the client is shutting down)."""
        self._max_size = 0
        self.limit = 0

    def _resize(self) -> None:
        mean = max(64.0, self.mean_event_bytes)
        self.limit = min(self._max_size, int(self._max_bytes // mean))
        if self._max_size:
            self.limit = max(1, self.limit)
        self.batch_size = max(
            1, min(MAX_BATCH_EVENTS, int(self._max_batch_bytes * _REQUEST_FILL // mean))
        )
        self.wake_at = max(1, min(self._flush_at, self.batch_size))
