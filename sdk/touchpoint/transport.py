"""Getting an encoded batch to the collector: HTTP, compression, retries, backpressure.

Split as in sentry-python: the worker decides *what* to send and when; this module decides
*how*, and what an answer means for each event.

- :class:`HttpSender` makes one attempt over one keep-alive ``http.client`` connection (a
  connection per request would cost a TCP and TLS handshake per batch). It never raises: a
  network error is a :class:`Reply` with status 0.
- :class:`Deliverer` is the policy. Network errors, 408, 429 and 5xx are retried with
  exponential backoff and *full jitter* (so a fleet that lost the collector together does not
  come back in lockstep); ``Retry-After`` is honoured; a 429 (or any ``Retry-After``) pauses
  the whole client, not just the batch; other 4xx are never retried (resending cannot fix a bad
  request or a wrong write key); a 413 splits the batch in halves until the parts fit; every
  batch has a deadline, and the client's shutdown deadline cuts it short.

Events the collector refuses individually come back in the 200 answer
(``{"accepted": n, "rejected": [{"index", "messageId", "code", "reason", "path"}]}``): they are
in its dead-letter table already, so they are counted ``invalid`` and reported, not retried.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import logging
import random
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import msgspec

from touchpoint._version import __version__
from touchpoint.options import Endpoint, Options
from touchpoint.record import Encoded
from touchpoint.stats import DropReason, Ledger, Loss
from touchpoint_schemas.limits import MAX_BATCH_EVENTS

logger: Final = logging.getLogger("touchpoint")

USER_AGENT: Final = f"touchpoint-python/{__version__}"
LIBRARY_CONTEXT: Final = {"library": {"name": "touchpoint-python", "version": __version__}}
"""Sent once per batch as the envelope's ``context``; the collector merges it into each event."""

GZIP_LEVEL: Final = 1
"""Level 1 compresses event JSON about 6x at ~3x the speed of the default level 6, whose extra
few percent are not worth the worker's CPU at 100k events/s."""

_ENVELOPE_BYTES: Final = 256
"""Room for ``{"batch":[...],"sentAt":...,"context":...}`` around the events."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One attempt's outcome. `status` 0 means there was no HTTP answer."""

    status: int
    body: bytes = b""
    retry_after: float | None = None
    error: str = ""

    def describe(self) -> str:
        if self.status == 0:
            return self.error or "no answer"
        text = self.body[:200].decode("utf-8", "replace").strip()
        return f"HTTP {self.status}" + (f": {text}" if text else "")


