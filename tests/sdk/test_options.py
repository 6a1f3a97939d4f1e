from __future__ import annotations

from typing import Any

import pytest

from touchpoint import Client, ClientOptions, ConfigError, Options
from touchpoint.options import OPTION_NAMES, endpoint


def test_defaults_are_valid_and_sized_for_the_budget() -> None:
    options = Options(write_key="k")
    assert options.max_queue_size == 20_000
    assert options.gzip and not options.sync_mode and options.spool_dir is None


def test_typed_options_and_option_fields_agree() -> None:
    """`ClientOptions` (the typed **kwargs) must list exactly the settings `Options` has."""
    assert set(ClientOptions.__annotations__) == OPTION_NAMES


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_queue_size", 0),
        ("max_queue_bytes", -1),
        ("flush_at", 0),
        ("flush_at", 100_000),
        ("flush_interval", 0),
        ("max_batch_bytes", 10),
        ("max_batch_bytes", 10**9),
        ("max_retries", -1),
        ("backoff_base", -0.5),
        ("batch_deadline", 0),
        ("request_timeout", "10"),
        ("flush_timeout", True),
        ("on_error", "not callable"),
        ("before_send", 42),
    ],
)
def test_bad_options_raise_at_construction_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        Client("k", **{option: value})


def test_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="flush_intervall"):
        Client("k", flush_intervall=1.0)  # type: ignore[call-arg]


def test_write_key_is_required_unless_disabled() -> None:
    with pytest.raises(ConfigError, match="write_key"):
        Client("")
    Client("", disabled=True).shutdown(0)


def test_spool_cannot_be_combined_with_sync_mode(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="sync_mode"):
        Client("k", sync_mode=True, spool_dir=tmp_path)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("http://127.0.0.1:8088", ("http", "127.0.0.1", 8088, "/v1/batch")),
        ("https://collector.example.com", ("https", "collector.example.com", 443, "/v1/batch")),
        ("http://example.com/touchpoint/", ("http", "example.com", 80, "/touchpoint/v1/batch")),
    ],
)
def test_endpoint_is_host_plus_v1_batch(host: str, expected: tuple[str, str, int, str]) -> None:
    target = endpoint(host)
    assert (target.scheme, target.host, target.port, target.path) == expected


@pytest.mark.parametrize(
    "host",
    [
        "collector.example.com",
        "ftp://x",
        "http://",
        "http://u:p@x",
        "http://x?q=1",
        "http://x:99999",
    ],
)
def test_bad_hosts_are_refused(host: str) -> None:
    with pytest.raises(ConfigError):
        Client("k", host=host)
