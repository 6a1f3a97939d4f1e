"""Column-oriented inserts of prepared rows into the three event tables.

The request path builds rows as tuples (cheap to make and to log); ClickHouse wants columns.
The transpose happens once per insert, here, for every caller: the loader, the demo, tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from touchpoint_collector.enrich import EVENT_COLUMNS, IDENTITY_COLUMNS
from touchpoint_collector.ingest import REJECTED_COLUMNS
from touchpoint_collector.store import Store

TABLE_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "events": EVENT_COLUMNS,
    "identities": IDENTITY_COLUMNS,
    "rejected_events": REJECTED_COLUMNS,
}


def write_rows(
    store: Store,
    table: str,
    rows: Sequence[Sequence[Any]],
    *,
    dedup_token: str | None = None,
    client: Client | None = None,
) -> int:
    """Insert rows into one of the event tables; returns how many were sent."""
    if not rows:
        return 0
    columns = list(zip(*rows, strict=True))
    store.insert_columns(
        table, columns, TABLE_COLUMNS[table], dedup_token=dedup_token, client=client
    )
    return len(rows)
