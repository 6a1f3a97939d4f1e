"""Versioned DDL migrations for Touchpoint's ClickHouse database.

Files are ``NNNN_description.sql`` under ``schemas/clickhouse/``, applied in version order
and recorded with a checksum in ``schema_migrations``. Running again applies only what is
new. An applied file that has since been edited is refused, not re-run: schemas in
ClickHouse are not transactional, so "edit and re-apply" silently diverges databases;
a change to an applied schema is a new migration.

Statements in a file are separated by a semicolon at the end of a line. Names are
unqualified: the runner's client has the target database selected.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from touchpoint_collector.store import Store

_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version     UInt32,
    name        String,
    checksum    String,
    applied_at  DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they stand."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def migrations_dir() -> Path:
    """``schemas/clickhouse`` in a source tree, or its copy inside an installed wheel."""
    import touchpoint_schemas

    package = Path(touchpoint_schemas.__file__).resolve().parent
    for candidate in (package / "clickhouse", package.parent / "clickhouse"):
        if candidate.is_dir():
            return candidate
    raise MigrationError("schemas/clickhouse not found beside touchpoint_schemas")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} is also {found[version].filename}"
            )
        found[version] = Migration(version, match["name"], path, path.read_text())
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Statements end with ';' at the end of a line; comment-only chunks are dropped."""
    statements = []
    for chunk in re.split(r";[ \t]*(?:\n|$)", sql):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if body.strip():
            statements.append(chunk.strip())
    return statements


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def applied_migrations(store: Store) -> dict[int, AppliedMigration]:
    store.command(_LEDGER_DDL)
    result = store.query(
        "SELECT version, any(name), any(checksum), min(applied_at) FROM schema_migrations GROUP BY version"
    )
    return {row[0]: AppliedMigration(*row) for row in result.result_rows}


def migrate(store: Store, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations in order; returns the ones applied now (empty when current)."""
    migrations = load_migrations(directory)
    applied = applied_migrations(store)
    for migration in migrations:
        done = applied.get(migration.version)
        if done is not None and done.checksum != migration.checksum:
            raise MigrationError(
                f"{migration.filename} was edited after it was applied on "
                f"{done.applied_at:%Y-%m-%d %H:%M} (checksum {done.checksum[:12]} there, "
                f"{migration.checksum[:12]} here); put schema changes in a new migration"
            )
    known = {m.version for m in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(
            f"the database has migrations {unknown} that this version of Touchpoint does not "
            "know; it was migrated by a newer release"
        )
    newly_applied = []
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in migration.statements():
            try:
                store.command(statement)
            except Exception as exc:
                raise MigrationError(f"{migration.filename}: {exc}") from exc
        store.client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        newly_applied.append(migration)
    return newly_applied
