"""Collector configuration: a TOML file, then environment variables, validated once at start.

Precedence: built-in defaults < the TOML file (``--config`` or ``TOUCHPOINT_CONFIG``) <
environment variables named ``TOUCHPOINT_<SECTION>__<KEY>`` (double underscore between
levels, e.g. ``TOUCHPOINT_STORE__DSN``; top-level keys are ``TOUCHPOINT_<KEY>``, e.g.
``TOUCHPOINT_DATA_DIR``). Environment values are parsed as TOML values when they parse
(numbers, booleans, arrays) and taken as strings otherwise.

Every error names the setting at fault, so a typo in a key fails at start rather than being
ignored: unknown keys are refused.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from touchpoint_schemas import limits
from touchpoint_schemas.taxonomy import Channel, Stage, Taxonomy, TouchpointDef

ENV_PREFIX = "TOUCHPOINT_"
RESERVED_ENV = frozenset({"TOUCHPOINT_CONFIG", "TOUCHPOINT_FAILPOINTS", "TOUCHPOINT_SCALE"})
"""Variables with the prefix that are not settings: the config file's path, the failpoint
directory (tests), and the test-size factor."""
DEFAULT_DATA_DIR = ".touchpoint"

Positive = Annotated[int, Meta(gt=0)]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the setting."""


class _Section(Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class StoreConfig(_Section):
    dsn: str = ""
    """``chdb:///path`` (embedded) or ``http(s)://user:pass@host:port``. Empty: the embedded
    store under ``data_dir``."""
    database: Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "touchpoint"
    """Database holding Touchpoint's tables; created with the Atomic engine."""


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8088
    """0 picks a free port (tests); the chosen address is printed and written to the lock."""
    shutdown_timeout_seconds: Annotated[float, Meta(gt=0)] = 30.0
    """On SIGTERM: time to finish requests and drain the log into ClickHouse."""
    anonymize_ip: bool = False
    """Zero the host part of client IPs before they are stored."""
    trust_forwarded_for: bool = False
    """Take the client IP from X-Forwarded-For (only behind a trusted load balancer)."""
    open_read_on_loopback: bool = False
    """Serve read endpoints (query, map) without a key to loopback clients."""


class WalConfig(_Section):
    fsync: Literal["always", "interval", "never"] = "always"
    """always: fsync before acknowledging; interval: at least once per segment (≤ 1 s);
    never: leave it to the OS."""
    segment_max_bytes: Positive = 32 * 1024 * 1024
    segment_max_age_seconds: Annotated[float, Meta(gt=0)] = 1.0
    """Also the insert cadence into ClickHouse under steady load."""
    cap_bytes: Positive = 1024 * 1024 * 1024
    """Past this backlog the collector answers 503 and /readyz fails."""


class QueryConfig(_Section):
    max_rows: Positive = 100_000
    max_seconds: Annotated[float, Meta(gt=0)] = 30.0


class SourceConfig(_Section):
    allowed_origins: list[str] = field(default_factory=list)
    """Browser origins allowed to send for this source (CORS); "*" allows any."""
    rate_limit: Annotated[float, Meta(ge=0)] = 0.0
    """Events per second (token bucket); 0 means unlimited."""
    burst: Annotated[float, Meta(ge=0)] = 0.0
    """Bucket size in events; 0 means one second's worth of rate_limit."""


class LimitsConfig(_Section):
    max_event_bytes: Positive = limits.MAX_EVENT_BYTES
    max_batch_bytes: Positive = limits.MAX_BATCH_BYTES
    max_batch_events: Positive = limits.MAX_BATCH_EVENTS


class MapConfig(_Section):
    """Defaults of the journey map (see docs/journey-map.md); requests may override most."""

    goal: str = "purchase"
    """A touchpoint, or stage:<stage>."""
    gap_days: Annotated[float, Meta(gt=0)] = 60.0
    end_after_days: Annotated[float, Meta(gt=0)] | None = None
    """None: derived from the observed gaps between steps."""
    top_n: Positive = 8
    min_support: Positive = 5
    refresh_seconds: Positive = 300
    """How often the collector rebuilds the default map and ClickHouse the journey_steps table."""
    default_window_days: Annotated[float, Meta(gt=0)] = 90.0
    """The window of the map the collector keeps current (and compares with the one before)."""
    inbox_lookback_seconds: Annotated[float, Meta(ge=0)] = 60.0
    """How far before its previous build a kept map re-reads journey_inbox: longer than an
    insert takes to become visible, and than the clock skew between cluster nodes."""
    keep_rows: bool = True
    """Keep the default map's person rows between rebuilds, so a rebuild recomputes only the
    persons touched since the last (memory: about 80 bytes per step of the window)."""


class CustomChannel(_Section):
    name: str
    online: bool
    label: str = ""


class CustomTouchpoint(_Section):
    name: str
    stage: Stage
    channel: str
    label: str = ""
    event_names: list[str] = field(default_factory=list)
    carries_score: bool = False
    cross_cutting: bool = False


class TaxonomyConfig(_Section):
    """Custom touchpoints and channels, and extra event-name mappings.

    ``events = { "Signup Finished" = "newsletter_signup" }`` maps a tracked event name to a
    touchpoint; a custom touchpoint with a standard name overrides the standard one.
    """

    touchpoints: list[CustomTouchpoint] = field(default_factory=list)
    channels: list[CustomChannel] = field(default_factory=list)
    events: dict[str, str] = field(default_factory=dict)


class Config(_Section):
    data_dir: str = DEFAULT_DATA_DIR
    """Where the embedded store, the write-ahead log and the keys file live."""
    collector_id: str = ""
    """Names this collector in dedup tokens and metrics; empty: derived from the host name."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto: readable on a terminal, JSON lines otherwise."""
    store: StoreConfig = field(default_factory=StoreConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    wal: WalConfig = field(default_factory=WalConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    map: MapConfig = field(default_factory=MapConfig)

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name) or _DEFAULT_SOURCE

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def dsn(self) -> str:
        return self.store.dsn or f"chdb://{self.data_path / 'store'}"

    def build_taxonomy(self) -> Taxonomy:
        try:
            return Taxonomy.standard().extended(
                touchpoints=[
                    TouchpointDef(
                        name=tp.name,
                        stage=tp.stage,
                        channel=tp.channel,
                        label=tp.label,
                        event_names=tuple(tp.event_names),
                        carries_score=tp.carries_score,
                        cross_cutting=tp.cross_cutting,
                    )
                    for tp in self.taxonomy.touchpoints
                ],
                channels=[
                    Channel(name=ch.name, online=ch.online, label=ch.label)
                    for ch in self.taxonomy.channels
                ],
                event_map=self.taxonomy.events,
            )
        except ValueError as exc:
            raise ConfigError(f"taxonomy: {exc}") from exc


_DEFAULT_SOURCE = SourceConfig()


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the file, then the environment, then explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = path or env.get(f"{ENV_PREFIX}CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key not in RESERVED_ENV:
            _set_path(raw, key[len(ENV_PREFIX) :].lower().split("__"), _env_value(value))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(raw, dotted.split("."), value)
    try:
        config = msgspec.convert(raw, Config, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_config_path(str(exc))}") from None
    config.build_taxonomy()  # validate cross-references now, not at the first event
    return config


def _set_path(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = target.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"setting {'.'.join(keys)}: {key} is not a section")
        target = node
    target[keys[-1]] = value


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _config_path(message: str) -> str:
    """msgspec says ``- at `$.store.dsn```; people write ``store.dsn``."""
    return message.replace("`$.", "`").replace("`$`", "`(top level)`")
