"""Client configuration, checked once at construction.

Configuration mistakes (a typo in an option, a negative timeout, a host without a scheme)
raise :class:`ConfigError` from ``Client(...)``: that runs at deploy time, where failing loudly
is right. After construction nothing the client does raises into the application.

The defaults are sized for the SDK's budget: the queue holds up to 20k events (~15 MiB of
RSS for typical 5-property events, measured; the ``max_queue_bytes`` bound holds large events
to the same order), a batch goes out when 500 are queued or after half a second, and a batch
is given up after a minute of failures, so a dead collector costs bounded memory, never an
unbounded backlog.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypedDict
from urllib.parse import urlsplit

from touchpoint.stats import ErrorCallback
from touchpoint_schemas.events import Event
from touchpoint_schemas.limits import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

if TYPE_CHECKING:
    from touchpoint.transport import Sender

DEFAULT_HOST: Final = "http://localhost:8088"
"""Where ``touchpoint serve`` listens by default."""

BeforeSend = Callable[[Event], Event | None]
"""Called on the worker thread with each event; return it (changed or not) or None to drop."""


class ConfigError(ValueError):
    """A client option is missing or out of range. Raised at construction only."""


class ClientOptions(TypedDict, total=False):
    """Keyword options of :class:`touchpoint.Client` and :func:`touchpoint.init`.

    Documented on :class:`Options`, which also holds the defaults.
    """

    max_queue_size: int
    max_queue_bytes: int
    flush_at: int
    flush_interval: float
    max_batch_bytes: int
    gzip: bool
    max_retries: int
    backoff_base: float
    backoff_max: float
    batch_deadline: float
    request_timeout: float
    flush_timeout: float
    shutdown_timeout: float
    on_error: ErrorCallback | None
    before_send: BeforeSend | None
    sync_mode: bool
    disabled: bool
    debug: bool
    spool_dir: str | os.PathLike[str] | None
    spool_max_bytes: int
    sender: Sender | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Validated client settings."""

    write_key: str
    host: str = DEFAULT_HOST
    max_queue_size: int = 20_000
    """Most events held in memory; beyond it new events are dropped (``queue_full``)."""
    max_queue_bytes: int = 8 * 1024 * 1024
    """Most encoded bytes held in memory, estimated from the running mean event size."""
    flush_at: int = 500
    """Queued events that make a batch: reaching it wakes the worker at once (no waiting for
    the interval). A backlog goes out in requests as large as `max_batch_bytes` allows."""
    flush_interval: float = 0.5
    """Longest wait before a partial batch is sent."""
    max_batch_bytes: int = MAX_BATCH_BYTES
    """Largest request body before compression (the collector's limit by default)."""
    gzip: bool = True
    max_retries: int = 10
    """Attempts after the first before a batch is given up."""
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    """Full-jitter exponential backoff: a retry waits uniform(0, min(max, base * 2**n))."""
    batch_deadline: float = 60.0
    """Seconds a batch may spend being retried (``Retry-After`` waits included)."""
    request_timeout: float = 15.0
    """Socket timeout of one HTTP attempt (connect, and each read)."""
    flush_timeout: float = 10.0
    """What :meth:`Client.flush` waits at most when given no timeout."""
    shutdown_timeout: float = 3.0
    """What the exit hook (and :meth:`Client.shutdown` without a timeout) waits at most."""
    on_error: ErrorCallback | None = None
    """Called with a :class:`touchpoint.Loss` for events that are lost (worker thread)."""
    before_send: BeforeSend | None = None
    sync_mode: bool = False
    """Send each call inline in the calling thread (serverless functions that freeze)."""
    disabled: bool = False
    """Validate and return ids, send nothing (tests, local development)."""
    debug: bool = False
    """Set the ``touchpoint`` logger to DEBUG (no handler is added: configure logging)."""
    spool_dir: Path | None = None
    """Keep undelivered batches on disk there, so a restart or outage does not lose them."""
    spool_max_bytes: int = 64 * 1024 * 1024
    sender: Sender | None = None
    """Replaces the HTTP sender (used by :mod:`touchpoint.testing`)."""

    def __post_init__(self) -> None:
        if not self.disabled and (not isinstance(self.write_key, str) or not self.write_key):
            raise ConfigError("write_key must be a non-empty string")
        endpoint(self.host)
        for name in ("max_queue_size", "max_queue_bytes", "flush_at", "spool_max_bytes"):
            _require(name, getattr(self, name), minimum=1)
        _require("max_retries", self.max_retries, minimum=0)
        _require("max_batch_bytes", self.max_batch_bytes, minimum=1024, maximum=MAX_BATCH_BYTES)
        _require("flush_at", self.flush_at, minimum=1, maximum=MAX_BATCH_EVENTS)
        for name in (
            "flush_interval",
            "backoff_base",
            "backoff_max",
            "batch_deadline",
            "request_timeout",
            "flush_timeout",
            "shutdown_timeout",
        ):
            _require(name, getattr(self, name), minimum=0.0, number=float, exclusive=True)
        for name in ("on_error", "before_send"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ConfigError(f"{name} must be callable")
        if self.spool_dir is not None:
            if self.sync_mode:
                raise ConfigError("spool_dir cannot be combined with sync_mode")
            object.__setattr__(self, "spool_dir", Path(self.spool_dir))

    @classmethod
    def build(cls, write_key: str, host: str, options: ClientOptions) -> Options:
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return cls(write_key=write_key, host=host, **options)  # type: ignore[arg-type]


OPTION_NAMES: Final = frozenset(f.name for f in fields(Options)) - {"write_key", "host"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str


def endpoint(host: str) -> Endpoint:
    """Where batches go: ``{host}/v1/batch``; `host` may carry a path prefix."""
    if not isinstance(host, str):
        raise ConfigError("host must be a string such as 'https://collector.example.com'")
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"host {host!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"host {host!r} must look like 'https://collector.example.com'")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"host {host!r} must not carry credentials, a query or a fragment")
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(
        parts.scheme, parts.hostname, port or default_port, parts.path.rstrip("/") + "/v1/batch"
    )


def _require(
    name: str,
    value: object,
    *,
    minimum: float,
    maximum: float | None = None,
    number: type = int,
    exclusive: bool = False,
) -> None:
    ok_type = (
        isinstance(value, int | float) if number is float else isinstance(value, int)
    ) and not isinstance(value, bool)
    if not ok_type:
        raise ConfigError(f"{name} must be a number, got {value!r}")
    assert isinstance(value, int | float)
    too_low = value <= minimum if exclusive else value < minimum
    if too_low or (maximum is not None and value > maximum):
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        limit = f" and <= {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be {bound}{limit}, got {value!r}")
