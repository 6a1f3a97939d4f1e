"""Cluster rendering of the migrations (``touchpoint migrate --cluster``).

No ClickHouse cluster runs here: the rendered DDL is checked as text, parsed by the real
ClickHouse parser (``formatQuery`` on the embedded engine), and created on an embedded
engine configured with a test keeper, shard/replica macros and a two-shard cluster (with
``ON CLUSTER`` removed: clickhouse-local has no distributed DDL queue).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from touchpoint_collector import cli
from touchpoint_collector.cluster import (
    POLICIES,
    ClusterError,
    ClusterRenderer,
    Placement,
    migrate_cluster,
    parse_create_table,
    render_script,
    single_node_statements,
)
from touchpoint_collector.migrations import (
    _LEDGER_DDL,
    applied_migrations,
    load_migrations,
    migrate,
)
from touchpoint_collector.store import Store

CLUSTER = "tp_cluster"
DB = "touchpoint"
TABLE_RE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(?:\w+\.)?(\w+)")
ENGINE_RE = re.compile(r"\nENGINE = (\w+)(?:\((.*?)\))?\n(.*)\Z", re.DOTALL)
DISTRIBUTED_RE = re.compile(r"ENGINE = Distributed\('(\w+)', '(\w+)', '(\w+)', (.+)\)\Z")


def single_node_tables() -> dict[str, str]:
    """Table name -> its single-node CREATE TABLE, from the migration files."""
    tables = {}
    for migration in load_migrations():
        for statement in migration.statements():
            body = "\n".join(
                line for line in statement.splitlines() if not line.startswith("--")
            ).strip()
            match = TABLE_RE.match(body)
            if match:
                tables[match[1]] = body
    return tables


def cluster_tables() -> dict[str, str]:
    """Table name -> rendered CREATE TABLE, for every migration on CLUSTER."""
    renderer = ClusterRenderer(CLUSTER, DB)
    tables = {}
    for migration in load_migrations():
        for statement in renderer.migration(migration):
            if statement.startswith(("CREATE MATERIALIZED VIEW", "ALTER TABLE")):
                continue
            match = TABLE_RE.match(statement)
            assert match, statement
            tables[match[1]] = statement
    return tables


def test_inbox_views_run_on_every_shard_from_local_to_local() -> None:
    """Views fire on the table the insert lands in: on a cluster that is each shard's
    local table, so each shard's view fills that shard's local inbox."""
    renderer = ClusterRenderer(CLUSTER, DB)
    views = [
        s
        for m in load_migrations()
        for s in renderer.migration(m)
        if s.startswith("CREATE MATERIALIZED VIEW")
    ]
    assert len(views) == 2
    for view in views:
        assert f"ON CLUSTER {CLUSTER} TO {DB}.journey_inbox_local\n" in view
        assert view.endswith(("FROM touchpoint.events_local", "FROM touchpoint.identities_local"))
    with pytest.raises(ClusterError, match="sharded table into a sharded table"):
        renderer.statement(
            "CREATE MATERIALIZED VIEW v TO journey_steps AS SELECT person_id AS person FROM events"
        )


def tail(statement: str) -> tuple[str, str, str]:
    """(engine, engine arguments, everything after the engine) of a CREATE TABLE."""
    match = ENGINE_RE.search(statement)
    assert match, statement
    return match[1], match[2] or "", match[3].strip()


def columns(statement: str) -> str:
    return statement[statement.index("(") : statement.index("\nENGINE")].strip()


# -- single node: the renderer's reading of the DDL is the DDL --------------------------


def test_single_node_rendering_is_exactly_what_the_embedded_tests_apply() -> None:
    for migration in load_migrations():
        assert single_node_statements(migration) == migration.statements()
    ledger = _LEDGER_DDL.strip()
    assert parse_create_table(ledger).text() == ledger


def test_single_node_script_holds_every_statement_verbatim() -> None:
    script = render_script(None, DB)
    for migration in load_migrations():
        for statement in migration.statements():
            assert statement + ";\n" in script
    assert "ON CLUSTER" not in script
    assert "Replicated" not in script and "Distributed" not in script


# -- cluster: ON CLUSTER, Replicated locals, Distributed under the original names -------


def test_every_ddl_statement_runs_on_the_cluster() -> None:
    renderer = ClusterRenderer(CLUSTER, DB)
    statements = [renderer.database_ddl(), *renderer.statement(_LEDGER_DDL)]
    for migration in load_migrations():
        statements += renderer.migration(migration)
    assert len(statements) > len(load_migrations())
    for statement in statements:
        assert f" ON CLUSTER {CLUSTER}" in statement.splitlines()[0], statement
    script = render_script(CLUSTER, DB)
    for chunk in script.split(";\n"):
        body = "\n".join(ln for ln in chunk.splitlines() if not ln.startswith("--")).strip()
        if body and not body.startswith("INSERT INTO"):
            assert f"ON CLUSTER {CLUSTER}" in body, body


def test_sharded_tables_become_replicated_locals_with_the_same_keys_and_settings() -> None:
    single, rendered = single_node_tables(), cluster_tables()
    sharded = [t for t, p in POLICIES.items() if p.placement is Placement.SHARDED]
    assert {"events", "identities", "rejected_events", "map_snapshots"} <= set(sharded)
    for table in sharded:
        local = rendered[f"{table}_local"]
        engine, args, after = tail(single[table])
        local_engine, local_args, local_after = tail(local)
        assert local_engine == f"Replicated{engine}"
        expected = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'"
        assert local_args == ", ".join(a for a in (expected, args) if a)
        # PARTITION BY, ORDER BY, TTL and SETTINGS exactly as on a single node.
        assert local_after == after
        for clause in ("ORDER BY", "PARTITION BY", "SETTINGS", "TTL"):
            assert (clause in local_after) == (clause in after)
        assert columns(local) == columns(single[table])


def test_distributed_tables_keep_the_original_names_and_shard_by_person() -> None:
    rendered = cluster_tables()
    expected_keys = {
        "events": "cityHash64(person_id)",
        "identities": "cityHash64(anonymous_id)",
        "rejected_events": "cityHash64(collector_id, ingest_seq)",
        "map_snapshots": "cityHash64(filters_key)",
    }
    for table, key in expected_keys.items():
        statement = rendered[table]
        assert f"AS {DB}.{table}_local\n" in statement
        match = DISTRIBUTED_RE.search(statement)
        assert match, statement
        assert match.groups() == (CLUSTER, DB, f"{table}_local", key)


def test_sharding_keys_keep_replacing_rows_together_and_are_deterministic() -> None:
    """FINAL collapses rows per shard: rows with one ORDER BY key must share a shard, so
    the sharding key may only use the leading ORDER BY columns. Retries re-send a segment
    under the same dedup token, so the key may not be random."""
    single = single_node_tables()
    for table, policy in POLICIES.items():
        if policy.placement is not Placement.SHARDED:
            continue
        assert "rand" not in policy.sharding_key.lower()
        used = set(re.findall(r"\(([^()]*)\)", policy.sharding_key)[0].replace(" ", "").split(","))
        engine, _, after = tail(single[table])
        order = re.search(r"ORDER BY \(?([\w, ]+)\)?", after)
        assert order, after
        order_columns = [c.strip() for c in order[1].split(",")]
        if engine.startswith("Replacing"):
            assert used == set(order_columns[: len(used)]), (table, used, order_columns)
        else:  # plain MergeTree: the key only has to be a function of stored columns
            assert used <= set(re.findall(r"^\s{4}(\w+)\s", single[table], re.MULTILINE))


def test_node_local_and_every_node_tables() -> None:
    rendered = cluster_tables()
    steps = rendered["journey_steps"]
    assert tail(steps) == tail(single_node_tables()["journey_steps"])  # plain MergeTree
    assert "journey_steps_local" not in rendered
    (ledger,) = ClusterRenderer(CLUSTER, DB).statement(_LEDGER_DDL)
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', "
        "'{replica}')" in ledger
    )


def test_every_table_has_a_placement_and_unknown_ones_are_refused() -> None:
    assert set(single_node_tables()) | {"schema_migrations"} == set(POLICIES)
    renderer = ClusterRenderer(CLUSTER, DB)
    with pytest.raises(ClusterError, match="no cluster placement"):
        renderer.statement("CREATE TABLE extra (x UInt8) ENGINE = MergeTree ORDER BY x")
    with pytest.raises(
        ClusterError, match="only CREATE TABLE, ALTER TABLE, CREATE MATERIALIZED VIEW"
    ):
        renderer.statement("CREATE VIEW v AS SELECT 1")
    with pytest.raises(ClusterError, match="cluster name"):
        ClusterRenderer("bad'name", DB)


def test_alter_statements() -> None:
    renderer = ClusterRenderer(CLUSTER, DB)
    add = renderer.statement("ALTER TABLE events ADD COLUMN IF NOT EXISTS tenant String")
    assert add == [
        f"ALTER TABLE {DB}.events_local ON CLUSTER {CLUSTER} ADD COLUMN IF NOT EXISTS tenant String",
        f"ALTER TABLE {DB}.events ON CLUSTER {CLUSTER} ADD COLUMN IF NOT EXISTS tenant String",
    ]
    ttl = renderer.statement(
        "ALTER TABLE rejected_events MODIFY TTL toDateTime(received_at) + INTERVAL 90 DAY"
    )
    assert len(ttl) == 1 and ttl[0].startswith(f"ALTER TABLE {DB}.rejected_events_local ON CLUSTER")
    # A new sorting-key column is added and keyed in one ALTER: the Distributed table,
    # which has no key, gets only the column.
    keyed = renderer.statement(
        "ALTER TABLE identities ADD COLUMN IF NOT EXISTS seen_ms Int64 AFTER first_seen,"
        "\n    MODIFY ORDER BY (anonymous_id, user_id, seen_ms)"
    )
    assert keyed == [
        f"ALTER TABLE {DB}.identities_local ON CLUSTER {CLUSTER} ADD COLUMN IF NOT EXISTS "
        "seen_ms Int64 AFTER first_seen,\n    MODIFY ORDER BY (anonymous_id, user_id, seen_ms)",
        f"ALTER TABLE {DB}.identities ON CLUSTER {CLUSTER} ADD COLUMN IF NOT EXISTS "
        "seen_ms Int64 AFTER first_seen",
    ]
    # A view's new query reads its source's local table, as the view does.
    query = renderer.statement(
        "ALTER TABLE journey_inbox_events MODIFY QUERY\nSELECT person_id AS id FROM events"
    )
    assert query == [
        f"ALTER TABLE {DB}.journey_inbox_events ON CLUSTER {CLUSTER} MODIFY QUERY\n"
        f"SELECT person_id AS id\nFROM {DB}.events_local"
    ]
    with pytest.raises(ClusterError, match="only queries from a sharded table"):
        renderer.statement("ALTER TABLE v MODIFY QUERY SELECT 1 AS x FROM schema_migrations")


def test_rendered_ddl_parses_in_clickhouse(store: Store) -> None:
    renderer = ClusterRenderer(CLUSTER, DB)
    statements = [renderer.database_ddl(), *renderer.statement(_LEDGER_DDL)]
    for migration in load_migrations():
        statements += renderer.migration(migration)
    for statement in statements:
        formatted = store.query("SELECT formatQuery({q:String})", parameters={"q": statement})
        assert f"ON CLUSTER {CLUSTER}" in formatted.result_rows[0][0]


SIMULATED_CLUSTER = """
<clickhouse>
  <tcp_port>9000</tcp_port>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <macros><shard>01</shard><replica>node-a</replica></macros>
  <remote_servers>
    <tp_cluster>
      <shard><internal_replication>true</internal_replication>
        <replica><host>localhost</host><port>9000</port></replica></shard>
      <shard><internal_replication>true</internal_replication>
        <replica><host>127.0.0.1</host><port>9000</port></replica></shard>
    </tp_cluster>
  </remote_servers>
