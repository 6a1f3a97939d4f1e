from __future__ import annotations

import pytest

from touchpoint_collector import cli


@pytest.fixture
def in_store(store: object, store_dsn: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("TOUCHPOINT_STORE__DATABASE", store.database)  # type: ignore[attr-defined]
    return ["--dsn", store_dsn]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("touchpoint ")


def test_migrate_reports_up_to_date(
    in_store: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*in_store, "migrate"]) == 0
    assert "schema is up to date" in capsys.readouterr().out


def test_sql_prints_a_table(in_store: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            [
                *in_store,
                "sql",
                "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "name"
    assert "rejected_events" in out
    assert "(13 rows)" in out


def test_sql_is_read_only_by_default(
    in_store: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*in_store, "sql", "INSERT INTO schema_migrations (version) VALUES (77)"]) == 1
    assert "readonly" in capsys.readouterr().err.lower()
    assert (
        cli.main(
            [
                *in_store,
                "sql",
                "--format",
                "csv",
                "SELECT count() AS n FROM schema_migrations WHERE version = 77",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "n\n0\n"


def test_sql_errors_are_reported_without_a_traceback(
    in_store: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*in_store, "sql", "SELEKT 1"]) == 1
    assert "Syntax error" in capsys.readouterr().err


def test_bad_config_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOUCHPOINT_STORE__DNS", "x")
    assert cli.main(["version"]) == 2
    assert "unknown field `dns`" in capsys.readouterr().err


def test_map_writes_an_html_page(
    in_store: list[str], tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    page = Path(str(tmp_path)) / "map.html"
    assert cli.main([*in_store, "map", "--no-compare", "--html", str(page)]) == 0
    assert page.read_text().lower().startswith("<!doctype html>")
