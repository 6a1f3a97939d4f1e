from __future__ import annotations

from pathlib import Path

import pytest

from touchpoint_collector.config import ConfigError, load_config


def test_defaults_use_the_embedded_store_under_the_data_dir(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})
    assert config.dsn == f"chdb://{tmp_path.resolve() / 'store'}"
    assert config.store.database == "touchpoint"
    assert config.limits.max_batch_events == 2500


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "tp.toml"
    path.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[store]\ndsn = "http://ch:8123"\n')
    config = load_config(
        path, env={"TOUCHPOINT_SERVER__PORT": "9100", "TOUCHPOINT_DATA_DIR": "/srv/tp"}
    )
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9100)
    assert config.store.dsn == "http://ch:8123"
    assert config.dsn == "http://ch:8123"
    assert config.data_dir == "/srv/tp"
    config = load_config(path, env={}, overrides={"server.port": 1234, "store.dsn": None})
    assert config.server.port == 1234
    assert config.store.dsn == "http://ch:8123"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = tmp_path / "tp.toml"
    path.write_text("[limits]\nmax_batch_events = 10\n")
    assert load_config(env={"TOUCHPOINT_CONFIG": str(path)}).limits.max_batch_events == 10


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOUCHPOINT_STORE__DNS": "x"}, "unknown field `dns` - at `store`"),
        ({"TOUCHPOINT_SERVER__PORT": "70000"}, "at `server.port`"),
        ({"TOUCHPOINT_SERVER__PORT": "many"}, "Expected `int`, got `str` - at `server.port`"),
        ({"TOUCHPOINT_LIMITS__MAX_BATCH_EVENTS": "0"}, "at `limits.max_batch_events`"),
        ({"TOUCHPOINT_STORE__DATABASE": "drop table"}, "at `store.database`"),
    ],
)
def test_errors_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert message in str(info.value)


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_custom_taxonomy_from_config(tmp_path: Path) -> None:
    path = tmp_path / "tp.toml"
    path.write_text(
        """
[[taxonomy.channels]]
name = "branch"
online = false

[[taxonomy.touchpoints]]
name = "mortgage_advice"
stage = "consideration"
channel = "branch"
event_names = ["Advice Session Held"]

[taxonomy.events]
"Signup Finished" = "newsletter_signup"
"""
    )
    taxonomy = load_config(path, env={}).build_taxonomy()
    assert taxonomy.resolve("track", "Advice Session Held", None, None, None).channel == "branch"
    assert (
        taxonomy.resolve("track", "Signup Finished", None, None, None).touchpoint
        == "newsletter_signup"
    )


def test_custom_taxonomy_errors_are_reported_at_load(tmp_path: Path) -> None:
    path = tmp_path / "tp.toml"
    path.write_text('[taxonomy.events]\n"X" = "no_such_touchpoint"\n')
    with pytest.raises(ConfigError, match="taxonomy: event mapping 'X' names unknown touchpoint"):
        load_config(path, env={})
    path.write_text('[[taxonomy.touchpoints]]\nname = "x"\nstage = "nirvana"\nchannel = "web"\n')
    with pytest.raises(ConfigError, match=r"taxonomy\.touchpoints"):
        load_config(path, env={})
