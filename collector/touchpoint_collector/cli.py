"""The ``touchpoint`` command.

Each subcommand is a small function taking the parsed arguments and the loaded config, so
the same code runs from the shell and from tests (``main([...])``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from touchpoint_collector import __version__
from touchpoint_collector.config import Config, ConfigError, load_config
from touchpoint_collector.migrations import MigrationError, migrate
from touchpoint_collector.store import Store, StoreError, StoreLockedError
from touchpoint_collector.tables import render

Command = Callable[[argparse.Namespace, Config], int]


def _open_store(config: Config, role: str) -> Store:
    return Store.open(config.dsn, config.store.database, role=role)


def cmd_version(args: argparse.Namespace, config: Config) -> int:
    print(f"touchpoint {__version__}")
    return 0


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from touchpoint_collector.cluster import migrate_cluster, render_script

    if args.dry_run:
        sys.stdout.write(render_script(args.cluster, config.store.database))
        return 0
    with _open_store(config, "touchpoint migrate") as store:
        applied = migrate_cluster(store, args.cluster) if args.cluster else migrate(store)
        print(f"store: {store.target.describe()}")
        if applied:
            for migration in applied:
                print(f"applied {migration.filename}")
        else:
            print("schema is up to date")
    return 0


def cmd_sql(args: argparse.Namespace, config: Config) -> int:
    try:
        store = _open_store(config, "touchpoint sql")
    except StoreLockedError as exc:
        # The collector owns the embedded store while it runs: ask it instead.
        if not exc.holder.get("query_url"):
            raise
        return _sql_via_collector(args, config, exc.holder["query_url"])
    with store:
        started = time.perf_counter()
        settings: dict[str, Any] = {"readonly": 2} if not args.write else {}
        if not args.raw:
            settings["final"] = 1
        result = store.query(args.query, settings=settings)
        elapsed = time.perf_counter() - started
        sys.stdout.write(render(result.column_names, result.result_rows, args.format))
        if args.format == "table":
            print(f"({elapsed:.3f} s)", file=sys.stderr)
    return 0


def _sql_via_collector(args: argparse.Namespace, config: Config, url: str) -> int:
    from touchpoint_collector.keys import read_local_read_key
    from touchpoint_collector.remote import QueryFailed, remote_query

    key = read_local_read_key(config.data_path)
    try:
        columns, rows = remote_query(url, args.query, key, final=not args.raw)
    except QueryFailed as exc:
        print(f"touchpoint: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(columns, rows, args.format))
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    import asyncio

    from touchpoint_collector.logs import configure_logging
    from touchpoint_collector.server import Running, serve

    configure_logging(config.log_level, config.log_format)

    def announce(running: Running) -> None:
        if running.dev_key:
            print(f"development write key (shown once): {running.dev_key}", flush=True)
        print(f"Touchpoint collector listening on {running.url}", flush=True)

    return asyncio.run(serve(config, on_ready=announce))


def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    from touchpoint_collector.keys import KeyKind, KeyStore

    keys = KeyStore(config.data_path)
    if args.keys_command == "create":
        kind = KeyKind.READ if args.read else KeyKind.WRITE
        key, record = keys.create(args.source, kind, note=args.note)
        print(f"created {kind.value} key {record.id} for source {record.source!r}")
        print(f"key (shown once, store it now): {key}")
    elif args.keys_command == "list":
        rows = [
            (r.id, r.source, r.kind.value, r.hint, r.created_at, r.revoked_at, r.note)
            for r in keys.records()
        ]
        sys.stdout.write(
            render(["id", "source", "kind", "hint", "created_at", "revoked_at", "note"], rows)
        )
    else:
        revoked = keys.revoke(args.key_id)
        if revoked is None:
            print(f"touchpoint: no active key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {revoked.id} ({revoked.kind.value} key of source {revoked.source!r})")
    return 0


def cmd_map(args: argparse.Namespace, config: Config) -> int:
    import msgspec

    from touchpoint_collector.journey.model import JourneyMap
    from touchpoint_collector.journey.params import MapParamError, parse
    from touchpoint_collector.journey.render import to_dot, to_mermaid, to_text
    from touchpoint_collector.journey.service import current_map
    from touchpoint_collector.journey.settings import settings_from_config

    taxonomy = config.build_taxonomy()
    query = {
        "since": args.since,
        "until": args.until,
        "sources": args.source,
        "channels": args.channel,
        "persona": args.persona,
        "properties": args.property,
        "goal": args.goal,
        "gap_days": args.gap_days,
        "end_after_days": args.end_after_days,
        "top_n": args.top_n,
    }
    try:
        filters, settings = parse(**query, base=settings_from_config(config, taxonomy))
    except MapParamError as exc:
        print(f"touchpoint: {exc}", file=sys.stderr)
        return 2
    print("building the journey map ...", file=sys.stderr, flush=True)
    try:
        store = _open_store(config, "touchpoint map")
    except StoreLockedError as exc:
        if not exc.holder.get("url"):
            raise
        from touchpoint_collector.keys import read_local_read_key
        from touchpoint_collector.remote import QueryFailed, remote_map

        try:
            journey_map = remote_map(
                exc.holder["url"], query, read_local_read_key(config.data_path)
            )
        except QueryFailed as failed:
            print(f"touchpoint: {failed}", file=sys.stderr)
            return 1
    else:
        with store:
            journey_map = current_map(
                store, filters, settings, taxonomy=taxonomy, with_comparison=not args.no_compare
            )

    def to_json(journey_map: JourneyMap) -> str:
        return msgspec.json.format(msgspec.json.encode(journey_map), indent=2).decode() + "\n"

    renderers: dict[str, Callable[[JourneyMap], str]] = {
        "text": to_text,
        "mermaid": to_mermaid,
        "dot": to_dot,
        "json": to_json,
    }
    if args.html:
        from touchpoint_collector.viewer import render_html

        Path(args.html).write_text(render_html(journey_map))
        print(f"wrote {args.html}", file=sys.stderr)
        if not args.output:
            return 0
    output = renderers[args.format](journey_map)
    if args.output:
        Path(args.output).write_text(output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(output)
    return 0


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from touchpoint_collector.demo import run_demo
    from touchpoint_collector.logs import configure_logging

    configure_logging("warning", config.log_format)
    return run_demo(
        config,
        persons=args.persons,
        seed=args.seed,
        serve_forever=not args.no_serve,
        html=Path(args.html) if args.html else None,
        json_out=Path(args.json) if args.json else None,
        port=args.port,
    )


def cmd_simulate(args: argparse.Namespace, config: Config) -> int:
    import touchpoint
    from touchpoint_collector.simulator import progress_bar, send, simulate

    people = list(simulate(args.persons, seed=args.seed, days=args.days))
    client = touchpoint.Client(args.write_key, host=args.host, max_queue_size=500_000)
    clients = dict.fromkeys(("shop", "saas", "bank"), client)
    sent = send(people, clients, rate=args.rate, progress=progress_bar("simulating"))
    pending = client.flush(timeout=120)
    client.shutdown(timeout=30)
    print(f"sent {sent:,} events for {len(people):,} persons; {pending} still pending")
    return 0 if pending == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="touchpoint",
        description="Touchpoint: collect customer touchpoints into ClickHouse and map the journey.",
    )
    parser.add_argument("--config", help="TOML config file (default: $TOUCHPOINT_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (default: .touchpoint)")
    parser.add_argument("--dsn", help="ClickHouse DSN: chdb:///path or http(s)://...")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    migrate_cmd = sub.add_parser("migrate", help="create or upgrade the ClickHouse schema")
    migrate_cmd.add_argument("--cluster", metavar="NAME", help="ON CLUSTER NAME: sharded schema")
    migrate_cmd.add_argument("--dry-run", action="store_true", help="print the DDL, apply nothing")
    migrate_cmd.set_defaults(func=cmd_migrate)
    demo = sub.add_parser(
        "demo", help="the whole pipeline on a fresh embedded store, with a live map"
    )
    demo.add_argument("--persons", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--port", type=int, help="collector port (default 8088; 0 picks one)")
    demo.add_argument("--html", default="journey-map.html", help="where to write the map page")
    demo.add_argument("--json", help="also write the map as JSON here")
    demo.add_argument("--no-serve", action="store_true", help="stop after building the map")
    demo.set_defaults(func=cmd_demo)

    simulate = sub.add_parser("simulate", help="send simulated journeys to a collector")
    simulate.add_argument("--write-key", required=True)
    simulate.add_argument("--host", default="http://127.0.0.1:8088")
    simulate.add_argument("--persons", type=int, default=1000)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--days", type=float, default=60.0)
    simulate.add_argument(
        "--rate", type=float, default=0.0, help="events per second (0: as fast as possible)"
    )
    simulate.set_defaults(func=cmd_simulate)
    serve = sub.add_parser("serve", help="run the collector")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8088; 0 picks one)")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="manage write and read keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--source", required=True, help="the source the key sends for")
    create.add_argument(
        "--read", action="store_true", help="a read key (query) instead of a write key"
    )
    create.add_argument("--note", default="", help="a reminder of what it is for")
    keys_sub.add_parser("list", help="list keys (hashes only)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    jmap = sub.add_parser("map", help="build the journey map")
    jmap.add_argument("--since", help="start of the window: 90d, 12h, 2026-11-01 ...")
    jmap.add_argument("--until", help="end of the window (default: now)")
    jmap.add_argument("--source", action="append", default=[], help="only these sources")
    jmap.add_argument("--channel", action="append", default=[], help="only these channels")
    jmap.add_argument("--persona", help="only persons with this persona trait")
    jmap.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
    jmap.add_argument("--goal", help="goal touchpoint, or stage:<stage> (default: purchase)")
    jmap.add_argument("--gap-days", type=float, help="inactivity that splits journeys")
    jmap.add_argument("--end-after-days", type=float, help="idle time after which a journey ended")
    jmap.add_argument("--top-n", type=int, help="touchpoints kept per stage in the flow")
    jmap.add_argument("--format", choices=["text", "json", "mermaid", "dot"], default="text")
    jmap.add_argument("--output", "-o", help="write to a file instead of standard output")
    jmap.add_argument("--html", metavar="FILE", help="write the map as a self-contained web page")
    jmap.add_argument(
        "--no-compare", action="store_true", help="skip the previous-period comparison"
    )
    jmap.set_defaults(func=cmd_map)

    sql = sub.add_parser("sql", help="run a query and print the result")
    sql.add_argument("query", help='SQL, e.g. "SELECT touchpoint, count() FROM events GROUP BY 1"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument(
        "--raw", action="store_true", help="do not deduplicate (no FINAL): see rows as stored"
    )
    sql.add_argument("--write", action="store_true", help="allow statements that change data")
    sql.set_defaults(func=cmd_sql)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(
            args.config,
            overrides={
                "data_dir": args.data_dir,
                "store.dsn": args.dsn,
                "server.host": getattr(args, "host", None),
                "server.port": getattr(args, "port", None),
            },
        )
        func: Command = args.func
        return func(args, config)
    except (ConfigError, StoreError, MigrationError) as exc:
        print(f"touchpoint: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # ClickHouse's own errors (bad SQL, readonly refusals) are for the user, not a trace.
        from clickhouse_connect.driver.exceptions import ClickHouseError

        if isinstance(exc, ClickHouseError):
            print(f"touchpoint: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
