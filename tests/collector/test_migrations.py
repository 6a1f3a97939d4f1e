from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from touchpoint_collector.migrations import (
    MigrationError,
    applied_migrations,
    load_migrations,
    migrate,
    migrations_dir,
    split_statements,
)
from touchpoint_collector.store import Store, quote_ident


@pytest.fixture
def empty_db(store: Store, store_dsn: str) -> object:
    name = store.database + "_m"
    with Store.open(store_dsn, name) as fresh:
        yield fresh
        fresh.command(f"DROP DATABASE IF EXISTS {quote_ident(name)} SYNC")


def test_migrations_create_every_table_and_are_idempotent(empty_db: Store) -> None:
    applied = migrate(empty_db)
    assert [m.filename for m in applied] == [m.filename for m in load_migrations()]
    assert {"events", "identities", "rejected_events", "schema_migrations"} <= set(
        empty_db.tables()
    )
    assert migrate(empty_db) == []
    ledger = applied_migrations(empty_db)
    assert sorted(ledger) == [m.version for m in load_migrations()]
    assert empty_db.rows("SELECT count() FROM schema_migrations") == [(len(ledger),)]


def test_database_uses_the_atomic_engine(empty_db: Store) -> None:
    rows = empty_db.rows(
        "SELECT engine FROM system.databases WHERE name = {db:String}", {"db": empty_db.database}
    )
    assert rows == [("Atomic",)]


def test_edited_applied_migration_is_refused(empty_db: Store, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    migrate(empty_db, copy)
    first = sorted(copy.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- a harmless looking edit\n")
    with pytest.raises(MigrationError, match="was edited after it was applied"):
        migrate(empty_db, copy)


def test_new_migration_is_applied_alone(empty_db: Store, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    migrate(empty_db, copy)
    (copy / "0999_extra.sql").write_text(
        "CREATE TABLE IF NOT EXISTS extra (x UInt8) ENGINE = Memory;\n"
    )
    assert [m.filename for m in migrate(empty_db, copy)] == ["0999_extra.sql"]
    assert "extra" in empty_db.tables()
    (copy / "0999_extra.sql").unlink()
    with pytest.raises(MigrationError, match="newer release"):
        migrate(empty_db, copy)


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_events.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_description"):
        load_migrations(tmp_path)


def test_statement_splitting() -> None:
    sql = "-- header\nCREATE TABLE a (x String DEFAULT ';') ENGINE = Memory;\n\n-- only a comment;\nSELECT 1;"
    assert split_statements(sql) == [
        "-- header\nCREATE TABLE a (x String DEFAULT ';') ENGINE = Memory",
        "SELECT 1",
    ]
