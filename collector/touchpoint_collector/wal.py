"""The write-ahead log: accepted events are on disk before the sender hears "200".

Layout: numbered segment files ``<n>.wal`` in one directory. A record is
``[u32 length][u32 crc32][payload]``; a torn or corrupt tail (a crash mid-write) is detected
by length and checksum on reading and ignored, and the bytes before it stay valid.

Group commit: requests hand their record to :meth:`WriteAheadLog.append` and wait; one
committer task writes everything that queued up meanwhile and calls ``fsync`` once for all
of them. Under load one fsync covers many requests, and an idle log costs nothing.

Segments are sealed when they reach a size or an age. Only sealed segments are loaded into
ClickHouse, each as a fixed unit, so the loader's dedup token (collector id + segment
number) names the same rows every time it is retried, including after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HEADER: Final = struct.Struct("<II")
SUFFIX: Final = ".wal"
HIGH_WATER_FILE: Final = "last-segment"


class FsyncPolicy(enum.StrEnum):
    ALWAYS = "always"
    """fsync before acknowledging (default): an acknowledged event survives power loss."""
    INTERVAL = "interval"
    """write before acknowledging, fsync in the background: survives a process crash."""
    NEVER = "never"
    """leave it to the OS: survives a process crash once written; for benchmarks and tests."""


class WalFullError(RuntimeError):
    """The log holds more unloaded data than its cap: ClickHouse is behind or down."""


class WalClosedError(RuntimeError):
    """The log is shutting down and takes no more records."""


@dataclass(frozen=True)
class Segment:
    number: int
    path: Path

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


def read_records(path: Path) -> Iterator[bytes]:
    """Every intact record of a segment, stopping at the first torn or corrupt one."""
    data = path.read_bytes()
    offset = 0
    while offset + HEADER.size <= len(data):
        length, checksum = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        end = start + length
        if end > len(data) or zlib.crc32(data[start:end]) != checksum:
            return
        yield data[start:end]
        offset = end


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class WriteAheadLog:
    """Append-only, segmented, checksummed, group-committed. One per collector process."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        segment_max_bytes: int = 32 * 1024 * 1024,
        segment_max_age: float = 1.0,
        cap_bytes: int = 1024 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age = segment_max_age
        self.cap_bytes = cap_bytes
        directory.mkdir(parents=True, exist_ok=True)
        existing = self._numbers()
        # Everything left on disk (by a crash or a shutdown) is sealed: replayed before new data.
        self._sealed: list[int] = existing
        self._sealed_bytes = sum((directory / f"{n:016d}{SUFFIX}").stat().st_size for n in existing)
        self._oldest_sealed_at: dict[int, float] = {
            n: (directory / f"{n:016d}{SUFFIX}").stat().st_mtime for n in existing
        }
        # Segment numbers name the loader's dedup tokens, so one must never come back: a
        # reused number would make ClickHouse drop the new segment as a duplicate of an old
        # one it still remembers. Numbers start above the last one ever used (kept in a
        # high-water-mark file, because a clean drain leaves no segment behind) and above
        # the wall clock in milliseconds (in case that file was lost with the directory).
        self._active_number = max(
            (existing[-1] + 1) if existing else 1,
            self._read_high_water() + 1,
            int(time.time() * 1000),
        )
        self._active_fd: int | None = None
        self._active_bytes = 0
        self._active_opened_at = 0.0
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self.sealed_event = asyncio.Event()
        self._closed = False
        self._committer: asyncio.Task[None] | None = None
        self.fsyncs = 0
        self.records = 0
        if existing:
            self.sealed_event.set()

    # -- writing ---------------------------------------------------------------------

    def start(self) -> None:
        self._committer = asyncio.get_running_loop().create_task(self._commit_loop())

    @property
    def backlog_bytes(self) -> int:
        """Bytes accepted but not yet confirmed by ClickHouse."""
        return self._sealed_bytes + self._active_bytes

    @property
    def full(self) -> bool:
        return self.backlog_bytes >= self.cap_bytes

    def oldest_unloaded_age(self) -> float:
        """Seconds since the oldest record not yet in ClickHouse was written (0 when none)."""
        stamps = list(self._oldest_sealed_at.values())
        if self._active_bytes:
            stamps.append(self._active_opened_at)
        return max(0.0, time.time() - min(stamps)) if stamps else 0.0

    async def append(self, payload: bytes) -> None:
        """Returns once the record is durable under the configured policy."""
        if self._closed:
            raise WalClosedError("the collector is shutting down")
        if self.full:
            raise WalFullError(
                f"write-ahead log holds {self.backlog_bytes} bytes, cap {self.cap_bytes}"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((payload, future))
        self._wakeup.set()
        await future

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                timeout = self._seal_timeout()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                self._seal_if_due()
                continue
            batch, self._pending = self._pending, []
            try:
                # Framing (the CRC of every record) happens in the writer thread too:
                # zlib releases the GIL there, so the event loop keeps serving requests.
                await loop.run_in_executor(None, self._write_records, [p for p, _ in batch])
            except OSError as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            self._seal_if_due()

    def _seal_timeout(self) -> float | None:
        if not self._active_bytes:
            return None if not self._closed else 0
        return max(0.0, self._active_opened_at + self.segment_max_age - time.time())

    def _read_high_water(self) -> int:
        try:
            return int((self.directory / HIGH_WATER_FILE).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _write_high_water(self, number: int) -> None:
        path = self.directory / HIGH_WATER_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(number))
        os.replace(tmp, path)

    def _write_records(self, payloads: list[bytes]) -> None:
        self._write(b"".join([frame(payload) for payload in payloads]))

    def _write(self, data: bytes) -> None:
        """Runs in a worker thread: the only place that touches the active segment's fd."""
        if self._active_fd is None:
            self._write_high_water(self._active_number)
            path = self.directory / f"{self._active_number:016d}{SUFFIX}"
            self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._active_opened_at = time.time()
        view = memoryview(data)
        while view:
            written = os.write(self._active_fd, view)
            view = view[written:]
        if self.fsync is FsyncPolicy.ALWAYS:
            os.fsync(self._active_fd)
            self.fsyncs += 1
        self._active_bytes += len(data)
        self.records += 1

    def _seal_if_due(self) -> None:
        if not self._active_bytes or self._active_fd is None:
            return
        age = time.time() - self._active_opened_at
        if (
            self._active_bytes >= self.segment_max_bytes
            or age >= self.segment_max_age
            or self._closed
        ):
            self._seal()

    def _seal(self) -> None:
        assert self._active_fd is not None
        if self.fsync is not FsyncPolicy.NEVER:
            os.fsync(self._active_fd)  # INTERVAL's background fsync happens here, at the latest
        os.close(self._active_fd)
        self._active_fd = None
        self._sealed.append(self._active_number)
        self._oldest_sealed_at[self._active_number] = self._active_opened_at
        self._sealed_bytes += self._active_bytes
        self._active_bytes = 0
        self._active_number += 1
        self.sealed_event.set()

    def seal_now(self) -> None:
        """Seal the active segment at once (shutdown, tests)."""
        if self._active_bytes and self._active_fd is not None:
            self._seal()

    async def close(self) -> None:
        """Refuse new records, commit what is queued, seal the active segment."""
        self._closed = True
        self._wakeup.set()
        if self._committer is not None:
            await self._committer
        self.seal_now()

    # -- reading (the loader) --------------------------------------------------------

    def sealed_segments(self) -> list[Segment]:
        return [Segment(n, self.directory / f"{n:016d}{SUFFIX}") for n in self._sealed]

    def release(self, segment: Segment) -> None:
        """ClickHouse has the segment's rows: delete it."""
        size = segment.size
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        if segment.number in self._sealed:
            self._sealed.remove(segment.number)
            self._sealed_bytes = max(0, self._sealed_bytes - size)
        self._oldest_sealed_at.pop(segment.number, None)
        if not self._sealed:
            self.sealed_event.clear()

    def _numbers(self) -> list[int]:
        numbers = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            with contextlib.suppress(ValueError):
                numbers.append(int(path.stem))
        return sorted(numbers)
