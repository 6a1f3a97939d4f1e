"""A kept map's counts, corrected by what an update changed instead of counted again.

Most of a map's figures are sums over person rows: persons at a node, transitions of an
edge, persons who dropped off after a touchpoint. When an update replaces some rows, the
new sum is the old one, less what the replaced rows contributed, plus what their new
rows contribute. So a view written over signed rows (``sum(sign)`` for ``count()``,
``sumIf(sign, c)`` for ``countIf(c)``) runs once over every live row (a full build, and
the "record") and afterwards only over the rows that changed: the replaced rows with
sign -1, the new ones with +1. A few hundred thousand rows instead of a million.

Two things change figures without changing a row:

* whether a journey has ended: it depends on "now" and on the end-after threshold, which
  both move between builds. Rows whose ended flags differ between the previous build's
  values and this one's enter the change once with each (-1 old, +1 new), which is why
  the rows carry ``_as_of`` and ``_end_after`` as columns rather than as parameters;
* a view's parameters (the node buckets of the flow, a touchpoint list): when they differ
  from the recorded ones, the view is counted again over every live row.

Example persons (the smallest few ids of the affected ones) are not a sum. A view keeps
more candidates than it shows (:data:`CANDIDATES`), drops the replaced rows' persons and
merges the new rows' ones; when too few are left to show, the view is counted again.

Exact medians and percentiles are not sums either: per key and level, the ledger keeps
the sorted values around the rank (a :class:`Window`), which the change's values move;
a key whose rank leaves its window is counted again. Path counts (a key per journey) are
kept in ClickHouse tables instead (:class:`Ranking`). The queries are in
``counting.py``; this module is the bookkeeping, pure Python, and
``docs/journey-map.md`` ("The views count only the changed rows") the whole design.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 5
"""Example persons a pain point shows."""
CANDIDATES = 20
"""Example persons a kept view holds per key: a replaced row's person leaving them costs
one, and only running out of them costs a recount."""
SOURCE = "__rows__"
"""Where a view's SQL reads its rows, when the view is compared with what was recorded."""
MOVING_PARAMS = frozenset({"as_of_ms", "end_after_ms", "ex_keys", "ex_bounds", "tp_names"})
"""Parameters that change between builds without making the recorded figures wrong:
the ended flags follow them through the change's rows, the bounds are the ledger's own,
and new touchpoint names only add codes (a kept view is keyed by code, never by name)."""


@dataclass(frozen=True)
class Change:
    """The rows of a kept table that an update replaced and added."""

    killed: str
    """Table of the ``rid`` of the rows replaced by this update ("" when none)."""
    born_from: int
    """Rows with a ``rid`` from here on were added by this update."""


@dataclass
class Recorded:
    """A view's figures as of the previous build, by key."""

    signature: tuple[Any, ...]
    rows: dict[tuple[Any, ...], list[Any]]
    examples: dict[tuple[Any, ...], list[str]] = field(default_factory=dict)
    """The candidate example persons of each key, smallest first."""


RANK_MARGIN = 1000
"""Keys a ranked view keeps in order beyond those it shows (:class:`Ranking`)."""


@dataclass
class Ranking:
    """A ranked view's kept counts: a table of (key hash, key, count, sums) rows, one per
    key as recorded and one more per key and change since; and the leading keys' totals.

    With about one key per journey, ranking the table's totals costs a full-map read at
    every build. Instead the ranking keeps its best keys (:data:`RANK_MARGIN` more than
    it shows) with their totals in `top`, and in `bound` the place of the best key left
    out. A change's keys get their totals from the table by hash (a few of its rows):
    those in `top` are updated there, and those now ranked before `bound` join it. The
    keys left out did not change, so none of them ranks before `bound`, and the list is
    right as long as its last key still ranks before `bound`; otherwise the table is
    ranked again."""

    signature: tuple[Any, ...]
    table: str
    recorded_rows: int
    top: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    """Per key hash: (key, count, sums..., name), totals over every change so far."""
    bound: tuple[int, str] | None = None
    """The place (:func:`place`) of the best key not in `top`; None: every key is."""


