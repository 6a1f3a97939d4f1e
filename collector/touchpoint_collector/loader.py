"""Draining the write-ahead log into ClickHouse in large inserts.

Each sealed segment becomes one insert per table (events, identities, rejected_events),
tagged with ``insert_deduplication_token = <collector id>:<segment>:<table>``. The segment
is deleted only after every table's insert was confirmed. A crash between the insert and
the delete replays the segment on the next start; ClickHouse recognises the tokens and
inserts nothing twice. Several collectors may share a database: their ids keep the tokens
apart.

Segments are sealed about once a second under load (see :mod:`touchpoint_collector.wal`),
which keeps ClickHouse at roughly one insert per table per second: far from the
many-tiny-inserts regime that ends in TOO_MANY_PARTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import structlog

from touchpoint_collector.metrics import Metrics
from touchpoint_collector.store import Store
from touchpoint_collector.wal import Segment, WriteAheadLog, read_records
from touchpoint_collector.writer import insert_encoded, write_rows

log = structlog.get_logger("touchpoint.loader")


class WalRecord(msgspec.Struct, array_like=True, omit_defaults=True):
    """One request's rows, as logged.

    ``e`` and ``i`` are events and identity links already encoded as JSONCompactEachRow
    (the form ClickHouse ingests); ``r`` holds rejected-event row tuples, whose payloads
    may be arbitrary bytes.
    """

    e: bytes = b""
    i: bytes = b""
    r: list[tuple[Any, ...]] = msgspec.field(default_factory=list)


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(WalRecord)


def encode_record(record: WalRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(payload: bytes) -> WalRecord:
    return _decoder.decode(payload)


@dataclass
class LoadResult:
    segment: int
    rows: dict[str, int]
    seconds: float


class StoreFault(RuntimeError):
    """Raised by the failpoint at the store boundary (tests of ClickHouse outages)."""


class Loader:
    """The single consumer of the log's sealed segments."""

    def __init__(
        self,
        wal: WriteAheadLog,
        store: Store,
        collector_id: str,
        metrics: Metrics,
        *,
        failpoint: Callable[[], bool] = lambda: False,
        max_backoff: float = 5.0,
    ) -> None:
        self.wal = wal
        self.store = store
        self.collector_id = collector_id
        self.metrics = metrics
        self.failpoint = failpoint
        self.max_backoff = max_backoff
        self.healthy = True
        self._client = store.new_client()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            segments = self.wal.sealed_segments()
            if not segments:
                self.wal.sealed_event.clear()
                await self._wait_for_segment()
                continue
            try:
                await asyncio.to_thread(self.load, segments[0])
            except Exception as exc:
                self.healthy = False
                self.metrics.inc("touchpoint_clickhouse_errors_total")
                log.error(
                    "insert failed, will retry",
                    segment=segments[0].number,
                    error=str(exc),
                    retry_in=round(backoff, 2),
                )
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(self.max_backoff, backoff * 2)
                continue
            backoff = 0.1
            self.healthy = True

    async def _wait_for_segment(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wal.sealed_event.wait(), timeout=1.0)

    def load(self, segment: Segment) -> LoadResult:
        """Insert one segment's rows (runs in a worker thread), then release the segment."""
        started = time.perf_counter()
        events: list[bytes] = []
        identities: list[bytes] = []
        rejected: list[tuple[Any, ...]] = []
        for payload in read_records(segment.path):
            record = decode_record(payload)
            if record.e:
                events.append(record.e)
            if record.i:
                identities.append(record.i)
            rejected.extend(record.r)
        counts: dict[str, int] = {}
        for key, table, data in (
            ("e", "events", events),
            ("i", "identities", identities),
            ("r", "rejected_events", rejected),
        ):
            if not data:
                continue
            if self.failpoint():
                raise StoreFault("failpoint store.insert is on")
            token = f"{self.collector_id}:{segment.number}:{key}"
            insert_started = time.perf_counter()
            if table == "rejected_events":
                rows = write_rows(
                    self.store, table, rejected, dedup_token=token, client=self._client
                )
            else:
                blob = b"".join(data)  # type: ignore[arg-type]
                insert_encoded(self.store, table, blob, dedup_token=token, client=self._client)
                rows = blob.count(b"\n")
            self.metrics.observe(
                "touchpoint_insert_seconds", time.perf_counter() - insert_started, table=table
            )
            self.metrics.observe("touchpoint_insert_rows", rows, table=table)
            counts[table] = rows
        self.wal.release(segment)
        elapsed = time.perf_counter() - started
        log.info("segment loaded", segment=segment.number, seconds=round(elapsed, 3), **counts)
        return LoadResult(segment.number, counts, elapsed)

    async def drain(self, deadline: float) -> bool:
        """Wait until every sealed segment is loaded or the deadline (monotonic) passes."""
        while self.wal.sealed_segments():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self, grace: float = 10.0) -> None:
        """Stop after the insert in flight, if any (cancelling a thread mid-insert would
        only leave its outcome unknown)."""
        self._stopping = True
        self.wal.sealed_event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
        self._client.close()
