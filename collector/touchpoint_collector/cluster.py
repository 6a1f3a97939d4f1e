"""The migrations, rendered for a ClickHouse cluster (``touchpoint migrate --cluster NAME``).

There is one copy of the DDL: the single-node files in ``schemas/clickhouse/``. This module
parses their ``CREATE TABLE`` statements and renders each for a cluster, by the table's
placement in :data:`POLICIES`:

* ``sharded``: a ``<table>_local`` table on every node, with the ``Replicated`` variant of
  the engine (ZooKeeper path ``/clickhouse/tables/{shard}/{database}/<table>``, replica
  ``{replica}``) and the same columns, ``PARTITION BY``, ``ORDER BY``, ``TTL`` and
  ``SETTINGS``; plus a ``Distributed`` table under the original name that shards rows by a
  deterministic hash. The collector and the map engine read and write the original names,
  so nothing else changes.
* ``every_node``: one replicated table with a full copy on every node (path without
  ``{shard}``): the migration ledger, so that any node answers "which migrations ran".
* ``node_local``: the single-node table created on every node, unreplicated. For
  ``journey_steps``, which the refreshable view of the node a collector talks to rebuilds
  in full (replace semantics need a plain local target), and which the map engine copies
  with ``CREATE TABLE ... AS journey_steps`` for its scratch tables (a Distributed source
  would make those scratch tables write into the shared shards).

Why these sharding keys (docs/operations.md has the long form):

* Rows that ReplacingMergeTree must collapse have to land on one shard (FINAL works per
  shard), so a sharding key is a function of a prefix of the table's ORDER BY key.
* The key must be deterministic on the row's content: the loader retries a segment with the
  same ``insert_deduplication_token``, and each shard deduplicates the part it received
  under that token. With ``rand()`` a retry would split the rows differently, dropping some
  as "duplicates" on one shard and doubling others on another.

Every statement carries ``ON CLUSTER`` and fully qualified names, so the ``--dry-run``
output runs as it is in ``clickhouse-client --multiquery``. Applying goes through
:func:`touchpoint_collector.migrations.migrate` (ordering, checksum checks, ledger) with a
store that renders each statement on its way to ClickHouse; the ledger records the checksums
of the single-node files, so ``touchpoint serve``'s own start-up check finds the cluster's
schema current and applies nothing.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from touchpoint_collector.migrations import (
    _LEDGER_DDL,
    Migration,
    MigrationError,
    load_migrations,
    migrate,
)
from touchpoint_collector.store import Store, quote_ident

LOCAL_SUFFIX: Final = "_local"
SHARD_PATH: Final = "/clickhouse/tables/{{shard}}/{{database}}/{table}"
EVERY_NODE_PATH: Final = "/clickhouse/tables/all/{{database}}/{table}"
REPLICA: Final = "{replica}"


class ClusterError(MigrationError):
    """A statement or name the cluster renderer cannot handle (it never guesses)."""


class Placement(enum.StrEnum):
    SHARDED = "sharded"
    EVERY_NODE = "every_node"
    NODE_LOCAL = "node_local"


@dataclass(frozen=True)
class TablePolicy:
    placement: Placement
    sharding_key: str = ""
    reason: str = ""


POLICIES: Final[dict[str, TablePolicy]] = {
    "events": TablePolicy(
        Placement.SHARDED,
        "cityHash64(person_id)",
        "a person's events (and their resends, which FINAL collapses) on one shard",
    ),
    "identities": TablePolicy(
        Placement.SHARDED,
        "cityHash64(anonymous_id)",
        "a link beside the anonymous id's own events (person_id = anonymous_id before "
        "stitching); repeats of a link (same ORDER BY key) on one shard",
    ),
    "rejected_events": TablePolicy(
        Placement.SHARDED,
        "cityHash64(collector_id, ingest_seq)",
        "no person to follow (the payload may be unreadable); unique per row and stored "
        "in the log, so even and the same on every retry",
    ),
    "map_snapshots": TablePolicy(
        Placement.SHARDED,
        "cityHash64(filters_key)",
        "one map's snapshots together; small",
    ),
    **{
        table: TablePolicy(
            Placement.SHARDED,
            "cityHash64(built_at)",
            "one build's rows together (readers pick the latest built_at)",
        )
        for table in ("map_stages", "map_nodes", "map_edges", "map_pain_points")
    },
    "journey_steps": TablePolicy(
        Placement.NODE_LOCAL,
        reason="derived; rebuilt in full on each node by the refreshable view installed "
        "there, and copied by `CREATE TABLE ... AS journey_steps` for scratch tables",
    ),
    "journey_inbox": TablePolicy(
        Placement.SHARDED,
        "cityHash64(id)",
        "written on each shard by the materialized views on that shard's events_local and "
        "identities_local (a view on a Distributed table would fire only on the node that "
        "received the insert); read across shards through the Distributed table",
    ),
    "schema_migrations": TablePolicy(
        Placement.EVERY_NODE, reason="the migration ledger: every node answers"
    ),
}
"""Every table of the schema, with where its rows live on a cluster. A migration that adds
a table must add it here: the renderer refuses a table it has no policy for."""

_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_BARE_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CREATE_RE: Final = re.compile(
    r"CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*",
    re.IGNORECASE,
)
_ENGINE_RE: Final = re.compile(r"\s*ENGINE\s*=\s*(?P<engine>[A-Za-z][A-Za-z0-9]*)", re.IGNORECASE)
_ALTER_RE: Final = re.compile(
    r"ALTER\s+TABLE\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<commands>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_VIEW_RE: Final = re.compile(
    r"CREATE\s+MATERIALIZED\s+VIEW\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"\s+TO\s+(?P<target>[A-Za-z_][A-Za-z0-9_]*)\s+AS\s+(?P<select>SELECT\s.+?)"
    r"\s+FROM\s+(?P<source>[A-Za-z_][A-Za-z0-9_]*)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ALTER_VIEW_RE: Final = re.compile(
    r"ALTER\s+TABLE\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+MODIFY\s+QUERY\s+(?P<select>SELECT\s.+?)"
    r"\s+FROM\s+(?P<source>[A-Za-z_][A-Za-z0-9_]*)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COLUMN_COMMAND_RE: Final = re.compile(
    r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR)\s+COLUMN\b", re.IGNORECASE
)


# -- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTable:
    """A single-node ``CREATE TABLE`` split into pieces; the pieces concatenate back into
    the statement exactly (:meth:`text`)."""

    prefix: str
    """Comments and blank lines before ``CREATE``."""
    head: str
    """``CREATE TABLE [IF NOT EXISTS] name`` and the blank after it."""
    name: str
    if_not_exists: bool
    columns: str
    """The column list, parentheses included, verbatim."""
    engine_clause: str
    """``ENGINE = Name`` with its arguments, and the whitespace before it."""
    engine: str
    engine_args: str
    """The engine's arguments without the parentheses; empty when it has none."""
    clauses: str
    """Everything after the engine (PARTITION BY, ORDER BY, TTL, SETTINGS ...), verbatim."""

    def text(self) -> str:
        return self.prefix + self.head + self.columns + self.engine_clause + self.clauses


