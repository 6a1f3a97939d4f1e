"""The one place that talks to ClickHouse.

Everything goes through clickhouse-connect; only the DSN differs between the embedded engine
(``chdb:///path``, the real ClickHouse engine in-process, the default) and a ClickHouse
server or cluster (``http(s)://user:pass@host:port/db``). Keeping both behind one class means
the code the tests exercise on the embedded engine is the code production runs.

The embedded engine has two constraints that shape this module:

* Only one *process* may open a store directory. chdb reports a second opener with an
  opaque ``BAD_ARGUMENTS``; we take an advisory lock file first and say who holds it (and,
  when the holder is a running collector, where its read-only query endpoint is).
* Only one store *path* may be open per process at a time. Tests therefore share one
  directory per test session and isolate themselves by database name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

LOCK_FILE_NAME = "touchpoint.lock"
EMBEDDED_MALLOC_CONF = "dirty_decay_ms:1000,muzzy_decay_ms:0"
"""The embedded engine's allocator (the jemalloc inside chdb) otherwise keeps freed pages
for several seconds, so the memory of one loaded segment's insert is still resident when
the next ones come. One second, without the extra "muzzy" stage, hands it back before the
next segment is sealed. (Zero decay also works but costs ~15% of the ingest rate in
madvise calls.) It must be set before chdb is first loaded; a ``JE_MALLOC_CONF`` already
in the environment wins, e.g. ``percpu_arena:disabled,narenas:1`` on a small machine."""


class StoreError(RuntimeError):
    """The store cannot be opened or used as configured."""


class StoreLockedError(StoreError):
    """Another process owns the embedded store directory."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        who = f"process {holder.get('pid', '?')}"
        if holder.get("command"):
            who += f" ({holder['command']})"
        hint = (
            f"; its read-only SQL endpoint is {holder['query_url']}"
            if holder.get("query_url")
            else "; stop it, or point this command at another data directory"
        )
        super().__init__(f"embedded store {path} is in use by {who}{hint}")


@dataclass(frozen=True)
class StoreTarget:
    """A parsed DSN: which engine, where, and which database holds Touchpoint's tables."""

    dsn: str
    database: str

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    @property
    def path(self) -> Path | None:
        """The embedded store directory, or None for a server or an in-memory engine."""
        if not self.embedded:
            return None
        parsed = urlparse(self.dsn)
        location = parsed.path if not parsed.netloc else ""
        if location in ("", "memory", ":memory:"):
            return None
        return Path(location).resolve()

    def describe(self) -> str:
        """The DSN without credentials, safe for logs and banners."""
        if self.embedded:
            return f"embedded ClickHouse at {self.path or ':memory:'} (database {self.database})"
        parsed = urlparse(self.dsn)
        host = parsed.hostname or "?"
        port = f":{parsed.port}" if parsed.port else ""
        return f"ClickHouse server {parsed.scheme}://{host}{port} (database {self.database})"


