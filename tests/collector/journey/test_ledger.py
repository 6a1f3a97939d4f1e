"""The ledger's bookkeeping, against recounting: example candidates and signed sums."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from touchpoint_collector.journey.ledger import (
    CANDIDATES,
    EXAMPLES,
    Examples,
    merge,
    record,
    rows_of,
)

PERSONS = st.sets(st.text("abcdef", min_size=1, max_size=3), max_size=60)
CHANGES = st.lists(st.tuples(PERSONS, PERSONS), max_size=6)
KEY = (7,)
SHAPE = Examples(column=3, count=2)
"""Rows: key, population (the row count), affected, examples, removed persons."""


def recount(affected: set[str]) -> list[tuple[object, ...]]:
    """The view over every live row: three unaffected persons besides the affected."""
    return [(*KEY, len(affected) + 3, len(affected), sorted(affected)[:CANDIDATES], [])]


@given(start=PERSONS, changes=CHANGES)
def test_examples_stay_the_smallest_affected_persons(
    start: set[str], changes: list[tuple[set[str], set[str]]]
) -> None:
    """Each change replaces some affected persons' rows (sign -1) and adds rows (+1): a
    replaced person may be affected again, and new persons may be. The candidates must
    always be the smallest affected persons, at least as many as a map shows; when they
    cannot be, the view is recorded again from every row."""
    affected = set(start)
    kept = record(("sig",), recount(affected), 1, SHAPE)
    for replaced, added in changes:
        replaced &= affected
        added -= affected - replaced  # a person has one live row: added only if replaced
        now = (affected - replaced) | added
        found = kept.examples[KEY]
        bound = found[-1] if found else ""
        change = [
            (
                *KEY,
                len(now) - len(affected),
                len(now) - len(affected),
                sorted(added)[:CANDIDATES],
                sorted(p for p in replaced if p <= bound),
            )
        ]
        if not merge(kept, change, 1, SHAPE):
            kept = record(("sig",), recount(now), 1, SHAPE)
        affected = now
        assert rows_of(kept, 1, SHAPE) == [
            (*KEY, len(affected) + 3, len(affected), sorted(affected)[:EXAMPLES])
        ]
        found = kept.examples[KEY]
        assert found == sorted(affected)[: len(found)]


@given(values=st.lists(st.lists(st.integers(-5, 5), max_size=5), min_size=1, max_size=5))
def test_array_sums_add_element_wise(values: list[list[int]]) -> None:
    """The funnel's per-stage arrays: a change's arrays may be shorter (an empty change)."""
    kept = record(("sig",), [(1, values[0])], 0, None)
    total = list(values[0])
    for more in values[1:]:
        assert merge(kept, [(1, more)], 0, None)
        width = max(len(total), len(more))
        total = [
            (total[i] if i < len(total) else 0) + (more[i] if i < len(more) else 0)
            for i in range(width)
        ]
    assert rows_of(kept, 0, None) == [(len(values), total)]
