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

Medians, percentiles and top lists are not kept here: those views read every live row
(``docs/journey-map.md``, "Keeping a map").
"""

from __future__ import annotations

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
MOVING_PARAMS = frozenset({"as_of_ms", "end_after_ms", "ex_keys", "ex_bounds"})
"""Parameters that change between builds without making the recorded figures wrong:
the ended flags follow them through the change's rows, the bounds are the ledger's own."""


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
    """The table holding this build's change's rows, once made (dropped after it)."""
    corrected: list[str] = field(default_factory=list)
    """The views this build counted over the change only, and those it counted again
    over every live row (for logs, tests and the benchmark)."""
    recounted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Examples:
    """Where a view's example persons are among its columns: `column` holds the smallest
    :data:`CANDIDATES` affected persons among rows of sign +1, the next column the
    persons among rows of sign -1 (at most ``ex_bounds`` of their key), and column
    `count` the number of affected persons. Only `column` is returned."""

    column: int
    count: int


def examples_sql(key: str, affected: str) -> str:
    """The two example columns of a view keyed by `key` (see :class:`Examples`): the
    smallest persons of `affected` rows added, and the removed ones that can matter."""
    return (
        f"groupArraySortedIf({CANDIDATES})(person, ({affected}) AND sign > 0) AS examples, "
        f"groupArrayIf(person, ({affected}) AND sign < 0 AND person <= transform(toString({key}), "
        "{ex_keys:Array(String)}, {ex_bounds:Array(String)}, '')) AS removed"
    )


def signature(sql: Callable[[str], str], params: dict[str, Any]) -> tuple[Any, ...]:
    kept = tuple(sorted((k, repr(v)) for k, v in params.items() if k not in MOVING_PARAMS))
    return (sql(SOURCE), kept)


def delta_source(
    table: str,
    dead: str,
    change: Change,
    before: tuple[int, int],
    now: tuple[int, int],
) -> str:
    """The rows that changed since the previous build, signed: replaced rows -1 and
    added ones +1, and rows whose ended flags moved once each way. `before` / `now`:
    (as-of, end-after) in ms. `dead`: the replaced rows' set ("" when none)."""
    live = f"rid NOT IN {dead}" if dead else "1"

    def rows(where: str, sign: int, flags: tuple[int, int]) -> str:
        as_of, end_after = flags
        return (
            f"SELECT *, toInt8({sign}) AS sign, toInt64({int(as_of)}) AS _as_of, "
            f"toInt64({int(end_after)}) AS _end_after FROM {table} WHERE {where}"
        )

    parts = [rows(f"rid >= {int(change.born_from)}", 1, now)]
    if change.killed:
        parts.append(rows(f"rid IN {change.killed}", -1, before))
    if before != now:
        (a0, e0), (a1, e1) = before, now
        # One pass finds them, and each comes out twice: -1 with the old flags, +1 new.
        parts.append(
            f"SELECT * EXCEPT (flip), toInt8(flip) AS sign, "
            f"if(flip < 0, toInt64({int(a0)}), toInt64({int(a1)})) AS _as_of, "
            f"if(flip < 0, toInt64({int(e0)}), toInt64({int(e1)})) AS _end_after "
            f"FROM {table} ARRAY JOIN [-1, 1] AS flip "
            f"WHERE rid < {int(change.born_from)} AND {live} AND arrayExists("
            f"x -> ({int(a0)} - x > {int(e0)}) != ({int(a1)} - x > {int(e1)}), jlast)"
        )
    return "(" + " UNION ALL ".join(parts) + ")"


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
