"""A fault-injecting stand-in for the collector's ``/v1/batch``, on a real loopback socket.

It speaks the collector's protocol (Basic auth with the write key, optional gzip, the batch
envelope, the ``{"accepted", "rejected"}`` answer) and decodes every event with the contract's
own decoder, so a test that passes here sent what the collector would accept. Every accepted
event is recorded by ``messageId``; tests assert on that record, never on the client's word.

Faults are queued per request (:meth:`Sink.inject`) or standing (:attr:`Sink.fault`): an
HTTP status (with ``Retry-After``), a delay (a slow or hung collector), a dropped connection;
:meth:`Sink.down` closes the listener and every open connection (connection refused) and
:meth:`Sink.up` reopens it on the same port.
"""

from __future__ import annotations

import base64
import collections
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

from touchpoint.testing import check_taxonomy
from touchpoint_schemas.decode import ContractError, decode_batch, decode_event
from touchpoint_schemas.events import Event
from touchpoint_schemas.taxonomy import Taxonomy

WRITE_KEY = "test-write-key"


@dataclass(frozen=True)
class Fault:
    """What the sink does instead of (or before) answering normally."""

    status: int = 0
    """Answer this status without taking the events (0: take them)."""
    retry_after: str | None = None
    delay: float = 0.0
    """Seconds to wait before answering (cut short by :meth:`Sink.release`)."""
    drop: bool = False
    """Close the connection without answering."""


@dataclass(frozen=True)
class Request:
    """One request as the sink saw it."""

    received_at: float
    answered_at: float
    status: int
    events: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class _State:
    events: list[Event] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    arrivals: int = 0


class Sink:
    """A loopback HTTP server that records accepted events by ``messageId``."""

    def __init__(self, *, taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy
        self.fault: Fault | None = None
        """Applied to every request once the injected ones are used up."""
        self.max_events: int | None = None
        """Answer 413 to batches with more events than this."""
        self._faults: collections.deque[Fault] = collections.deque()
        self._state = _State()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> Sink:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.sink = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        self._release.clear()
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening and cut every open connection: clients get refused or reset."""
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """End every pending delay now."""
        self._release.set()

    # -- scripting -----------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Apply `faults` to the next requests, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else self.fault

    # -- what was received ---------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._state.events)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._state.requests)

    @property
    def envelopes(self) -> list[Any]:
        with self._lock:
            return list(self._state.envelopes)

    def ids(self) -> collections.Counter[str]:
        """How many times each ``messageId`` was accepted."""
        return collections.Counter(event.message_id or "" for event in self.events)

    def wait_for(self, predicate: Callable[[Sink], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def wait_for_ids(self, count: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: len(s._distinct()) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Until `count` requests have been answered."""
        return self.wait_for(lambda s: len(s._state.requests) >= count, timeout)

    def wait_for_arrivals(self, count: int, timeout: float = 10.0) -> bool:
        """Until `count` requests have come in (answered or still being held)."""
        return self.wait_for(lambda s: s._state.arrivals >= count, timeout)

    def _distinct(self) -> set[str]:
        return {event.message_id or "" for event in self._state.events}

    # -- handling (called by the handler thread) -----------------------------------------

    def _handle(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        if headers.get("authorization") != expected:
            return 401, b'{"error":"bad write key"}', {}
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            envelope = decode_batch(body)
        except ContractError as exc:
            return 400, msgspec.json.encode(exc.as_dict()), {}
        if self.max_events is not None and len(envelope.batch) > self.max_events:
            return 413, b'{"error":"too many events"}', {}
        accepted: list[Event] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(envelope.batch):
            try:
                event = decode_event(bytes(raw))
                self._check_taxonomy(event)
            except ContractError as exc:
                probe = msgspec.json.decode(bytes(raw))
                message_id = probe.get("messageId", "") if isinstance(probe, dict) else ""
                rejected.append({"index": index, "messageId": message_id, **exc.as_dict()})
                continue
            accepted.append(event)
        with self._changed:
            self._state.events.extend(accepted)
            self._state.envelopes.append(envelope)
            self._changed.notify_all()
        answer = {"accepted": len(accepted), "rejected": rejected}
        return 200, msgspec.json.encode(answer), {}

    def _check_taxonomy(self, event: Event) -> None:
        if self.taxonomy is not None:
            check_taxonomy(self.taxonomy, event)

    def _arrived(self) -> None:
        with self._changed:
            self._state.arrivals += 1
            self._changed.notify_all()

    def _record(self, request: Request) -> None:
        with self._changed:
            self._state.requests.append(request)
            self._changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    @property
    def sink(self) -> Sink:
        return self.server.sink  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.sink._lock:
            self.sink._connections.add(self.connection)

    def finish(self) -> None:
        with self.sink._lock:
            self.sink._connections.discard(self.connection)
        with suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        received_at = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        sink = self.sink
        sink._arrived()
        fault = sink._next_fault()
        if fault is not None and fault.delay:
            sink._release.wait(fault.delay)
        extra: dict[str, str] = {}
        if fault is not None and fault.drop:
            sink._record(Request(received_at, time.monotonic(), 0, 0, headers, body))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.status:
            status, answer = fault.status, b'{"error":"injected"}'
            if fault.retry_after is not None:
                extra["Retry-After"] = fault.retry_after
        else:
            status, answer, extra = sink._handle(headers, body)
        events = _count_events(headers, body)
        # Recorded before answering: a client never sees an answer the sink has not noted.
        sink._record(Request(received_at, time.monotonic(), status, events, headers, body))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        with suppress(OSError):
            self.wfile.write(answer)


def _count_events(headers: dict[str, str], body: bytes) -> int:
    try:
        raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
        return len(decode_batch(raw).batch)
    except (ContractError, OSError, EOFError):
        return 0


@contextmanager
def running_sink(**kwargs: Any) -> Iterator[Sink]:
    sink = Sink(**kwargs).up()
    try:
        yield sink
    finally:
        sink.down()


def free_port() -> int:
    """A port nothing listens on (connection refused), for a collector that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