@dataclass
class Ledger:
    """Every tallied view's figures as of a kept map's previous build."""

    views: dict[str, Recorded] = field(default_factory=dict)
    as_of_ms: int = 0
    end_after_ms: int = 0
    """The ended flags' inputs at the previous build."""
    change: Change | None = None
    """This build's change; None when it is a full build (record every view)."""
    changed_rows: str = ""
    """The table holding this build's change's rows, once made (dropped after it)..."""
    moved_added: bool = False
    """... and whether the rows whose ended flags moved are in it yet."""
    spreads: dict[str, Spread] = field(default_factory=dict)
    """Every kept quantile view's values."""
    home: str = ""
    """The kept map's table prefix: ranked views keep their counts in tables named by it."""
    ranks: dict[str, Ranking] = field(default_factory=dict)
    """Every ranked view's table (see ``counting.ranked``)."""
    extremes: tuple[int, int] | None = None
    """The live rows' first and last event times (ms) as of the previous build, when
    they had any (``counting.extremes``)."""
    corrected: list[str] = field(default_factory=list)
    """The views this build counted over the change only, and those it counted again
    over every live row (for logs, tests and the benchmark)."""
    recounted: list[str] = field(default_factory=list)
    value_changes: dict[str, list[tuple[Any, ...]] | None] = field(default_factory=dict)
    """Per quantile view run in this build: its change's (keys, value, count change) rows
    when it was corrected, None when it was counted again (its table then holds one row
    per value). A view over another's values (``counting.Rekeyed``) starts from these."""

    def untouched(self) -> list[str]:
        """The kept views this build neither corrected nor counted again: their figures
        miss its change, so the next build must count them again."""
        done = {name.split(" (")[0] for name in [*self.corrected, *self.recounted]}
        return sorted((self.views.keys() | self.spreads.keys() | self.ranks.keys()) - done)


@dataclass(frozen=True)
class Examples:
    """Where a view's example persons are among its columns: `column` holds the smallest
    :data:`CANDIDATES` affected persons among rows of sign +1, the next column the
    persons among rows of sign -1 (at most ``ex_bounds`` of their key), and column
    `count` the number of affected persons. Only `column` is returned."""

    column: int
    count: int


def signature(sql: Callable[[str], str], params: dict[str, Any]) -> tuple[Any, ...]:
    kept = tuple(sorted((k, repr(v)) for k, v in params.items() if k not in MOVING_PARAMS))
    return (sql(SOURCE), kept)


def record(
    sig: tuple[Any, ...], rows: Sequence[tuple[Any, ...]], keys: int, examples: Examples | None
) -> Recorded:
    kept = Recorded(signature=sig, rows={})
    for row in rows:
        key, values = tuple(_hashable(v) for v in row[:keys]), list(row[keys:])
        if examples is not None:
            at = examples.column - keys
            kept.examples[key] = sorted(values[at])
            values[at : at + 2] = [None, None]
        kept.rows[key] = values
    return kept


def merge(
    kept: Recorded, rows: Sequence[tuple[Any, ...]], keys: int, examples: Examples | None
) -> bool:
    """Add the change's `rows` to `kept`; False when its example persons ran out."""
    for row in rows:
        key, values = tuple(_hashable(v) for v in row[:keys]), list(row[keys:])
        old = kept.rows.get(key)
        total = values if old is None else [_add(a, b) for a, b in zip(old, values, strict=True)]
        if examples is not None:
            at = examples.column - keys
            count_at = examples.count - keys
            old_count = 0 if old is None else int(old[count_at])
            found = _examples(
                kept.examples.get(key, []),
                old_count,
                added=values[at],
                removed=values[at + 1],
                count=int(total[count_at]),
            )
            if found is None:
                return False
            kept.examples[key] = found
            total[at : at + 2] = [None, None]
        if keys and not total[0]:
            kept.rows.pop(key, None)  # the first value is the key's row count: gone
            kept.examples.pop(key, None)
        else:
            kept.rows[key] = total
    return True


def rows_of(kept: Recorded, keys: int, examples: Examples | None) -> list[tuple[Any, ...]]:
    """The view's rows, by key, as its SQL returns them over all live rows (the example
    column the first :data:`EXAMPLES`; the removed-persons column left out)."""
    out = []
    for key in sorted(kept.rows):
        values = list(kept.rows[key])
        if examples is not None:
            at = examples.column - keys
            values[at : at + 2] = [kept.examples[key][:EXAMPLES]]
        out.append((*(_unhashable(k) for k in key), *values))
    return out


def bounds(kept: Recorded) -> tuple[list[str], list[str]]:
    """Per key, the largest person whose removal can matter: its last candidate (when the
    candidates are all of the key's affected persons, every removed one is at most that
    too). The ``ex_keys`` / ``ex_bounds`` parameters of a change's query."""
    names = [str(key[0]) for key in kept.examples]
    return names, [found[-1] if found else "" for found in kept.examples.values()]