class Sender(Protocol):
    """One attempt at posting a JSON batch body; must not raise."""

    def post(self, body: bytes, timeout: float) -> Reply: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Called from another thread to cut an attempt short (shutdown deadline)."""


class HttpSender:
    """POST ``{host}/v1/batch`` over one keep-alive connection, write key as Basic username."""

    def __init__(self, endpoint: Endpoint, write_key: str, *, gzip: bool) -> None:
        self._endpoint = endpoint
        self._gzip = gzip
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, timeout: float) -> Reply:
        payload = zlib.compress(body, GZIP_LEVEL, wbits=31) if self._gzip else body
        for attempt in range(2):
            conn = self._connection(timeout)
            reused = conn.sock is not None
            try:
                conn.request("POST", self._endpoint.path, payload, self._headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                # An idle keep-alive connection the server has closed fails on first use;
                # that is not the collector being down, so try once more on a fresh one.
                if reused and attempt == 0 and _is_stale(exc):
                    continue
                return Reply(0, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
            if response.will_close:
                self.close()
            return Reply(
                response.status, data, parse_retry_after(response.getheader("Retry-After"))
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._endpoint.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = self._conn = cls(self._endpoint.host, self._endpoint.port, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _is_stale(exc: BaseException) -> bool:
    return isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _Rejection(msgspec.Struct, rename="camel"):
    index: int = -1
    message_id: str = ""
    code: str = ""
    reason: str = ""
    path: str = ""


class _Answer(msgspec.Struct):
    accepted: int | None = None
    rejected: list[_Rejection] = msgspec.field(default_factory=list)


_answer_decoder: Final = msgspec.json.Decoder(_Answer)
_json: Final = msgspec.json.Encoder()


def batch_body(events: list[bytes]) -> bytes:
    """The ``/v1/batch`` body (the shape of :class:`touchpoint_schemas.events.Batch`)."""
    return _json.encode(
        {
            "batch": [msgspec.Raw(raw) for raw in events],
            "sentAt": datetime.now(UTC),
            "context": LIBRARY_CONTEXT,
        }
    )


@dataclass(slots=True)
class Unsent:
    """Events a delivery gave up on for a retryable reason (the spool may keep them)."""

    batch: Encoded
    reason: DropReason
    detail: str


@dataclass(frozen=True, slots=True)
class _GiveUp:
    reason: DropReason
    detail: str


_SPLIT: Final = "split"
_DONE: Final = "done"

Sleep = Callable[[float], None]
"""Waits up to the given seconds; may return early (shutdown), the caller re-checks."""


class Deliverer:
    """Sends one encoded batch until each event is delivered, refused, or given up."""

    def __init__(
        self,
        sender: Sender,
        options: Options,
        ledger: Ledger,
        sleep: Sleep,
        stop_at: Callable[[], float] = lambda: float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sender = sender
        self._clock = clock
        self._options = options
        self._ledger = ledger
        self._sleep = sleep
        self._stop_at = stop_at
        self.paused_until = 0.0
        """Monotonic time before which nothing is sent (set by 429 and Retry-After)."""
        self._pause_reason: DropReason = "retry_exhausted"

    def deliver(self, batch: Encoded) -> Unsent | None:
        """Send `batch`; settle what the collector answered; return what could not be sent."""
        give_up_at = self._clock() + self._options.batch_deadline
        ranges = deque(self._chunks(batch))
        while ranges:
            start, end = ranges.popleft()
            outcome = self._attempts(batch, start, end, give_up_at)
            if outcome == _SPLIT:
                middle = (start + end) // 2
                ranges.extendleft([(middle, end), (start, middle)])
            elif isinstance(outcome, _GiveUp):
                left = [(start, end), *ranges]
                return Unsent(_subset(batch, left), outcome.reason, outcome.detail)
        return None

    def _chunks(self, batch: Encoded) -> list[tuple[int, int]]:
        """Ranges of at most `max_batch_bytes` (and the collector's event limit) each."""
        limit = self._options.max_batch_bytes - _ENVELOPE_BYTES
        chunks, start, size = [], 0, 0
        for i, raw in enumerate(batch.events):
            if i > start and (size + len(raw) + 1 > limit or i - start >= MAX_BATCH_EVENTS):
                chunks.append((start, i))
                start, size = i, 0
            size += len(raw) + 1
        if start < len(batch.events):
            chunks.append((start, len(batch.events)))
        return chunks

    def _attempts(self, batch: Encoded, start: int, end: int, give_up_at: float) -> object:
        options = self._options
        retry_at, failures = 0.0, 0
        reason: DropReason = "retry_exhausted"
        detail = "not attempted"
        while True:
            now = self._clock()
            stop_at = self._stop_at()
            limit = min(give_up_at, stop_at)
            wait_until = max(retry_at, self.paused_until)
            if wait_until > now or now >= limit:
                if max(wait_until, now) >= limit:
                    if stop_at <= give_up_at:
                        return _GiveUp("shutdown", f"client shut down; last: {detail}")
                    if wait_until > retry_at:  # waiting out the client-wide pause
                        reason = self._pause_reason
                    return _GiveUp(reason, f"batch deadline passed; last: {detail}")
                self._sleep(wait_until - now)
                continue
            body = batch_body(batch.events[start:end])
            reply = self.sender.post(body, min(options.request_timeout, limit - now))
            status = reply.status
            logger.debug(
                "touchpoint sent %d events (%d bytes): %s in %.1f ms",
                end - start,
                len(body),
                reply.describe() if status != 200 else "HTTP 200",
                (self._clock() - now) * 1000,
            )
            if 200 <= status < 300:
                self._answered(batch, start, end, reply, accepted=True)
                return _DONE
            if status == 413:
                if end - start > 1:
                    return _SPLIT
                self._ledger.drop(Loss("oversize", (batch.ids[start],), reply.describe()))
                return _DONE
            if not (status == 0 or status in (408, 429) or status >= 500):
                self._answered(batch, start, end, reply, accepted=False)
                return _DONE
            failures += 1
            reason = "rate_limited" if status == 429 else "retry_exhausted"
            detail = reply.describe()
            now = self._clock()
            if reply.retry_after is not None:
                retry_at = now + reply.retry_after
            else:
                ceiling = min(options.backoff_max, options.backoff_base * 2 ** (failures - 1))
                retry_at = now + random.uniform(0.0, ceiling)
            if status == 429 or reply.retry_after is not None:
                self._pause(retry_at, reason)  # even if this batch is given up right now
            if failures > options.max_retries:
                return _GiveUp(reason, f"{options.max_retries} retries failed; last: {detail}")
            self._ledger.retried()

    def _pause(self, until: float, reason: DropReason) -> None:
        """Hold back every batch, not only this one: the collector asked for air."""
        if until > self.paused_until:
            self.paused_until = until
            self._pause_reason = reason

    def _answered(
        self, batch: Encoded, start: int, end: int, reply: Reply, *, accepted: bool
    ) -> None:
        """Settle a range by the collector's answer. Events it lists as rejected are invalid
        with its own code and reason (a partly bad batch is a 200, an all-bad one a 400);
        the others were accepted (2xx) or refused with the request (other 4xx)."""
        ids = batch.ids[start:end]
        try:
            rejected = _answer_decoder.decode(reply.body).rejected if reply.body else []
        except (msgspec.DecodeError, UnicodeDecodeError):
            rejected = []  # not our answer format: the status alone decides
        in_range = set(ids)
        groups: dict[str, list[str]] = {}
        listed: set[str] = set()
        for item in rejected:
            if item.message_id in in_range:
                message_id = item.message_id
            elif 0 <= item.index < len(ids):
                message_id = ids[item.index]
            else:
                continue
            if message_id in listed:
                continue
            listed.add(message_id)
            where = f" at {item.path}" if item.path and item.path != "$" else ""
            key = f"rejected by the collector: {item.code}: {item.reason}{where}"
            groups.setdefault(key, []).append(message_id)
        if accepted:
            self._ledger.sent(len(ids) - len(listed))
        else:
            refused = [mid for mid in ids if mid not in listed]
            if refused:
                groups.setdefault(reply.describe(), []).extend(refused)
        for detail, lost in groups.items():
            self._ledger.drop(Loss("invalid", tuple(lost), detail))


def _subset(batch: Encoded, ranges: list[tuple[int, int]]) -> Encoded:
    out = Encoded()
    for start, end in ranges:
        out.ids.extend(batch.ids[start:end])
        out.events.extend(batch.events[start:end])
    out.nbytes = sum(len(raw) for raw in out.events)
    return out
