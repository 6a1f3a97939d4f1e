"""The client: configuration, the capture hot path, and the lifecycle (flush, shutdown, fork).

The hot path (:meth:`Client._capture`, behind ``track()`` and every other call) has a budget
of ~2 µs, so it does only what must happen at capture time: stamp the time and a UUIDv7,
check argument types and lengths (one ``__class__`` test each on the happy path), take a
shallow copy of the caller's dicts, and append one tuple to a deque. No Struct, no JSON, no
lock, no I/O; the worker thread does the rest. It is wrapped so that nothing raises into the
application once the client exists: a bad call is logged and counted, and still returns the
id it would have had.

Construction is the opposite: every option is checked and a bad one raises
:class:`touchpoint.ConfigError`.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import threading
import time
import weakref
from datetime import datetime
from typing import Final, Unpack

from touchpoint import _fork
from touchpoint.calls import SCORED_TOUCHPOINTS, Properties
from touchpoint.ids import IdGenerator
from touchpoint.options import DEFAULT_HOST, ClientOptions, Options, endpoint
from touchpoint.queue import EventQueue
from touchpoint.record import (
    KNOWN_NAMES,
    Captured,
    InvalidCall,
    as_dict,
    as_id,
    as_name,
    as_snake,
    as_timestamp,
)
from touchpoint.spool import Spool
from touchpoint.stats import Ledger, Stats
from touchpoint.touchpoints import TouchpointCalls
from touchpoint.transport import HttpSender
from touchpoint.worker import Worker
from touchpoint_schemas.decode import check_score
from touchpoint_schemas.events import EventType
from touchpoint_schemas.limits import MAX_ID_CHARS, MAX_NAME_CHARS

logger: Final = logging.getLogger("touchpoint")

_time_ns: Final = time.time_ns
_getpid: Final = os.getpid


class Client(TouchpointCalls):
    """Sends events to a Touchpoint collector (or any Segment-compatible ``/v1/batch``).

    ``Client(write_key, host="https://collector.example.com", **options)``; the options are
    documented on :class:`touchpoint.Options`. Thread-safe, fork-safe, and safe to call from
    asyncio code (no call blocks; ``await client.aflush()`` waits off the loop).
    """

    def __init__(
        self, write_key: str, host: str = DEFAULT_HOST, **options: Unpack[ClientOptions]
    ) -> None:
        self.options: Final = Options.build(write_key, host, options)
        if self.options.debug:
            logger.setLevel(logging.DEBUG)
        self._ids = IdGenerator()
        self._new_id = self._ids.new
        self._closed = False
        self._start(adopt=True)
        _fork.watch(self)
        self._exit_hook = functools.partial(_shutdown_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    def _start(self, *, adopt: bool) -> None:
        """Build the pipeline (at construction, and afresh in a forked child)."""
        o = self.options
        self._pid = _getpid()
        self._lifecycle = threading.Lock()
        self._sync_lock = threading.Lock()
        self._ledger = Ledger(o.on_error)
        queueing = not (o.sync_mode or o.disabled or self._closed)
        self._queueing = queueing
        self._queue = EventQueue(
            max_size=o.max_queue_size if queueing else 0,
            max_bytes=o.max_queue_bytes,
            flush_at=o.flush_at,
            max_batch_bytes=o.max_batch_bytes,
            kick=self._kick,
        )
        self._spool = (
            Spool(o.spool_dir, o.spool_max_bytes, adopt=adopt)
            if o.spool_dir is not None and queueing
            else None
        )
        sender = o.sender or HttpSender(endpoint(o.host), o.write_key, gzip=o.gzip)
        self._worker = Worker(o, self._queue, self._ledger, sender, self._spool)
        self._put = self._queue.put
        if self._spool is not None and self._spool.recovered:
            self._ledger.take(self._spool.recovered, recovered=True)
            self._worker.start()

    def _kick(self) -> None:
        self._worker.kick()

    # -- the hot path --------------------------------------------------------------------

    def _capture(
        self,
        kind: EventType,
        user_id: str | None,
        anonymous_id: str | None,
        name: str | None,
        properties: Properties | None,
        extra: str | None,
        context: Properties | None,
        timestamp: datetime | None,
        integrations: Properties | None,
        message_id: str | None,
        touchpoint: str | None,
        stage: str | None,
        channel: str | None,
        /,
    ) -> str:
        ns = _time_ns()
        mid = ""
        try:
            if self._pid != _getpid():
                self._after_fork()
            mid = self._new_id(ns)
            if user_id is not None and not (
                isinstance(user_id, str) and 0 < len(user_id) <= MAX_ID_CHARS
            ):
                user_id = as_id(user_id, "user_id")
            if anonymous_id is not None and not (
                isinstance(anonymous_id, str) and 0 < len(anonymous_id) <= MAX_ID_CHARS
            ):
                anonymous_id = as_id(anonymous_id, "anonymous_id")
            if user_id is None and (anonymous_id is None or kind == "alias"):
                raise InvalidCall(
                    "alias requires user_id"
                    if kind == "alias"
                    else "either user_id or anonymous_id is required"
                )
            if kind == "track":
                if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS):
                    name = as_name(name, "event")
            elif name is not None:
                name = as_name(name, "name")
            if extra is not None or kind == "alias" or kind == "group":
                extra = _check_extra(kind, extra)
            props = None
            if properties is not None:
                props = (
                    properties.copy()
                    if isinstance(properties, dict)
                    else as_dict(properties, "properties")
                )
            if touchpoint is not None:
                if touchpoint not in KNOWN_NAMES:
                    touchpoint = as_snake(touchpoint, "touchpoint")
                if touchpoint in SCORED_TOUCHPOINTS:
                    check_score(props or {})
            if stage is not None and stage not in KNOWN_NAMES:
                stage = as_snake(stage, "stage")
            if channel is not None and channel not in KNOWN_NAMES:
                channel = as_snake(channel, "channel")
            ctx = None if context is None else as_dict(context, "context")
            integ = None if integrations is None else as_dict(integrations, "integrations")
            if timestamp is not None:
                timestamp = as_timestamp(timestamp)
            if message_id is not None:
                mid = as_id(message_id, "message_id")
            item: Captured = (
                kind,
                mid,
                ns,
                user_id,
                anonymous_id,
                name,
                props,
                extra,
                ctx,
                timestamp,
                integ,
                touchpoint,
                stage,
                channel,
            )
            if not self._put(item):
                self._refused(item)
        except Exception as exc:  # never raise into the application
            mid = mid or self._new_id(ns)
            self._invalid(mid, exc)
        return mid

    def _invalid(self, message_id: str, exc: Exception) -> None:
        try:
            detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            if self._queueing and not self._closed:  # on_error runs on the worker, not here
                self._ledger.defer_drop("invalid", message_id, detail)
                self._worker.kick()
            else:  # sync_mode and disabled have no worker: report on the caller's thread
                self._ledger.report_now("invalid", (message_id,), detail)
        except Exception:
            logger.exception("touchpoint failed to record an invalid call")

    def _refused(self, item: Captured) -> None:
        """The queue said no: the client is closed, not queueing, or full."""
        if self._closed:
            self._ledger.report_now("shutdown", (item[1],), "tracked after shutdown")
        elif self.options.disabled:
            pass
        elif self.options.sync_mode:
            with self._sync_lock:
                self._worker.run_inline([item])
        else:
            self._ledger.defer_drop("queue_full", item[1], "queue full")
            self._worker.kick()

    # -- lifecycle -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Send everything captured so far; return how many of those events are still
        pending when it returns. Waits at most `timeout` seconds (default: the
        ``flush_timeout`` option), whatever the collector does."""
        try:
            if self._pid != _getpid():
                self._after_fork()
            wait = self.options.flush_timeout if timeout is None else timeout
            target = self._ledger.target(len(self._queue))
            if target:
                self._worker.request_flush()
            return self._ledger.wait(target, wait)
        except Exception:
            logger.exception("touchpoint flush failed")
            return self.stats().pending

    def shutdown(self, timeout: float | None = None) -> int:
        """Flush, then stop the worker. Waits at most `timeout` seconds (default: the
        ``shutdown_timeout`` option). Returns how many events were not delivered: dropped
        as ``shutdown``, or left in the spool for the next start. Idempotent: a repeated
        call returns at once with what is still pending. Calls made after it are dropped as
        ``shutdown``."""
        try:
            with self._lifecycle:
                if self._pid != _getpid():
                    self._after_fork()
                if self._closed:
                    return self.stats().pending
                return self._close(self.options.shutdown_timeout if timeout is None else timeout)
        except Exception:
            logger.exception("touchpoint shutdown failed")
            return self.stats().pending

    def _close(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        lost_before = self._ledger.snapshot(0, 0).shutdown
        self._closed = True
        self._queue.close()
        worker = self._worker
        worker.stop(timeout)
        finished = worker.join(deadline - time.monotonic())
        if not finished:  # stuck in a request: cut it short, the deadline is the promise
            worker.sender.abort()
            finished = worker.join(0.1)
        worker.drop_queued()
        if finished:
            worker.sender.close()
            if self._spool is not None:
                self._spool.close()
        atexit.unregister(self._exit_hook)
        stats = self.stats()
        return stats.shutdown - lost_before + stats.pending

    async def aflush(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """:meth:`flush` for asyncio code: waits in a thread, never blocks the loop."""
        return await asyncio.to_thread(self.flush, timeout)

    async def ashutdown(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """:meth:`shutdown` for asyncio code."""
        return await asyncio.to_thread(self.shutdown, timeout)

    def stats(self) -> Stats:
        """Counts of what happened to the events captured so far (see :class:`Stats`)."""
        if self._pid != _getpid():
            self._after_fork()
        spool = self._spool
        return self._ledger.snapshot(len(self._queue), spool.events if spool else 0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        mode = "disabled" if self.options.disabled else "sync" if self.options.sync_mode else ""
        return f"<touchpoint.Client {self.options.host}{' ' + mode if mode else ''}>"

    # -- fork ----------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: a fresh pipeline; the parent's pending events are its own."""
        try:
            if self._spool is not None:
                self._spool.release_inherited()
            self._ids.reseed()
            self._start(adopt=False)
        except Exception:
            logger.exception("touchpoint could not reset after fork; events are dropped")
            self._pid = _getpid()
            self._closed = True


def _check_extra(kind: EventType, extra: object) -> str | None:
    """The per-type id or name: alias's previous id, group's id, a page's category."""
    if kind == "alias":
        if extra is None:
            raise InvalidCall("alias requires previous_id")
        return as_id(extra, "previous_id")
    if kind == "group":
        if extra is None:
            raise InvalidCall("group requires group_id")
        return as_id(extra, "group_id")
    return as_name(extra, "category")


def _shutdown_at_exit(ref: weakref.ref[Client]) -> None:
    client = ref()
    if client is not None:
        client.shutdown()