def _examples(
    old: list[str], old_count: int, added: list[str], removed: list[str], count: int
) -> list[str] | None:
    """The smallest affected persons after the change, as far as `old` (the smallest of
    `old_count` before it) and the change's persons tell; None when fewer than a view
    shows. Invariant: the list is always the smallest persons of the affected set."""
    gone = set(removed)
    left = [p for p in old if p not in gone]
    if len(old) == old_count:  # held them all: every added one counts
        found = sorted([*left, *added])
    elif left:
        top = left[-1]
        found = sorted([*left, *(p for p in added if p < top)])
    else:
        return None
    found = found[:CANDIDATES]
    return found if len(found) >= min(EXAMPLES, count) else None


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, list):
        width = max(len(a), len(b))
        a = a + [0] * (width - len(a))
        b = list(b) + [0] * (width - len(b))
        return [_add(x, y) for x, y in zip(a, b, strict=True)]
    if a is None:
        return b
    return a + b


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _unhashable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# -- rankings ---------------------------------------------------------------------------------


def place(count: int, name: str) -> tuple[int, str]:
    """Where a key ranks: by count, largest first, then by name (``ORDER BY n DESC, name
    ASC``; ClickHouse compares strings as bytes, which for UTF-8 is Python's order)."""
    return (-int(count), name)


def keep_ranking(
    ranking: Ranking, rows: Sequence[tuple[Any, ...]], bound: tuple[int, str] | None
) -> None:
    """Keep `rows` ((hash, key, count, sums..., name)) as the leading keys, and `bound` as
    the place of the best of the others (None: there are none)."""
    ranking.top = {int(row[0]): tuple(row[1:]) for row in rows}
    ranking.bound = bound


def merge_ranking(ranking: Ranking, rows: Sequence[tuple[Any, ...]], depth: int) -> None:
    """Take the totals `rows` ((hash, key, count, sums..., name)) of keys a change moved:
    every one in `top`, and the others that now rank before `bound`. Past twice `depth`
    keys, the last ones leave `top`, and `bound` moves up to the best of them."""
    top = ranking.top
    for row in rows:
        if int(row[2]) > 0:
            top[int(row[0])] = tuple(row[1:])
        else:
            top.pop(int(row[0]), None)
    if len(top) <= 2 * depth:
        return
    ordered = sorted(top.items(), key=lambda item: place(item[1][1], item[1][-1]))
    for h, _ in ordered[depth:]:
        del top[h]
    first_out = place(ordered[depth][1][1], ordered[depth][1][-1])
    ranking.bound = first_out if ranking.bound is None else min(ranking.bound, first_out)


def top_of(ranking: Ranking, limit: int, *, bounded: bool = True) -> list[tuple[Any, ...]] | None:
    """The first `limit` keys as (key, count, sums...); None when the keys kept cannot
    tell them (the table must be ranked again). Not `bounded`: the first of those kept,
    whatever the bound (right after ranking the table, when the last key shown ties in
    count and name with the best key left out: either may show, as in a one-off build,
    whose ``ORDER BY`` picks one of them arbitrarily)."""
    found = sorted(ranking.top.values(), key=lambda v: place(v[1], v[-1]))
    if bounded and limit and ranking.bound is not None:
        last = place(found[limit - 1][1], found[limit - 1][-1]) if len(found) >= limit else None
        if last is None or last >= ranking.bound:
            return None
    return [v[:-1] for v in found[:limit]]


# -- exact quantiles -------------------------------------------------------------------------

WINDOW_MIN = 500
WINDOW_SHARE = 50
"""A kept quantile holds, per key and level, the sorted values around its rank: at least
:data:`WINDOW_MIN` and 1/:data:`WINDOW_SHARE` of the key's values on each side. A change
moves the rank by at most its own share of the key's values, usually much less (as many
leave below it as enter); a key whose window it leaves is counted again, alone."""


@dataclass
class Window:
    """The values at sorted positions ``lo`` to ``lo + len(values) - 1`` of a key's."""

    lo: int
    values: list[int]