def parse_create_table(statement: str) -> CreateTable:
    prefix = _comment_prefix(statement)
    rest = statement[len(prefix) :]
    match = _CREATE_RE.match(rest)
    if match is None or not rest[match.end() :].startswith("("):
        raise ClusterError(f"not a CREATE TABLE with a column list: {_first_line(rest)}")
    columns_end = _matching_paren(rest, match.end())
    engine = _ENGINE_RE.match(rest, columns_end)
    if engine is None:
        raise ClusterError(f"CREATE TABLE {match['name']}: no ENGINE = after the columns")
    engine_end = engine.end()
    args = ""
    if rest.startswith("(", engine_end):
        args_end = _matching_paren(rest, engine_end)
        args = rest[engine_end + 1 : args_end - 1].strip()
        engine_end = args_end
    return CreateTable(
        prefix=prefix,
        head=rest[: match.end()],
        name=match["name"],
        if_not_exists=match["ine"] is not None,
        columns=rest[match.end() : columns_end],
        engine_clause=rest[columns_end:engine_end],
        engine=engine["engine"],
        engine_args=args,
        clauses=rest[engine_end:],
    )


def _comment_prefix(statement: str) -> str:
    """The leading lines that are blank or ``--`` comments."""
    end = 0
    for line in statement.splitlines(keepends=True):
        if line.strip() and not line.strip().startswith("--"):
            break
        end += len(line)
    return statement[:end]