class _ProcessLocks:
    """Reference-counted advisory locks, one per store directory per process.

    flock() locks belong to an open file description, so two Store objects in one process
    must share one descriptor rather than lock each other out.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[Path, tuple[int, int]] = {}

    def acquire(self, directory: Path, info: dict[str, Any]) -> None:
        with self._mutex:
            if directory in self._held:
                fd, count = self._held[directory]
                self._held[directory] = (fd, count + 1)
                return
            directory.mkdir(parents=True, exist_ok=True)
            lock_path = directory / LOCK_FILE_NAME
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreLockedError(directory, read_lock_info(directory)) from None
            _write_lock_info(fd, info)
            self._held[directory] = (fd, 1)

    def update(self, directory: Path, info: dict[str, Any]) -> None:
        with self._mutex:
            if directory in self._held:
                _write_lock_info(self._held[directory][0], info)

    def release(self, directory: Path) -> None:
        with self._mutex:
            fd, count = self._held.get(directory, (-1, 0))
            if count > 1:
                self._held[directory] = (fd, count - 1)
            elif count == 1:
                del self._held[directory]
                os.ftruncate(fd, 0)
                os.close(fd)


_locks = _ProcessLocks()


def _write_lock_info(fd: int, info: dict[str, Any]) -> None:
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def read_lock_info(directory: Path) -> dict[str, Any]:
    """What the holder of a store directory wrote about itself ({} when unknown)."""
    try:
        info = json.loads((directory / LOCK_FILE_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class Store:
    """A connection to Touchpoint's ClickHouse database.

    Thread use: a clickhouse-connect client serialises its own requests, so work that must
    not queue behind others (the loader's inserts vs. an analyst's query) takes its own
    client from :meth:`new_client`, which shares the same engine and lock.
    """

    def __init__(self, target: StoreTarget, *, role: str = "touchpoint") -> None:
        self.target = target
        self._lock_dir = target.path
        self._lane: Store | None = None
        if self._lock_dir is not None:
            _locks.acquire(self._lock_dir, {"pid": os.getpid(), "command": role})
        try:
            self._client = self._connect(database=None)
            self.ensure_database()
            self._client.database = target.database
        except Exception as exc:
            self._release()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open {target.describe()}: {exc}") from exc
        self._closed = False

    @classmethod
    def open(cls, dsn: str, database: str = "touchpoint", *, role: str = "touchpoint") -> Store:
        return cls(StoreTarget(dsn=dsn, database=database), role=role)

    @property
    def database(self) -> str:
        return self.target.database

    @property
    def client(self) -> Client:
        return self._client

    def new_client(self, settings: dict[str, Any] | None = None) -> Client:
        """A further client on the same engine (its own session and settings)."""
        client = self._connect(database=self.target.database)
        for key, value in (settings or {}).items():
            client.set_client_setting(key, value)
        return client

    def lane(self) -> Store:
        """This store on another client (its own session), made once and kept: for work
        that runs beside this client's, on another thread. Statements on one client wait
        for each other; on two, the engine plans and runs them side by side. Closing the
        lane closes its client only."""
        lane = self._lane
        if lane is None or lane._closed:
            lane = object.__new__(Store)
            lane.target, lane._lock_dir, lane._lane = self.target, None, None
            lane._client, lane._closed = self.new_client(), False
            self._lane = lane
        return lane

    def advertise(self, **info: Any) -> None:
        """Tell other processes (via the lock file) how to reach the owner, e.g. its query URL."""
        if self._lock_dir is not None:
            _locks.update(self._lock_dir, {"pid": os.getpid(), **info})

    def ensure_database(self) -> None:
        # Atomic, not the embedded default's Overlay engine: refreshable materialized
        # views (the journey map's self-refresh) need it.
        self._client.command(
            f"CREATE DATABASE IF NOT EXISTS {quote_ident(self.target.database)} ENGINE = Atomic"
        )

    def command(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        return self._client.command(sql, parameters=parameters, settings=settings)

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> QueryResult:
        return self._client.query(sql, parameters=parameters, settings=settings)

    def rows(
        self, sql: str, parameters: dict[str, Any] | None = None, **settings: Any
    ) -> list[tuple[Any, ...]]:
        """Result rows of a query, deduplicated (``final = 1``) unless told otherwise."""
        settings.setdefault("final", 1)
        return [tuple(row) for row in self.query(sql, parameters, settings).result_rows]

    def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        *,
        dedup_token: str | None = None,
        client: Client | None = None,
    ) -> None:
        """Insert column-oriented data (the fast path: no per-row Python objects)."""
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        (client or self._client).insert(
            table,
            list(columns),
            column_names=list(column_names),
            column_oriented=True,
            settings=settings,
        )

    def tables(self) -> list[str]:
        return [
            row[0]
            for row in self.query(f"SHOW TABLES FROM {quote_ident(self.database)}").result_rows
        ]

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if self._lane is not None:
            self._lane.close()
        with contextlib.suppress(Exception):
            self._client.close()
        self._release()

    def _release(self) -> None:
        if self._lock_dir is not None:
            _locks.release(self._lock_dir)
            self._lock_dir = None

    def _connect(self, database: str | None) -> Client:
        if self.target.embedded:
            os.environ.setdefault("JE_MALLOC_CONF", EMBEDDED_MALLOC_CONF)
        try:
            # Timestamps come back timezone-aware in UTC, on both engines.
            return clickhouse_connect.get_client(
                dsn=self.target.dsn, database=database, tz_mode="aware", tz_source="server"
            )
        except Exception as exc:
            raise StoreError(f"cannot connect to {self.target.describe()}: {exc}") from exc

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quote_ident(name: str) -> str:
    """Backquote a ClickHouse identifier (database and table names come from config)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
