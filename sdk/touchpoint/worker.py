"""The background worker: batching, encoding, sending, and the flush and shutdown handshakes.

One daemon thread per client does everything slow, so the capture hot path only appends to
a deque. It sleeps until there is work, never polls: the hot path wakes it when the queue
leaves empty or a batch is full, :meth:`Worker.request_flush` and :meth:`Worker.stop` wake it
too, and the only timed waits are the ones the work itself needs (``flush_interval`` for a
partial batch, a retry backoff, the spool's next attempt).

Batches go out one at a time over one connection. While a batch is being retried the queue
keeps filling up to its bound (and then drops the newest): that is the memory bound doing its
job. With a spool, the wait between retries is used to move the queue onto disk instead, so a
long outage fills the disk budget rather than dropping.

The daemon flag matters: a worker stuck on a hung collector must never keep the process
alive. Delivery at exit is the exit hook's job (``Client.shutdown`` with a bounded wait).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from touchpoint.options import Options
from touchpoint.queue import EventQueue
from touchpoint.record import MESSAGE_ID, Captured, Encoded, EventEncoder
from touchpoint.spool import Spool
from touchpoint.stats import Ledger, Loss
from touchpoint.transport import Deliverer, Sender

logger: Final = logging.getLogger("touchpoint")

_INF: Final = float("inf")


class Worker:
    """Drains an :class:`EventQueue` into the collector (or the spool, then the collector)."""

    def __init__(
        self,
        options: Options,
        queue: EventQueue,
        ledger: Ledger,
        sender: Sender,
        spool: Spool | None,
    ) -> None:
        self._options = options
        self._queue = queue
        self._ledger = ledger
        self._spool = spool
        self._encoder = EventEncoder(ledger, options.before_send)
        self._deliverer = Deliverer(
            sender,
            options,
            ledger,
            self._sleep_spooling if spool is not None else self._sleep,
            stop_at=lambda: self._stop_at,
        )
        self._wake = threading.Event()
        self._stop_cond = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stop_at = _INF
        self._flush_requested = 0
        self._flush_served = 0
        self._first_seen: float | None = None
        """When the worker first saw the queue non-empty since it last took a batch."""
        self._spool_retry_at = 0.0

    @property
    def sender(self) -> Sender:
        return self._deliverer.sender

    # -- called from other threads -------------------------------------------------------

    def kick(self) -> None:
        """Wake the worker (the hot path's signal); starts the thread on first use."""
        if self._thread is None:
            self.start()
        if not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="touchpoint-worker", daemon=True
                )
                self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def request_flush(self) -> None:
        """Send what is queued now, without waiting for a full batch or the interval."""
        self._flush_requested += 1
        self.kick()

    def stop(self, timeout: float) -> None:
        """Deliver what is queued, giving up `timeout` seconds from now."""
        with self._stop_cond:
            self._stop_at = min(self._stop_at, time.monotonic() + timeout)
            self._stopping = True
            self._stop_cond.notify_all()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to finish; True when it has (or never ran)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def run_inline(self, items: list[Captured]) -> None:
        """Encode and deliver on the calling thread (``sync_mode``)."""
        self._ledger.take(len(items))
        self._deliver(self._encoder.encode(items))
        self._ledger.report_deferred()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # a bug here must be visible, and must not kill the app
            logger.exception("touchpoint worker stopped unexpectedly")
        finally:
            self._finish()

    def _loop(self) -> None:
        queue = self._queue
        while True:
            self._ledger.report_deferred()
            flush = self._wait_for_work()
            if self._stopping and time.monotonic() >= self._stop_at:
                return
            items = queue.take(queue.batch_size)
            if items:
                self._first_seen = None
                self._process(items)
                continue
            if self._spool is not None:
                self._send_spooled(force=flush is not None or self._stopping)
            if flush is not None:
                self._flush_served = flush
            if self._stopping:
                return

    def _wait_for_work(self) -> int | None:
        """Block until a batch is due; return the flush request being served, if any."""
        queue, wake = self._queue, self._wake
        while True:
            wake.clear()
            if self._flush_requested != self._flush_served:
                return self._flush_requested
            if self._stopping or self._ledger.has_deferred():
                return None
            now = time.monotonic()
            timeout = self._spool_due_in(now)
            if len(queue):
                if len(queue) >= queue.wake_at:
                    return None
                if self._first_seen is None:
                    self._first_seen = now
                batch_due_in = self._first_seen + self._options.flush_interval - now
                timeout = batch_due_in if timeout is None else min(timeout, batch_due_in)
            if timeout is not None and timeout <= 0:
                return None
            wake.wait(timeout)

    def _spool_due_in(self, now: float) -> float | None:
        if self._spool is None or not self._spool.events:
            return None
        return self._spool_retry_at - now

    def _process(self, items: list[Captured]) -> None:
        self._ledger.take(len(items))
        batch = self._encoder.encode(items)
        self._queue.observe(len(batch), batch.nbytes)
        if not batch.events:
            return
        if self._spool is not None and self._spool.put(batch):
            self._send_spooled(force=False)
        else:
            self._deliver(batch)

    def _deliver(self, batch: Encoded) -> None:
        if not batch.events:
            return
        unsent = self._deliverer.deliver(batch)
        if unsent is not None:
            self._ledger.drop(Loss(unsent.reason, tuple(unsent.batch.ids), unsent.detail))

    def _send_spooled(self, *, force: bool) -> None:
        """Send spooled batches oldest first, until done or the collector fails."""
        spool = self._spool
        assert spool is not None
        while force or time.monotonic() >= self._spool_retry_at:
            force = False
            head = spool.oldest()
            self._settle_unreadable(spool)
            if head is None:
                return
            entry, batch = head
            unsent = self._deliverer.deliver(batch)
            if unsent is None:
                spool.remove(entry)
                continue
            spool.replace(entry, unsent.batch)  # kept for a later attempt or the next start
            self._spool_retry_at = max(
                self._deliverer.paused_until, time.monotonic() + self._options.backoff_max
            )
            return

    def _settle_unreadable(self, spool: Spool) -> None:
        lost, spool.unreadable = spool.unreadable, 0
        if lost:
            self._ledger.drop(Loss("invalid", (), "unreadable spool data"), count=lost)

    def _spool_queue(self) -> None:
        """Move everything queued onto disk (while the collector is failing)."""
        spool, queue = self._spool, self._queue
        assert spool is not None
        while len(queue) and spool.has_room():
            items = queue.take(queue.batch_size)
            self._ledger.take(len(items))
            batch = self._encoder.encode(items)
            self._queue.observe(len(batch), batch.nbytes)
            if batch.events and not spool.put(batch):
                unsent = Loss("queue_full", tuple(batch.ids), "spool full and collector failing")
                self._ledger.drop(unsent)
        self._first_seen = None

    # -- waiting between retries ---------------------------------------------------------

    def _sleep(self, delay: float) -> None:
        """Wait `delay` seconds, or less if the client is shut down meanwhile."""
        until = time.monotonic() + delay
        with self._stop_cond:
            while True:
                remaining = min(until, self._stop_at) - time.monotonic()
                if remaining <= 0:
                    return
                self._stop_cond.wait(remaining)

    def _sleep_spooling(self, delay: float) -> None:
        """Like :meth:`_sleep`, but keep moving the queue onto disk while waiting."""
        until = time.monotonic() + delay
        spool = self._spool
        assert spool is not None
        while True:
            self._ledger.report_deferred()
            if not spool.has_room():
                self._sleep(until - time.monotonic())
                return
            self._wake.clear()
            if len(self._queue) >= self._queue.wake_at or self._stopping:
                self._spool_queue()
            remaining = min(until, self._stop_at) - time.monotonic()
            if remaining <= 0:
                return
            if len(self._queue):
                self._first_seen = self._first_seen or time.monotonic()
                due = self._first_seen + self._options.flush_interval - time.monotonic()
                if due <= 0:
                    self._spool_queue()
                    continue
                remaining = min(remaining, due)
            self._wake.wait(remaining)

    # -- the end -------------------------------------------------------------------------

    def _finish(self) -> None:
        """Settle what is left when the thread ends (shutdown deadline, or a crash)."""
        try:
            if self._spool is not None:
                self._spool_queue()
            self.drop_queued()
        except BaseException:
            logger.exception("touchpoint worker failed to settle its queue")

    def drop_queued(self) -> None:
        """Drop what is still queued as ``shutdown`` (also called by a shutdown that gave up
        waiting for this thread; each event is taken, and so settled, exactly once)."""
        left = self._queue.take(len(self._queue))
        if left:
            self._ledger.take(len(left))
            ids = tuple(item[MESSAGE_ID] for item in left)
            self._ledger.drop(Loss("shutdown", ids, "still queued at the shutdown deadline"))
        self._ledger.report_deferred()
