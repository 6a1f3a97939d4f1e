"""Shared fixtures.

The embedded engine allows one store path per process, so the whole test session shares one
store directory and each test that needs the store gets its own freshly migrated database.
Tests that need a store *directory* of their own (locks, the collector) use subprocesses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def scale(default: int) -> int:
    """Size for `slow` tests: full by default, smaller where CI sets TOUCHPOINT_SCALE < 1."""
    factor = float(os.environ.get("TOUCHPOINT_SCALE", "1"))
    return max(1, int(default * factor))


@pytest.fixture(scope="session")
def store_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('store') / 'ch'}"


@pytest.fixture(scope="session")
def _session_store(store_dsn: str) -> Iterator[object]:
    pytest.importorskip("clickhouse_connect")
    from touchpoint_collector.store import Store

    # Held open for the whole session so per-test databases share one engine start.
    store = Store.open(store_dsn, "touchpoint_session")
    yield store
    store.close()


@pytest.fixture
def store(store_dsn: str, _session_store: object) -> Iterator[object]:
    """A migrated, empty database on the session's embedded engine."""
    from touchpoint_collector.migrations import migrate
    from touchpoint_collector.store import Store, quote_ident

    database = f"t_{uuid.uuid4().hex[:12]}"
    with Store.open(store_dsn, database) as opened:
        migrate(opened)
        yield opened
        opened.command(f"DROP DATABASE IF EXISTS {quote_ident(database)} SYNC")