@dataclass
class Spread:
    """A quantile view's values as of the previous build: per key, how many, and a window
    per level; and where to count a key whose window ran out again."""

    signature: tuple[Any, ...]
    counts: dict[tuple[Any, ...], int]
    windows: dict[tuple[Any, ...], list[Window]]
    table: str = ""
    """Every value as of some build, as (keys, ``v``, ``c``) rows, a value's count the sum
    of its ``c``: made with the view's record, and given each change's counts
    (``pending`` until a recount needs them), so that counting a key again reads only
    that key's values instead of every live person row."""
    pending: list[tuple[Any, ...]] = field(default_factory=list)
    """Changes' (keys, value, count change) rows not written to `table` yet: most builds
    recount nothing, and writing them costs a statement."""
    stored: int = 0
    """Rows in `table`..."""
    compacted: int = 0
    """... and after it was last summed up."""
    keys: tuple[str, ...] = ()
    """The key columns of `table`."""


def rank(level: float, n: int) -> int:
    """The sorted position ClickHouse's ``quantileExact`` returns (``level * n``,
    truncated; the last for level 1)."""
    return int(level * n) if level < 1 else n - 1


def record_spread(sig: tuple[Any, ...], rows: Sequence[tuple[Any, ...]], keys: int) -> Spread:
    spread = Spread(signature=sig, counts={}, windows={})
    for row in rows:
        key, n, per_level = tuple(_hashable(v) for v in row[:keys]), int(row[keys]), row[keys + 1]
        if n:
            spread.counts[key] = n
            spread.windows[key] = [Window(int(lo), list(found)) for lo, found in per_level]
    return spread


def merge_spread(
    spread: Spread, rows: Sequence[tuple[Any, ...]], keys: int, levels: Sequence[float]
) -> set[tuple[Any, ...]]:
    """Apply the change's (key, value, count change) `rows`; the keys whose windows can no
    longer tell their quantiles (to be counted again), which it leaves out."""
    changes: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for row in rows:
        key = tuple(_hashable(v) for v in row[:keys])
        changes.setdefault(key, []).append((int(row[keys]), int(row[keys + 1])))
    lost: set[tuple[Any, ...]] = set()
    for key, found in changes.items():
        before = spread.counts.get(key, 0)
        n = before + sum(c for _, c in found)
        spread.counts.pop(key, None)
        windows = spread.windows.pop(key, None) or [Window(0, []) for _ in levels]
        if n <= 0:
            if n < 0:
                lost.add(key)
            continue
        for level, window in zip(levels, windows, strict=True):
            if not _shift(window, before, found):
                break
            at = rank(level, n) - window.lo
            if not 0 <= at < len(window.values):
                break
            _trim(window, at, n)
        else:
            spread.counts[key], spread.windows[key] = n, windows
            continue
        lost.add(key)
    return lost


def quantiles_of(
    spread: Spread, levels: Sequence[float]
) -> dict[tuple[Any, ...], tuple[int, list[int]]]:
    """Per key: its count and each level's quantile."""
    return {
        key: (
            n,
            [
                w.values[rank(level, n) - w.lo]
                for level, w in zip(levels, spread.windows[key], strict=True)
            ],
        )
        for key, n in spread.counts.items()
    }


def _shift(window: Window, before: int, found: list[tuple[int, int]]) -> bool:
    """Move `window` over the change `found` ((value, count change) pairs) of a key that
    had `before` values. Values below it only move its position; values within it enter
    or leave it; values above it do not matter."""
    values = window.values
    whole = window.lo == 0 and len(values) == before  # holds every value: all enter
    if not values and not whole:
        return False
    first, last = (values[0], values[-1]) if values else (0, 0)
    entering: list[int] = []
    leaving: dict[int, int] = {}
    for value, count in found:
        if not whole and value < first:
            window.lo += count
        elif whole or value <= last:
            if count > 0:
                entering.extend([value] * count)
            else:
                leaving[value] = leaving.get(value, 0) - count
    if window.lo < 0:
        return False
    for value, count in leaving.items():  # few: only the values within the window
        for _ in range(count):
            at = bisect.bisect_left(values, value)
            if at == len(values) or values[at] != value:
                return False  # a value the window should hold is not there: inconsistent
            del values[at]
    window.values = sorted(values + entering) if entering else values
    return True


def _trim(window: Window, at: int, n: int) -> None:
    """Keep a grown window to twice its size around the rank `at` (within it)."""
    side = max(WINDOW_MIN, n // WINDOW_SHARE)
    if len(window.values) <= 4 * side + 2:
        return
    start = max(at - 2 * side, 0)
    window.values = window.values[start : at + 2 * side + 1]
    window.lo += start
