"""What the analysts' SQL endpoint lets through, decided on ClickHouse's own parse tree.

``readonly = 2`` alone is not a boundary. It lets a query read and write any file the
collector can reach (``file()`` as a table or a scalar function, ``INSERT INTO FUNCTION
file(...)``, ``INTO OUTFILE``), fetch URLs (``url()``, which also outlives the time cap),
and lift the endpoint's row and time caps with its own ``SETTINGS``. The embedded engine
has no users or grants to narrow it, so every query is parsed first (``EXPLAIN AST``, which
runs nothing) and refused unless it is a read of the store: SELECT, SHOW, DESCRIBE,
EXPLAIN or EXISTS, with no SETTINGS or output file, and table functions that only make
rows or read the store's own tables.
"""

from __future__ import annotations

import re
from typing import Final

ALLOWED_ROOTS: Final = (
    "SelectWithUnionQuery",
    "SelectIntersectExceptQuery",
    "Explain",
    "Show",
    "DescribeQuery",
    "Exists",
)
TABLE_FUNCTIONS: Final = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "generaterandom",
        "values",
        "view",
        "merge",
        "null",
        "format",
        "loop",
    }
)
"""Lower-cased: they make rows, or read tables already in the store."""
FUNCTIONS_REFUSED: Final = frozenset({"file"})
"""Scalar functions that reach outside the store (``file`` reads a file into a string)."""

_NODE = re.compile(r"^( *)(\S+)(?: (\S+))?")


class QueryRefused(ValueError):
    """The query is not a read of the store; the message says what to change."""


def check(ast: str) -> None:
    """Refuse the query whose ``EXPLAIN AST`` text is `ast`, unless it only reads the store."""
    nodes = [_parse(line) for line in ast.splitlines() if line.strip()]
    if not nodes:
        raise QueryRefused("empty query")
    root = nodes[0][1]
    if not root.startswith(ALLOWED_ROOTS):
        raise QueryRefused(
            "this endpoint is read-only: SELECT, SHOW, DESCRIBE, EXPLAIN or EXISTS only"
        )
    ancestors: list[tuple[int, str]] = []  # (depth, kind) from the root down
    for depth, kind, name in nodes:
        while ancestors and ancestors[-1][0] >= depth:
            ancestors.pop()
        parent = ancestors[-1][1] if ancestors else ""
        ancestors.append((depth, kind))
        if kind == "Set":
            raise QueryRefused(
                "SETTINGS are not allowed here: the endpoint's row and time limits apply "
                "(pass ?final=0 to read rows as stored)"
            )
        # A statement's output file is a literal child of the statement itself, whatever
        # the statement (SELECT, EXPLAIN, SHOW, DESCRIBE, EXISTS all take INTO OUTFILE).
        if kind == "Literal" and (len(ancestors) == 2 or parent == "SelectWithUnionQuery"):
            raise QueryRefused("INTO OUTFILE is not allowed here")
        if kind != "Function":
            continue
        function = name.lower()
        under_table = parent == "TableExpression"
        if under_table and function not in TABLE_FUNCTIONS:
            raise QueryRefused(
                f"table function {name} reaches outside the store; query its tables instead"
            )
        if function in FUNCTIONS_REFUSED:
            raise QueryRefused(f"function {name} reaches outside the store")


def _parse(line: str) -> tuple[int, str, str]:
    """(depth, node kind, its name or value's first word) of one line of the tree."""
    found = _NODE.match(line)
    assert found is not None
    return len(found.group(1)), found.group(2), found.group(3) or ""
