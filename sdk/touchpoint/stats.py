"""Loss accounting: every captured event ends up sent, filtered or dropped for a named reason.

Analytics that silently lose events are worse than none: the journey map would show a drop-off
that is really an SDK queue overflowing. So each event the client accepted is counted exactly
once as sent, filtered (``before_send`` said no) or dropped with one of :data:`DROP_REASONS`,
and drops reach the application through ``on_error`` with the message ids.

The hot path never takes this module's lock for an event it queues: queued events are counted
by the worker when it takes them (``taken``), and ``pending = taken - done + queued``. Only a
hot-path *drop* (queue full, invalid call, client shut down) takes the lock, and its report is
deferred to the worker thread: ``on_error`` is application code and must not run inside
``track()``, where it could block or raise into the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Final, Literal

logger: Final = logging.getLogger("touchpoint")

DropReason = Literal[
    "queue_full", "oversize", "invalid", "retry_exhausted", "rate_limited", "shutdown"
]
DROP_REASONS: Final[tuple[DropReason, ...]] = (
    "queue_full",
    "oversize",
    "invalid",
    "retry_exhausted",
    "rate_limited",
    "shutdown",
)
"""Why events are lost.

- ``queue_full``: the bounded in-memory queue was full (the newest event is dropped).
- ``oversize``: encoded larger than ``MAX_EVENT_BYTES``, or refused with 413 on its own.
- ``invalid``: a bad call (caught at capture or by the worker), an event the collector
  rejected (its dead-letter table has the bytes), or a batch refused with a non-retryable 4xx.
- ``retry_exhausted``: retries or the per-batch deadline ran out on network errors, 408 or 5xx.
- ``rate_limited``: the same, when the last answer was 429.
- ``shutdown``: still undelivered when :meth:`Client.shutdown` gave up, or tracked after it.
"""


@dataclass(frozen=True, slots=True)
class Loss:
    """Events lost for one reason, as passed to ``on_error``."""

    reason: DropReason
    message_ids: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of :meth:`Client.stats`. Counts are since the client started (or forked)."""

    enqueued: int
    """Calls accepted for delivery (queued, or sent inline in ``sync_mode``)."""
    sent: int
    """Events the collector accepted."""
    pending: int
    """Accepted or recovered from the spool, and neither sent nor dropped yet."""
    spooled: int
    """Events on disk waiting to be sent (included in ``pending``)."""
    recovered: int
    """Events found in the spool from an earlier process, and adopted by this one."""
    filtered: int
    """Events ``before_send`` dropped on purpose (not a loss)."""
    retries: int
    """Requests that were attempted again."""
    queue_full: int
    oversize: int
    invalid: int
    retry_exhausted: int
    rate_limited: int
    shutdown: int

    @property
    def dropped(self) -> int:
        return sum(getattr(self, reason) for reason in DROP_REASONS)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "dropped": self.dropped}


ErrorCallback = Callable[[Loss], object]


class Ledger:
    """The counters behind :class:`Stats`, the flush wait, and loss reporting."""

    def __init__(self, on_error: ErrorCallback | None) -> None:
        self._on_error = on_error
        self._cond = threading.Condition(threading.Lock())
        self._taken = 0
        self._done = 0
        self._recovered = 0
        self._sent = 0
        self._filtered = 0
        self._retries = 0
        self._drops = dict.fromkeys(DROP_REASONS, 0)
        self._deferred: deque[tuple[DropReason, str, str]] = deque(maxlen=100_000)
        """Hot-path drops waiting to be reported by the worker; bounded so that a drop storm
        while the worker is stuck cannot grow memory (the counts stay exact)."""

    # -- the worker's side ---------------------------------------------------------------

    def take(self, n: int, *, recovered: bool = False) -> None:
        """`n` events entered the pipeline (taken off the queue, sent inline, or recovered)."""
        with self._cond:
            self._taken += n
            if recovered:
                self._recovered += n

    def sent(self, n: int) -> None:
        self._settle(n, "sent")

    def filtered(self, n: int) -> None:
        self._settle(n, "filtered")

    def retried(self) -> None:
        with self._cond:
            self._retries += 1

    def drop(self, loss: Loss, count: int | None = None) -> None:
        """Taken events lost: tell the application (outside the lock), then count them, so
        that a :meth:`wait` that returns has seen ``on_error`` called. `count` is for events
        whose ids could not be read back (a damaged spool file)."""
        n = len(loss.message_ids) if count is None else count
        self._report(loss, n)
        with self._cond:
            self._drops[loss.reason] += n
            self._done += n
            self._cond.notify_all()

    def _settle(self, n: int, what: Literal["sent", "filtered"]) -> None:
        if n <= 0:
            return
        with self._cond:
            if what == "sent":
                self._sent += n
            else:
                self._filtered += n
            self._done += n
            self._cond.notify_all()

    # -- the hot path's side -------------------------------------------------------------

    def defer_drop(self, reason: DropReason, message_id: str, detail: str) -> None:
        """An event lost before it was queued; reported later by :meth:`report_deferred`."""
        with self._cond:
            self._drops[reason] += 1
            self._deferred.append((reason, message_id, detail))

    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def report_deferred(self) -> None:
        """Report hot-path drops, one :class:`Loss` per reason and detail (worker thread)."""
        if not self._deferred:
            return
        grouped: dict[tuple[DropReason, str], list[str]] = {}
        while True:
            try:
                reason, message_id, detail = self._deferred.popleft()
            except IndexError:
                break
            grouped.setdefault((reason, detail), []).append(message_id)
        for (reason, detail), ids in grouped.items():
            self._report(Loss(reason, tuple(ids), detail), len(ids))

    def report_now(self, reason: DropReason, message_ids: Iterable[str], detail: str) -> None:
        """A drop outside the pipeline reported on the caller's thread (sync mode, shutdown)."""
        ids = tuple(message_ids)
        with self._cond:
            self._drops[reason] += len(ids)
        self._report(Loss(reason, ids, detail), len(ids))

    # -- readers -------------------------------------------------------------------------

    def target(self, queued: int) -> int:
        """What :meth:`wait` must reach for everything accepted so far to be settled."""
        with self._cond:
            return self._taken + queued

    def wait(self, target: int, timeout: float) -> int:
        """Wait until `target` events are settled or `timeout` passes; return how many of
        them are still pending. Never waits longer than `timeout`."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return max(0, target - self._done)

    def snapshot(self, queued: int, spooled: int) -> Stats:
        with self._cond:
            return Stats(
                enqueued=self._taken - self._recovered + queued,
                sent=self._sent,
                pending=self._taken - self._done + queued,
                spooled=spooled,
                recovered=self._recovered,
                filtered=self._filtered,
                retries=self._retries,
                **self._drops,
            )

    def _report(self, loss: Loss, count: int) -> None:
        shown = ", ".join(loss.message_ids[:3]) + (", ..." if len(loss.message_ids) > 3 else "")
        logger.warning(
            "touchpoint dropped %d event(s): %s%s [%s]",
            count,
            loss.reason,
            f" ({loss.detail})" if loss.detail else "",
            shown,
        )
        if self._on_error is None:
            return
        try:
            self._on_error(loss)
        except Exception:
            logger.exception("touchpoint on_error callback raised")
