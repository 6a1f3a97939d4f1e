"""The ``touchpoint`` command.

Each subcommand is a small function taking the parsed arguments and the loaded config, so
the same code runs from the shell and from tests (``main([...])``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from touchpoint_collector import __version__
from touchpoint_collector.config import Config, ConfigError, load_config
from touchpoint_collector.migrations import MigrationError, migrate
from touchpoint_collector.store import Store, StoreError
from touchpoint_collector.tables import render

Command = Callable[[argparse.Namespace, Config], int]


def _open_store(config: Config, role: str) -> Store:
    return Store.open(config.dsn, config.store.database, role=role)


def cmd_version(args: argparse.Namespace, config: Config) -> int:
    print(f"touchpoint {__version__}")
    return 0


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    with _open_store(config, "touchpoint migrate") as store:
        applied = migrate(store)
        print(f"store: {store.target.describe()}")
        if applied:
            for migration in applied:
                print(f"applied {migration.filename}")
        else:
            print("schema is up to date")
    return 0


def cmd_sql(args: argparse.Namespace, config: Config) -> int:
    with _open_store(config, "touchpoint sql") as store:
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


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from touchpoint_collector.demo import run_demo

    return run_demo(config)


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
    sub.add_parser("migrate", help="create or upgrade the ClickHouse schema").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("demo", help="run the pipeline on the embedded store").set_defaults(
        func=cmd_demo
    )
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
            args.config, overrides={"data_dir": args.data_dir, "store.dsn": args.dsn}
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