def _strip_comments(statement: str) -> str:
    return statement[len(_comment_prefix(statement)) :].strip()


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth before it) of each character outside quotes."""
    depth, quote, i = 0, "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
        else:
            yield i, char, depth
            depth += (char == "(") - (char == ")")
        i += 1


def _matching_paren(text: str, start: int) -> int:
    """Index just past the parenthesis that closes the one at `start` (quotes respected)."""
    for i, char, depth in _unquoted(text, start):
        if char == ")" and depth == 1:
            return i + 1
    raise ClusterError(f"unbalanced parentheses in: {_first_line(text[start:])}")


def _top_level_split(text: str) -> list[str]:
    """`text` split at commas outside parentheses and quotes."""
    cuts = [i for i, char, depth in _unquoted(text) if char == "," and depth == 0]
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b] for a, b in itertools.pairwise(bounds)]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:120] if text.strip() else "(empty)"


# -- rendering -------------------------------------------------------------------------


class ClusterRenderer:
    """Renders single-node statements for cluster `cluster` and database `database`."""

    def __init__(self, cluster: str, database: str) -> None:
        for what, value in (("cluster", cluster), ("database", database)):
            if not _NAME_RE.match(value):
                raise ClusterError(f"{what} name {value!r}: use letters, digits, _ . -")
        self.cluster = cluster
        self.database = database
        self.on_cluster = f"ON CLUSTER {_ident(cluster)}"

    def qualified(self, table: str) -> str:
        return f"{_ident(self.database)}.{_ident(table)}"

    def database_ddl(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {_ident(self.database)} {self.on_cluster} ENGINE = Atomic"

    def statement(self, sql: str) -> list[str]:
        """One single-node statement as the statements that do the same on the cluster."""
        body = _strip_comments(sql)
        if _CREATE_RE.match(body):
            return self.create_table(parse_create_table(body))
        view_query = _ALTER_VIEW_RE.match(body)
        if view_query:
            return [self.view_query(view_query)]
        alter = _ALTER_RE.match(body)
        if alter:
            return self.alter_table(alter["name"], alter["commands"].strip())
        view = _VIEW_RE.match(body)
        if view:
            return [self.materialized_view(view)]
        raise ClusterError(
            f"cannot render for a cluster: {_first_line(body)} (only CREATE TABLE, ALTER "
            "TABLE, CREATE MATERIALIZED VIEW ... TO ... AS SELECT ... FROM <table> and ALTER "
            "TABLE <view> MODIFY QUERY SELECT ... FROM <table> are rendered; extend "
            "touchpoint_collector.cluster)"
        )

    def materialized_view(self, view: re.Match[str]) -> str:
        """A view from a sharded table into a sharded table runs on every shard, from the
        local table the shard's rows land in to the local target, so it sees every insert
        once whichever node received it."""
        source, target = policy_for(view["source"]), policy_for(view["target"])
        if not (source.placement is target.placement is Placement.SHARDED):
            raise ClusterError(
                f"materialized view {view['name']}: only views from a sharded table into a "
                "sharded table are rendered"
            )
        ine = "IF NOT EXISTS " if view["ine"] else ""
        return (
            f"CREATE MATERIALIZED VIEW {ine}{self.qualified(view['name'])} {self.on_cluster} "
            f"TO {self.qualified(view['target'] + LOCAL_SUFFIX)}\n"
            f"AS {view['select']}\nFROM {self.qualified(view['source'] + LOCAL_SUFFIX)}"
        )

    def view_query(self, view: re.Match[str]) -> str:
        """A view's new query reads the local table of its source, as the view itself
        does (:meth:`materialized_view`)."""
        if policy_for(view["source"]).placement is not Placement.SHARDED:
            raise ClusterError(
                f"materialized view {view['name']}: only queries from a sharded table are rendered"
            )
        return (
            f"ALTER TABLE {self.qualified(view['name'])} {self.on_cluster} MODIFY QUERY\n"
            f"{view['select']}\nFROM {self.qualified(view['source'] + LOCAL_SUFFIX)}"
        )

    def create_table(self, table: CreateTable) -> list[str]:
        policy = policy_for(table.name)
        ine = "IF NOT EXISTS " if table.if_not_exists else ""
        clauses = table.clauses.strip()
        if policy.placement is Placement.NODE_LOCAL:
            engine = f"{table.engine}({table.engine_args})" if table.engine_args else table.engine
            return [
                f"CREATE TABLE {ine}{self.qualified(table.name)} {self.on_cluster}\n"
                f"{table.columns}\nENGINE = {engine}\n{clauses}".rstrip()
            ]
        if policy.placement is Placement.EVERY_NODE:
            path = EVERY_NODE_PATH.format(table=table.name)
            return [self._replicated(table, table.name, path, ine, clauses)]
        local = table.name + LOCAL_SUFFIX
        path = SHARD_PATH.format(table=table.name)
        distributed = (
            f"CREATE TABLE {ine}{self.qualified(table.name)} {self.on_cluster} "
            f"AS {self.qualified(local)}\n"
            f"ENGINE = Distributed({_literal(self.cluster)}, {_literal(self.database)}, "
            f"{_literal(local)}, {policy.sharding_key})"
        )
        return [self._replicated(table, local, path, ine, clauses), distributed]

    def _replicated(self, table: CreateTable, name: str, path: str, ine: str, clauses: str) -> str:
        if not table.engine.endswith("MergeTree") or table.engine.startswith("Replicated"):
            raise ClusterError(
                f"table {table.name}: engine {table.engine} has no Replicated variant to render"
            )
        args = ", ".join(a for a in (_literal(path), _literal(REPLICA), table.engine_args) if a)
        return (
            f"CREATE TABLE {ine}{self.qualified(name)} {self.on_cluster}\n"
            f"{table.columns}\nENGINE = Replicated{table.engine}({args})\n{clauses}"
        ).rstrip()

    def alter_table(self, name: str, commands: str) -> list[str]:
        """Column changes go to the local table and to the Distributed one (which must show
        the same columns); anything else (sorting key, settings, TTL, indexes) to the local
        table only. One ALTER may mix both, as a new sorting-key column must: the local
        table gets all of it, the Distributed one its column changes."""
        policy = policy_for(name)
        if policy.placement is not Placement.SHARDED:
            return [f"ALTER TABLE {self.qualified(name)} {self.on_cluster} {commands}"]
        parts = _top_level_split(commands)
        columns = [c.strip() for c in parts if _COLUMN_COMMAND_RE.match(c)]
        local = f"ALTER TABLE {self.qualified(name + LOCAL_SUFFIX)} {self.on_cluster} {commands}"
        if not columns:
            return [local]
        shown = ", ".join(columns)
        return [local, f"ALTER TABLE {self.qualified(name)} {self.on_cluster} {shown}"]

    def migration(self, migration: Migration) -> list[str]:
        statements = []
        for statement in migration.statements():
            try:
                statements.extend(self.statement(statement))
            except ClusterError as exc:
                raise ClusterError(f"{migration.filename}: {exc}") from None
        return statements


def policy_for(table: str) -> TablePolicy:
    try:
        return POLICIES[table]
    except KeyError:
        raise ClusterError(
            f"table {table} has no cluster placement: add it to "
            "touchpoint_collector.cluster.POLICIES (sharded, every_node or node_local)"
        ) from None


def single_node_statements(migration: Migration) -> list[str]:
    """The statements `migrate` applies on a single node, rebuilt from the parsed pieces
    (CREATE TABLE) or as written (anything else)."""
    return [
        parse_create_table(s).text() if _CREATE_RE.match(_strip_comments(s)) else s
        for s in migration.statements()
    ]


def render_script(
    cluster: str | None, database: str, migrations: list[Migration] | None = None
) -> str:
    """The whole schema as one SQL script (``touchpoint migrate [--cluster NAME] --dry-run``):
    database, ledger, every migration, and the ledger rows that record them."""
    migrations = load_migrations() if migrations is None else migrations
    target = f"cluster {cluster}" if cluster else "a single node"
    lines = [
        f"-- Touchpoint schema for {target}, database {database}.",
        "-- Statements are separated by ';' at the end of a line.",
    ]
    renderer = ClusterRenderer(cluster, database) if cluster else None
    if renderer is None:
        lines.append(
            f"-- Names are unqualified: run with the database selected (it is created with "
            f"CREATE DATABASE IF NOT EXISTS {_ident(database)} ENGINE = Atomic)."
        )
    blocks = [renderer.database_ddl()] if renderer else []
    blocks.extend(renderer.statement(_LEDGER_DDL) if renderer else [_LEDGER_DDL.strip()])
    ledger = renderer.qualified("schema_migrations") if renderer else "schema_migrations"
    for migration in migrations:
        statements = (
            renderer.migration(migration) if renderer else single_node_statements(migration)
        )
        blocks.append(f"-- {migration.filename}\n")  # a header, not a statement
        blocks.extend(statements)
        blocks.append(
            f"INSERT INTO {ledger} (version, name, checksum, applied_at) VALUES "
            f"({migration.version}, {_literal(migration.name)}, "
            f"{_literal(migration.checksum)}, now64(3, 'UTC'))"
        )
    out = "\n".join(lines) + "\n\n"
    for block in blocks:
        out += block if block.endswith("\n") else block + ";\n\n"
    return out


# -- applying --------------------------------------------------------------------------


class _ClusterStore(Store):
    """A view of an open store whose DDL goes through the renderer, so that
    :func:`~touchpoint_collector.migrations.migrate` runs unchanged against a cluster.
    Queries and inserts (the ledger) pass straight through; closing is the owner's job."""

    def __init__(self, inner: Store, renderer: ClusterRenderer) -> None:  # no connect
        self.target = inner.target
        self._client = inner.client
        self._lock_dir = None
        self._closed = True
        self._inner = inner
        self._renderer = renderer

    def command(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        result = None
        for statement in self._renderer.statement(sql):
            result = self._inner.command(statement, parameters, settings)
        return result


def migrate_cluster(store: Store, cluster: str, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations ON CLUSTER through `store` (any node of the cluster)."""
    renderer = ClusterRenderer(cluster, store.database)
    store.command(renderer.database_ddl())
    return migrate(_ClusterStore(store, renderer), directory)


def _ident(name: str) -> str:
    return name if _BARE_RE.match(name) else quote_ident(name)


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
