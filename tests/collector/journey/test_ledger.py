"""The ledger's bookkeeping, against recounting: example candidates and signed sums."""

from __future__ import annotations

from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from touchpoint_collector.journey import ledger
from touchpoint_collector.journey.ledger import (
    CANDIDATES,
    EXAMPLES,
    Examples,
    Ranking,
    Spread,
    keep_ranking,
    merge,
    merge_ranking,
    merge_spread,
    place,
    quantiles_of,
    rank,
    record,
    record_spread,
    rows_of,
    top_of,
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


def windows_of(values: dict[int, list[int]], levels: tuple[float, ...], side: int) -> Spread:
    """What the recording query returns: per key, the sorted values around each rank."""
    rows = []
    for key, found in values.items():
        ordered = sorted(found)
        n = len(ordered)
        per_level = []
        for level in levels:
            lo = max(rank(level, n) - side, 0)
            per_level.append((lo, ordered[lo : lo + 2 * side + 1]))
        if n:
            rows.append((key, n, per_level))
    return record_spread(("sig",), rows, 1)


def exact(values: list[int], level: float) -> int:
    """ClickHouse's quantileExact: the value at position ``level * n`` (truncated)."""
    ordered = sorted(values)
    return ordered[int(level * len(ordered))]


VALUES = st.lists(st.integers(0, 30), max_size=40)


@given(
    start=st.dictionaries(st.integers(1, 3), VALUES, max_size=3),
    changes=st.lists(
        st.lists(st.tuples(st.integers(1, 4), st.integers(0, 30), st.integers(-3, 3)), max_size=8),
        max_size=5,
    ),
    side=st.integers(1, 4),
)
def test_quantile_windows_give_the_exact_quantiles(
    start: dict[int, list[int]], changes: list[list[tuple[int, int, int]]], side: int
) -> None:
    """Values leave and enter below, inside and above each window (ties included): the
    quantiles read from the windows equal those of all the values, or the merge names the
    keys it cannot tell any more, which are counted again."""
    levels = (0.5, 0.9)
    values = {key: list(found) for key, found in start.items() if found}
    spread = windows_of(values, levels, side)
    for change in changes:
        net: dict[tuple[int, int], int] = {}
        for key, value, count in change:
            have = values.setdefault(key, [])
            if count < 0:
                count = -min(-count, have.count(value))  # only values that are there leave
            for _ in range(abs(count)):
                (have.append if count > 0 else have.remove)(value)
            if count:
                net[(key, value)] = net.get((key, value), 0) + count
        rows = [(key, value, c) for (key, value), c in net.items() if c]
        values = {key: found for key, found in values.items() if found}
        with (
            mock.patch.object(ledger, "WINDOW_MIN", side),
            mock.patch.object(ledger, "WINDOW_SHARE", 1000),
        ):
            lost = merge_spread(spread, rows, 1, levels)
        # The keys it lost are counted again, alone.
        fresh = windows_of({key: values[key] for (key,) in lost if key in values}, levels, side)
        spread.counts.update(fresh.counts)
        spread.windows.update(fresh.windows)
        assert quantiles_of(spread, levels) == {
            (key,): (len(found), [exact(found, level) for level in levels])
            for key, found in values.items()
        }
        for (key,), windows in spread.windows.items():  # each window: a slice of them all
            ordered = sorted(values[key])
            for window in windows:
                assert window.values == ordered[window.lo : window.lo + len(window.values)]


def test_a_small_change_moves_the_window_without_recounting() -> None:
    values = {1: list(range(0, 1000, 10))}
    spread = windows_of(values, (0.5,), 5)
    # Two values below the median, one inside its window, one above; one leaves.
    rows = [(1, 3, 1), (1, 7, 1), (1, 501, 1), (1, 990, 1), (1, 20, -1)]
    assert merge_spread(spread, rows, 1, (0.5,)) == set()
    after = [*range(0, 1000, 10), 3, 7, 501, 990]
    after.remove(20)
    assert quantiles_of(spread, (0.5,)) == {(1,): (len(after), [exact(after, 0.5)])}


def test_a_window_s_end_values_leave_it() -> None:
    """The first and last values of a window are in it, not beside it."""
    values = list(range(100))
    spread = windows_of({1: values}, (0.5,), 2)
    ((window,),) = spread.windows.values()
    assert (window.lo, window.values) == (48, [48, 49, 50, 51, 52])
    assert merge_spread(spread, [(1, 52, -1), (1, 48, -1)], 1, (0.5,)) == set()
    assert (window.lo, window.values) == (48, [49, 50, 51])
    assert quantiles_of(spread, (0.5,)) == {(1,): (98, [50])}


# -- rankings ---------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "ab", "ba", "…"])


def ranked_rows(totals: dict[str, int]) -> list[tuple[object, ...]]:
    """What the ranking query returns: (hash, key, count, name), ranked."""
    found = [(hash(k), k, n, k) for k, n in totals.items() if n > 0]
    return sorted(found, key=lambda row: place(int(row[2]), str(row[3])))


def rank_again(ranking: Ranking, totals: dict[str, int], depth: int, by_count: bool) -> None:
    """What ``counting._rank`` keeps: the leading keys and the bound on the others, either
    by names (the first `depth` keys, the next one's place) or by counts alone (the keys
    counting more than the key after the first `depth`)."""
    rows = ranked_rows(totals)
    if len(rows) <= depth:
        keep_ranking(ranking, rows, None)
    elif by_count:
        cut = int(str(rows[depth][2]))
        keep_ranking(ranking, [r for r in rows if int(str(r[2])) > cut], place(cut, ""))
    else:
        keep_ranking(ranking, rows[:depth], place(int(str(rows[depth][2])), str(rows[depth][3])))


@given(
    start=st.dictionaries(KEYS, st.integers(1, 4)),
    changes=st.lists(st.dictionaries(KEYS, st.integers(-3, 3), max_size=4), max_size=8),
    limit=st.integers(0, 4),
    margin=st.integers(0, 3),
    by_count=st.booleans(),
)
def test_a_ranking_s_kept_keys_give_the_top_or_ask_for_a_recount(
    start: dict[str, int],
    changes: list[dict[str, int]],
    limit: int,
    margin: int,
    by_count: bool,
) -> None:
    """Whatever the changes, the kept keys either give the exact first `limit` keys or
    say they cannot (and the view ranks the table again)."""
    depth = limit + margin
    totals = dict(start)
    ranking = Ranking(signature=(), table="t", recorded_rows=len(totals))
    rank_again(ranking, totals, depth, by_count)
    for change in changes:
        for key, delta in change.items():
            totals[key] = totals.get(key, 0) + delta
        moved = [(hash(k), k, totals[k], k) for k in change]
        # The query returns the moved keys held, and those ranking before the bound.
        wanted = [
            row
            for row in moved
            if row[0] in ranking.top
            or ranking.bound is None
            or place(int(row[2]), str(row[3])) < ranking.bound
        ]
        merge_ranking(ranking, wanted, depth)
        truth = [row[1:3] for row in ranked_rows(totals)[:limit]]
        found = top_of(ranking, limit)
        if found is None:
            rank_again(ranking, totals, depth, by_count)
            found = top_of(ranking, limit)
            if found is None:  # by counts, too few keys count more than the cut
                rank_again(ranking, totals, depth, False)
                found = top_of(ranking, limit)
        assert found == truth
        assert len(ranking.top) <= max(2 * depth, len(totals))


def test_a_ranking_keeps_its_list_when_keys_below_it_change() -> None:
    totals = {"a": 5, "b": 4, "c": 1, "d": 1}
    ranking = Ranking(signature=(), table="t", recorded_rows=4)
    rank_again(ranking, totals, 2, by_count=False)
    assert ranking.bound == place(1, "c") and set(ranking.top) == {hash("a"), hash("b")}
    merge_ranking(ranking, [(hash("e"), "e", 2, "e")], 2)  # a new key before the bound
    assert top_of(ranking, 2) == [("a", 5), ("b", 4)]
    merge_ranking(ranking, [(hash("a"), "a", 1, "a")], 2)  # the leader falls past it
    assert top_of(ranking, 2) == [("b", 4), ("e", 2)]
    merge_ranking(ranking, [(hash("b"), "b", 1, "b")], 2)
    assert top_of(ranking, 2) == [("e", 2), ("a", 1)]  # "a" ranks before "c", the bound
    merge_ranking(ranking, [(hash("a"), "a", 0, "a"), (hash("b"), "b", 0, "b")], 2)
    # Second is now "c" or "d" (1 each, neither held): the table must be ranked again.
    assert top_of(ranking, 2) is None


def test_keys_tying_in_count_and_name_at_the_bound_still_give_a_list() -> None:
    """Two keys with one name (say a touchpoint named like a path) and one count, on either
    side of the bound: the bound cannot tell them apart, so only an unbounded read gives
    the list, with either key last (a one-off build's ``ORDER BY`` picks either too)."""
    ranking = Ranking(signature=(), table="t", recorded_rows=3)
    keep_ranking(ranking, [(1, "x", 5, "a"), (2, "y", 3, "a > b")], place(3, "a > b"))
    assert top_of(ranking, 2) is None
    assert top_of(ranking, 2, bounded=False) == [("x", 5), ("y", 3)]
    assert top_of(ranking, 1) == [("x", 5)]  # the key shown ranks before the bound
