"""The optional disk spool: undelivered batches survive a restart or a long collector outage.

Off by default (``spool_dir=None``): most apps prefer bounded memory and dropping over
touching disk. When on, the worker writes every encoded batch here *before* its first send
attempt and deletes it once the collector has answered, so a batch is on disk for as long as
its fate is open, including while the process is killed with SIGKILL. (Events still in the
in-memory queue, at most ``flush_interval`` old, are not on disk yet.)

Layout, one directory shared by any number of processes::

    <token>.lock                   held with flock(LOCK_EX) by the live owner
    <token>.<seq:016d>.batch       a batch: one event's wire JSON per line (NDJSON)
    <token>.<seq:016d>.tmp         being written; renamed to .batch when complete

`token` is ``<pid>-<random>``. The kernel drops an flock when its process dies, however it
dies, so a lock file nobody holds marks an owner that is gone: a new client adopts that
owner's batches by renaming them into its own token (``rename`` is atomic, so two starting
processes never adopt the same file) and sends them. Batches of a live owner, a sibling
worker or a fork parent, are never touched. Writes are not fsync'ed: the spool protects
against process death and collector outages, not against the machine losing power.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import msgspec

from touchpoint.options import ConfigError
from touchpoint.record import Encoded

logger: Final = logging.getLogger("touchpoint")

BATCH_SUFFIX: Final = ".batch"
LOCK_SUFFIX: Final = ".lock"
TMP_SUFFIX: Final = ".tmp"


class _Probe(msgspec.Struct, rename="camel"):
    message_id: str = ""


_probe: Final = msgspec.json.Decoder(_Probe)


@dataclass(slots=True)
class Entry:
    path: Path
    events: int
    nbytes: int


class Spool:
    """One process's view of a spool directory. Used by the worker thread only."""

    def __init__(self, directory: Path, max_bytes: int, *, adopt: bool = True) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            raise ConfigError("spool_dir needs POSIX file locks (fcntl)") from None
        self._flock = fcntl.flock
        self._lock_flags = fcntl.LOCK_EX | fcntl.LOCK_NB
        self.directory = directory
        self._max_bytes = max_bytes
        self._token = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = itertools.count()
        self._entries: deque[Entry] = deque()
        self.nbytes = 0
        self.events = 0
        self.unreadable = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock: IO[bytes] | None = open(directory / f"{self._token}{LOCK_SUFFIX}", "wb")  # noqa: SIM115
            self._flock(self._lock.fileno(), self._lock_flags)
        except OSError as exc:
            raise ConfigError(f"spool_dir {str(directory)!r} is not usable: {exc}") from None
        self.recovered = self._adopt_orphans() if adopt else 0
        """Events adopted from owners that died (sent by this process)."""

    # -- writing and reading batches -----------------------------------------------------

    def has_room(self) -> bool:
        return self.nbytes < self._max_bytes

    def put(self, batch: Encoded) -> bool:
        """Write `batch` as the newest entry; False when full or the disk refuses."""
        if not batch.events or self.nbytes + batch.nbytes > self._max_bytes:
            return False
        path = self.directory / f"{self._token}.{next(self._seq):016d}{BATCH_SUFFIX}"
        try:
            size = _write(path, batch.events)
        except OSError as exc:
            logger.warning("touchpoint spool write failed, sending from memory: %s", exc)
            return False
        self._add(Entry(path, len(batch.events), size))
        return True

    def oldest(self) -> tuple[Entry, Encoded] | None:
        """The oldest batch, read back. Events that cannot be read back (a damaged or
        vanished file; writes are atomic, so only outside hands do that) are discarded with a
        warning and counted in :attr:`unreadable` for the worker to settle."""
        while self._entries:
            entry = self._entries[0]
            try:
                batch = _read(entry.path)
            except OSError as exc:
                logger.warning("touchpoint spool file %s unreadable, skipped: %s", entry.path, exc)
                self.unreadable += entry.events
                self.remove(entry)
                continue
            self.unreadable += entry.events - len(batch.events)
            return entry, batch
        return None

    def remove(self, entry: Entry) -> None:
        try:
            self._entries.remove(entry)
        except ValueError:
            return
        self.nbytes -= entry.nbytes
        self.events -= entry.events
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()

    def replace(self, entry: Entry, batch: Encoded) -> None:
        """Keep only `batch` (what is still undelivered) of `entry`, in place."""
        if not batch.events:
            self.remove(entry)
            return
        try:
            size = _write(entry.path, batch.events)
        except OSError as exc:
            logger.warning("touchpoint spool rewrite failed, batch resent whole: %s", exc)
            return
        self.nbytes += size - entry.nbytes
        self.events += len(batch.events) - entry.events
        entry.nbytes, entry.events = size, len(batch.events)

    # -- ownership ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock; batches stay for the next process."""
        lock, self._lock = self._lock, None
        if lock is not None:
            (self.directory / f"{self._token}{LOCK_SUFFIX}").unlink(missing_ok=True)
            lock.close()

    def release_inherited(self) -> None:
        """In a forked child, before it opens a spool of its own (with its own token and
        none of the parent's batches): close the inherited lock descriptor. Closed, never
        unlocked: an flock belongs to the open file, which the parent still holds."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def _add(self, entry: Entry) -> None:
        self._entries.append(entry)
        self.nbytes += entry.nbytes
        self.events += entry.events

    def _adopt_orphans(self) -> int:
        adopted = 0
        locked = {p.name[: -len(LOCK_SUFFIX)] for p in self.directory.glob(f"*{LOCK_SUFFIX}")}
        for token in sorted(locked - {self._token}):
            adopted += self._adopt_if_dead(token)
        # Batches whose owner left no lock file at all (an adopter died halfway).
        strays = {p.name.split(".", 1)[0] for p in self.directory.glob(f"*{BATCH_SUFFIX}")}
        for token in sorted(strays - locked - {self._token}):
            adopted += self._adopt_batches(token)
        if adopted:
            logger.info("touchpoint spool adopted %d undelivered event(s)", adopted)
        return adopted

    def _adopt_if_dead(self, token: str) -> int:
        path = self.directory / f"{token}{LOCK_SUFFIX}"
        try:
            lock = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return 0
        with lock:
            try:
                self._flock(lock.fileno(), self._lock_flags)
            except OSError:
                return 0  # held: the owner is alive
            adopted = self._adopt_batches(token)
            path.unlink(missing_ok=True)
        return adopted

    def _adopt_batches(self, token: str) -> int:
        adopted = 0
        for tmp in self.directory.glob(f"{token}.*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)  # never completed: not a batch
        for old in sorted(self.directory.glob(f"{token}.*{BATCH_SUFFIX}")):
            new = self.directory / f"{self._token}.{next(self._seq):016d}{BATCH_SUFFIX}"
            try:
                os.rename(old, new)
                data = new.read_bytes()
            except FileNotFoundError:
                continue  # another process adopted it first
            events = data.count(b"\n")
            self._add(Entry(new, events, len(data)))
            adopted += events
        return adopted


def _write(path: Path, events: list[bytes]) -> int:
    data = b"\n".join(events) + b"\n"
    tmp = path.with_suffix(TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


def _read(path: Path) -> Encoded:
    batch = Encoded()
    for line in path.read_bytes().splitlines():
        try:
            message_id = _probe.decode(line).message_id
        except (msgspec.DecodeError, UnicodeDecodeError):
            logger.warning("touchpoint spool line in %s is not an event, skipped", path)
            continue
        batch.ids.append(message_id)
        batch.events.append(line)
        batch.nbytes += len(line)
    return batch
