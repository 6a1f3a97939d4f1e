"""The analysts' endpoint refuses what reaches outside the store, on the real engine's
parse tree (``EXPLAIN AST``): readonly = 2 alone let a query read and write files."""

from __future__ import annotations

import pytest

from touchpoint_collector import sqlguard
from touchpoint_collector.store import Store


def tree(store: Store, sql: str) -> str:
    rows = store.query(f"EXPLAIN AST {sql}").result_rows
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT touchpoint, count() FROM events GROUP BY touchpoint",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t UNION ALL SELECT 2",
        "SELECT * FROM numbers(3) AS n JOIN (SELECT number FROM numbers(2)) AS m USING (number)",
        "SELECT * FROM merge(currentDatabase(), '^events$') LIMIT 1",
        "SELECT 1 INTERSECT SELECT 1",
        "SHOW TABLES",
        "SHOW TABLES LIKE 'ev%'",
        "SELECT 1 UNION ALL SELECT 2 LIMIT 1",
        "DESCRIBE TABLE events",
        "EXPLAIN SELECT count() FROM events",
        "EXISTS TABLE events",
        "SELECT 'file(x)', filesystemAvailable() > 0 AS free, 1 AS file",
    ],
)
def test_reads_of_the_store_pass(store: Store, sql: str) -> None:
    sqlguard.check(tree(store, sql))


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "table function file"),
        ("SELECT file('/etc/hostname')", "function file"),
        ("WITH (SELECT FILE('/etc/hostname')) AS f SELECT f", "function FILE"),
        (
            "SELECT 1 FROM events WHERE 1 IN (SELECT 1 FROM url('http://127.0.0.1:1/', 'CSV'))",
            "table function url",
        ),
        ("INSERT INTO FUNCTION file('/tmp/x.csv', 'CSV') SELECT 1", "read-only"),
        ("SELECT 1 INTO OUTFILE '/tmp/x.csv'", "INTO OUTFILE"),
        ("EXPLAIN SELECT 1 INTO OUTFILE '/tmp/x.txt'", "INTO OUTFILE"),
        ("EXPLAIN AST SELECT 1 INTO OUTFILE '/tmp/x.txt'", "INTO OUTFILE"),
        ("SHOW TABLES INTO OUTFILE '/tmp/x.txt'", "INTO OUTFILE"),
        ("DESCRIBE TABLE events INTO OUTFILE '/tmp/x.txt'", "INTO OUTFILE"),
        ("EXISTS TABLE events INTO OUTFILE '/tmp/x.txt'", "INTO OUTFILE"),
        ("SELECT number FROM numbers(10) SETTINGS max_result_rows = 0", "SETTINGS"),
        ("SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 0)", "SETTINGS"),
        ("INSERT INTO events (message_id) VALUES ('x')", "read-only"),
        ("DROP TABLE events", "read-only"),
        ("KILL QUERY WHERE 1", "read-only"),
        ("SET max_result_rows = 0", "read-only"),
        ("EXPLAIN SELECT * FROM s3('http://127.0.0.1:1/x.csv')", "table function s3"),
    ],
)
def test_what_reaches_outside_the_store_is_refused(store: Store, sql: str, reason: str) -> None:
    with pytest.raises(sqlguard.QueryRefused, match=reason):
        sqlguard.check(tree(store, sql))