</clickhouse>
"""

CREATE_ON_SIMULATED_CLUSTER = """
import json, os, sys
from chdb import session
from touchpoint_collector.cluster import ClusterRenderer
from touchpoint_collector.migrations import _LEDGER_DDL, load_migrations

work = sys.argv[1]
s = session.Session(f"{work}/store?config-file={work}/config.xml")
renderer = ClusterRenderer("tp_cluster", "touchpoint")
statements = [renderer.database_ddl(), *renderer.statement(_LEDGER_DDL)]
for migration in load_migrations():
    statements += renderer.migration(migration)
for statement in statements:
    if statement.startswith("ALTER TABLE touchpoint.") and "_local ON CLUSTER" in statement:
        # The test keeper leaves replicated tables read-only, so their ALTERs cannot run
        # here (test_alter_statements checks their text, formatQuery their syntax).
        continue
    s.query(statement.replace(" ON CLUSTER tp_cluster", ""))
def rows(sql):
    return [line.split("\\t") for line in str(s.query(sql, "TSV")).splitlines()]
print(json.dumps({
    "replicas": rows("SELECT table, zookeeper_path, replica_name FROM system.replicas "
                     "WHERE database = 'touchpoint' ORDER BY table"),
    "tables": rows("SELECT name, engine FROM system.tables WHERE database = 'touchpoint' "
                   "ORDER BY name"),
    "shards": rows("SELECT count() FROM system.clusters WHERE cluster = 'tp_cluster'"),
}), flush=True)
os._exit(0)  # the engine's teardown with a test keeper can hang; nothing is left to save
"""


def test_rendered_ddl_creates_replicated_and_distributed_tables(tmp_path: Path) -> None:
    """The real engine accepts every rendered table: macros expand into the documented
    ZooKeeper paths, and the Distributed tables find the cluster and their local tables."""
    (tmp_path / "config.xml").write_text(SIMULATED_CLUSTER)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CREATE_ON_SIMULATED_CLUSTER), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["shards"] == [["2"]]
    sharded = sorted(t for t, p in POLICIES.items() if p.placement is Placement.SHARDED)
    assert sorted(map(tuple, found["replicas"])) == sorted(
        [(f"{t}_local", f"/clickhouse/tables/01/touchpoint/{t}", "node-a") for t in sharded]
        + [("schema_migrations", "/clickhouse/tables/all/touchpoint/schema_migrations", "node-a")]
    )
    engines = dict(map(tuple, found["tables"]))
    single = {t: tail(s)[0] for t, s in single_node_tables().items()}
    expected = {
        "schema_migrations": "ReplicatedMergeTree",
        "journey_steps": "MergeTree",
        "journey_inbox_events": "MaterializedView",
        "journey_inbox_links": "MaterializedView",
    }
    for table in sharded:
        expected[table] = "Distributed"
        expected[f"{table}_local"] = f"Replicated{single[table]}"
    assert engines == expected
    assert engines["events_local"] == "ReplicatedReplacingMergeTree"


# -- applying: the ledger lets `touchpoint serve` find the cluster schema current -------


def _without_cluster(sql: str) -> str:
    """What a one-node embedded engine can run of a cluster statement: no ON CLUSTER, no
    keeper (Replicated engines lose their path), no Distributed (a plain copy instead)."""
    sql = sql.replace(f" ON CLUSTER {CLUSTER}", "")
    sql = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?", r"\1(", sql)
    return re.sub(r"\nENGINE = Distributed\(.*\)\Z", "", sql, flags=re.DOTALL)


def test_migrate_cluster_records_the_single_node_checksums(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = store.database + "_c"
    with Store.open(store.target.dsn, name) as fresh:
        real = fresh.command
        sent: list[str] = []

        def command(sql: str, parameters: Any = None, settings: Any = None) -> Any:
            sent.append(sql)
            return real(_without_cluster(sql), parameters, settings)

        monkeypatch.setattr(fresh, "command", command)
        try:
            applied = migrate_cluster(fresh, CLUSTER)
            assert [m.filename for m in applied] == [m.filename for m in load_migrations()]
            assert all(f"ON CLUSTER {CLUSTER}" in s for s in sent)
            assert f"{name}.events_local" in "\n".join(sent)
            ledger = applied_migrations(fresh)
            assert {v: a.checksum for v, a in ledger.items()} == {
                m.version: m.checksum for m in load_migrations()
            }
            assert migrate(fresh) == []  # what `touchpoint serve` runs at start
            assert migrate_cluster(fresh, CLUSTER) == []
            assert {"events", "events_local", "journey_steps"} <= set(fresh.tables())
        finally:
            real(f"DROP DATABASE IF EXISTS {name} SYNC")


def test_cli_dry_run_prints_the_ddl_without_a_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOUCHPOINT_STORE__DSN", "http://nobody:nothing@127.0.0.1:9/")
    monkeypatch.setenv("TOUCHPOINT_STORE__DATABASE", "analytics")
    assert (
        cli.main(["--data-dir", str(tmp_path), "migrate", "--cluster", CLUSTER, "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    assert out == render_script(CLUSTER, "analytics")
    assert "CREATE DATABASE IF NOT EXISTS analytics ON CLUSTER tp_cluster" in out
    assert cli.main(["--data-dir", str(tmp_path), "migrate", "--dry-run"]) == 0
    assert capsys.readouterr().out == render_script(None, "analytics")
    assert cli.main(["--data-dir", str(tmp_path), "migrate", "--cluster", "x'y", "--dry-run"]) == 2
    assert "cluster name" in capsys.readouterr().err
