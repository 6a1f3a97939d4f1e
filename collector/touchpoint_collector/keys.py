"""API keys: write keys send events for a source, read keys query the store.

Keys live in ``<data_dir>/keys.json`` as SHA-256 hashes; the plain key is shown once, when
created. They are high-entropy random tokens, so a fast hash is the right tool (a password
hash would only slow every request). The comparison after lookup is constant-time.

A file, not a ClickHouse table: the embedded store is owned by the running collector, and
ops must be able to create and revoke keys while it runs. The collector re-reads the file
when it changes.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

KEYS_FILE = "keys.json"
LOCAL_READ_KEY_FILE = "local-read.key"


class KeyKind(enum.StrEnum):
    WRITE = "write"
    READ = "read"


_PREFIX = {KeyKind.WRITE: "tpw_", KeyKind.READ: "tpr_"}


class KeyRecord(msgspec.Struct, kw_only=True):
    id: str
    source: str
    kind: KeyKind
    hash: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None = None
    note: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyFile(msgspec.Struct):
    keys: list[KeyRecord] = msgspec.field(default_factory=list)


def hash_key(key: str) -> str:
    # A key from a header or cookie holding bytes that are not UTF-8 (aiohttp keeps them
    # as surrogate escapes) hashes as those bytes: it matches no key, and the caller gets
    # 401, where encoding it strictly raised (a 500).
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class KeyStore:
    """Create, list, revoke and check keys. Reloads the file when it changed on disk."""

    def __init__(self, data_dir: Path, *, reload_interval: float = 1.0) -> None:
        self.path = data_dir / KEYS_FILE
        self.data_dir = data_dir
        self.reload_interval = reload_interval
        self._by_hash: dict[str, KeyRecord] = {}
        self._records: list[KeyRecord] = []
        self._mtime = -1.0
        self._checked_at = 0.0
        self._load()

    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._by_hash, self._mtime = [], {}, 0.0
            return
        if stat.st_mtime == self._mtime:
            return
        data = msgspec.json.decode(self.path.read_bytes(), type=KeyFile)
        self._records = data.keys
        self._by_hash = {r.hash: r for r in data.keys if r.active}
        self._mtime = stat.st_mtime

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at >= self.reload_interval:
            self._checked_at = now
            with contextlib.suppress(OSError, msgspec.DecodeError):
                self._load()

    def authenticate(self, key: str, kind: KeyKind) -> KeyRecord | None:
        """The active key record for a presented key of the given kind, or None."""
        self._maybe_reload()
        digest = hash_key(key)
        record = self._by_hash.get(digest)
        if (
            record is None
            or not hmac.compare_digest(record.hash, digest)
            or record.kind is not kind
        ):
            return None
        return record

    def records(self) -> list[KeyRecord]:
        self._load()
        return list(self._records)

    def create(
        self, source: str, kind: KeyKind = KeyKind.WRITE, note: str = ""
    ) -> tuple[str, KeyRecord]:
        """A new key; returns the plain key (never stored) and its record."""
        self._load()
        key = _PREFIX[kind] + secrets.token_urlsafe(24)
        record = KeyRecord(
            id="key_" + secrets.token_hex(4),
            source=source,
            kind=kind,
            hash=hash_key(key),
            hint=key[:8] + "…",
            created_at=datetime.now(UTC),
            note=note,
        )
        self._save([*self._records, record])
        return key, record

    def revoke(self, key_id: str) -> KeyRecord | None:
        self._load()
        found = None
        updated = []
        for record in self._records:
            if record.id == key_id and record.active:
                record = msgspec.structs.replace(record, revoked_at=datetime.now(UTC))
                found = record
            updated.append(record)
        if found is not None:
            self._save(updated)
        return found

    def has_write_keys(self) -> bool:
        self._load()
        return any(r.active and r.kind is KeyKind.WRITE for r in self._records)

    def _save(self, records: list[KeyRecord]) -> None:
        """Atomic replace, so the running collector never reads a half-written file."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = msgspec.json.format(msgspec.json.encode(KeyFile(records)), indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".keys-")
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._mtime = -1.0
        self._load()


def write_local_read_key(data_dir: Path, key: str) -> Path:
    """The read key a running collector leaves for `touchpoint sql` on the same machine
    (owner-only permissions, like a Unix socket's)."""
    path = data_dir / LOCAL_READ_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return path


def read_local_read_key(data_dir: Path) -> str | None:
    try:
        return (data_dir / LOCAL_READ_KEY_FILE).read_text().strip() or None
    except OSError:
        return None
