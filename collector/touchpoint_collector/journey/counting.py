"""Views over a map's person rows that a kept map (``keeper.py``) keeps current by
correcting recorded figures (``ledger.py``, the bookkeeping) instead of counting every row
again: these are the queries. Each takes the view's SQL as a function of where to read the
rows, so the same text reads every live row or only the changed ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from touchpoint_collector.journey import ledger as tally_ledger
from touchpoint_collector.journey.ledger import Examples, Ledger
from touchpoint_collector.journey.steps import PERSON_COLUMNS
from touchpoint_collector.store import quote_ident

if TYPE_CHECKING:
    from touchpoint_collector.journey.context import BuildContext


def tally(
    ctx: BuildContext,
    name: str,
    sql: Callable[[str], str],
    keys: int,
    *,
    examples: Examples | None = None,
    **params: Any,
) -> list[tuple[Any, ...]]:
    """Rows of a view of sums over signed person rows (`sql` given where to read them),
    by its first `keys` columns; the first column after those is the key's row count.

    With a kept map's ledger, counted over the rows that changed since the previous
    build and added to what it recorded then, when the view and its parameters are the
    same; otherwise over every live row, and recorded (``ledger``)."""
    book = ctx.ledger
    sig = tally_ledger.signature(sql, ctx.params(**params))
    kept = book.views.get(name) if book else None
    if book and book.change is not None and kept is not None and kept.signature == sig:
        names, limits = tally_ledger.bounds(kept)
        change = ctx.rows(sql(_changed_rows(ctx, book)), **params, ex_keys=names, ex_bounds=limits)
        if tally_ledger.merge(kept, change, keys, examples):
            book.corrected.append(name)
            return tally_ledger.rows_of(kept, keys, examples)
    rows = ctx.rows(sql(ctx.live), **_bounded(params, examples))
    kept = tally_ledger.record(sig, rows, keys, examples)
    if book is not None:
        book.views[name] = kept
        book.recounted.append(name)
    return tally_ledger.rows_of(kept, keys, examples)


@dataclass(frozen=True)
class Rekeyed:
    """A quantile view over the values of another (`source`, run earlier in the same
    build), each under a coarser key: `key_sql` selects this view's key columns from the
    source's, `key_of` maps a source key to this view's key in Python.

    Its change is the source's, rekeyed, rather than a statement over the changed rows,
    and a full build copies its values table from the source's rather than computing
    every live row's values again: the flow's edge times are the touchpoint transition
    times under node keys (at 10M events, a refresh of 1% spread over 10% of the persons
    spent 0.3 s computing them again)."""

    source: str
    key_sql: str
    key_of: Callable[[tuple[Any, ...]], tuple[Any, ...]]


def quantiles(
    ctx: BuildContext,
    name: str,
    values: Callable[[str], str],
    keys: list[str],
    levels: Sequence[float],
    *,
    flags: bool = True,
    of: Rekeyed | None = None,
    **params: Any,
) -> dict[tuple[Any, ...], tuple[int, list[int]]]:
    """Per key of `values` (given where to read the person rows, its rows are the
    `keys`, ``v`` and ``sign``, all integers): how many values, and each level's exact
    quantile (ClickHouse's ``quantileExact``). `flags`: False while the ended flags' inputs
    are not settled (the values must not depend on them). `of`: `values` are the source
    view's, and this view's keys are theirs rekeyed (:class:`Rekeyed`).

    With a kept map's ledger, from the windows of sorted values it kept around each
    quantile, moved by the values that changed (``ledger.merge_spread``); a key whose
    window ran out is counted again from the view's values table (``Spread.table``).
    Otherwise from every live row, and recorded."""
    if of is not None:
        values = _rekeyed_values(values, of.key_sql)
    book = ctx.ledger
    if book is None:
        rows = ctx.rows(quantiles_sql(values(ctx.live), keys, levels, windows=False), **params)
        width = len(keys)
        return {
            tuple(row[:width]): (int(row[width]), [int(q) for q in row[width + 1]])
            for row in rows
            if row[width]
        }
    source = book.spreads[of.source] if of is not None else None
    after = f" {source.signature!r}" if source is not None else ""
    sig = tally_ledger.signature(
        lambda rows: f"{values(rows)} {levels!r}{after}", ctx.params(**params)
    )
    kept = book.spreads.get(name)
    source_change = book.value_changes[of.source] if of is not None else None
    if (
        book.change is not None
        and kept is not None
        and kept.signature == sig
        and (of is None or source_change is not None)
    ):
        if of is None:
            changed = _changed_rows(ctx, book, flags=flags)
            rows = ctx.rows(changes_sql(values(changed), keys), **params)
        else:
            assert source_change is not None and source is not None
            rows = _rekey(source_change, len(source.keys), of.key_of)
        book.value_changes[name] = rows
        kept.pending.extend(rows)
        lost = tally_ledger.merge_spread(kept, rows, len(keys), levels)
        if lost or len(kept.pending) > PENDING_MAX:
            _store_pending(ctx, kept, keys)
        if not lost:
            book.corrected.append(name)
            return tally_ledger.quantiles_of(kept, levels)
        rows = ctx.rows(quantiles_sql(_stored_values(kept, keys, lost), keys, levels, windows=True))
        fresh = tally_ledger.record_spread(sig, rows, len(keys))
        kept.counts.update(fresh.counts)
        kept.windows.update(fresh.windows)
        book.recounted.append(f"{name} ({len(lost)} of {len(kept.counts)} keys)")
        return tally_ledger.quantiles_of(kept, levels)
    table = f"{book.home}_{name.replace('_', '')}values"  # a working table's name
    head = "".join(f"{k}, " for k in keys)
    ctx.command(f"DROP TABLE IF EXISTS {quote_ident(table)} SYNC")
    one_per_value = True  # each row of the table is one value (c = 1)
    if source is None:
        ctx.command(
            f"CREATE TABLE {quote_ident(table)} ENGINE = {_values_engine(ctx, keys)} AS "
            f"SELECT {head}v, toInt32(sign) AS c FROM ({values(ctx.live)})",
            ctx.params(**params),
        )
    else:
        assert of is not None
        # Counted again in this build, the source's table holds one row per value too;
        # corrected, it holds counts to sum (and changes still to write).
        one_per_value = source_change is None
        _store_pending(ctx, source, list(source.keys))
        ctx.command(
            f"CREATE TABLE {quote_ident(table)} ENGINE = {_values_engine(ctx, keys)} AS "
            f"SELECT {of.key_sql}, v, c FROM {quote_ident(source.table)}",
            ctx.params(**params),
        )
    kept = tally_ledger.Spread(signature=sig, counts={}, windows={}, table=table, keys=tuple(keys))
    every = f"SELECT {head}v FROM {quote_ident(table)}" if one_per_value else None
    rows = ctx.rows(
        quantiles_sql(every or _stored_values(kept, keys, None), keys, levels, windows=True)
    )
    recorded = tally_ledger.record_spread(sig, rows, len(keys))
    kept.counts, kept.windows = recorded.counts, recorded.windows
    if one_per_value:
        kept.stored = kept.compacted = sum(kept.counts.values())
    else:
        kept.stored = kept.compacted = int(
            ctx.rows(f"SELECT count() FROM {quote_ident(table)}")[0][0]
        )
    book.spreads[name] = kept
    book.value_changes[name] = None
    book.recounted.append(name)
    return tally_ledger.quantiles_of(kept, levels)


def _rekeyed_values(values: Callable[[str], str], key_sql: str) -> Callable[[str], str]:
    """The values of `values`, under the keys `key_sql` selects."""
    return lambda rows: f"SELECT {key_sql}, v, sign FROM ({values(rows)})"


def _rekey(
    rows: Sequence[tuple[Any, ...]],
    width: int,
    key_of: Callable[[tuple[Any, ...]], tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """A source view's change rows (`width` key columns, value, count change) under the
    keys `key_of` gives, summed where keys merge."""
    summed: dict[tuple[Any, ...], int] = {}
    for row in rows:
        at = (*key_of(tuple(row[:width])), row[width])
        summed[at] = summed.get(at, 0) + int(row[width + 1])
    return [(*at, count) for at, count in summed.items() if count]


def extremes(ctx: BuildContext) -> tuple[int, int] | None:
    """The live rows' first and last event times (ms); None when there are none.

    Not sums: with a kept map's ledger, the previous build's are moved by the rows the
    change added, unless it replaced a row holding one of them that no added row reaches
    (then every live row is read again). The rows replaced are usually those of the
    persons most recently active, which hold the last event; their new rows too."""
    book = ctx.ledger
    everything = f"SELECT count(), min(ts[1]), max(arrayMax(jlast)) FROM {ctx.persons}"
    kept = book.extremes if book is not None else None
    if book is not None and book.change is not None and kept is not None:
        first, last = kept
        found = ctx.rows(
            f"""SELECT countIf(sign > 0), minIf(ts[1], sign > 0), maxIf(arrayMax(jlast), sign > 0),
                   countIf(sign < 0 AND ts[1] <= {int(first)}),
                   countIf(sign < 0 AND arrayMax(jlast) >= {int(last)})
            FROM {_changed_rows(ctx, book, flags=False)}"""
        )[0]
        added, low, high, lost_first, lost_last = (int(v) for v in found)
        if (not lost_first or (added and low <= first)) and (
            not lost_last or (added and high >= last)
        ):
            book.extremes = (min(first, low), max(last, high)) if added else kept
            return book.extremes
    count, low, high = (int(v) for v in ctx.rows(everything)[0])
    found_extremes = (low, high) if count else None
    if book is not None:
        book.extremes = found_extremes
    return found_extremes


PENDING_MAX = 200_000
"""Change rows a quantile view holds in memory before writing them to its values table."""


def _values_engine(ctx: BuildContext, keys: list[str]) -> str:
    """The kept table's engine: in memory, or on disk for the largest maps."""
    if ctx.engine() == "Memory":
        return "Memory"
    return f"MergeTree ORDER BY ({', '.join(keys)})" if keys else "MergeTree ORDER BY tuple()"


def _store_pending(ctx: BuildContext, kept: tally_ledger.Spread, keys: list[str]) -> None:
    """Write the pending changes to the values table; sum the table up once it has grown
    to twice its size as of the last time."""
    if kept.pending:
        # Inline numbers: clickhouse-connect's column inserts would import pandas, when
        # installed, on a process's first insert (0.4 s).
        listed = ",".join(f"({','.join(str(int(x)) for x in row)})" for row in kept.pending)
        ctx.command(
            f"INSERT INTO {quote_ident(kept.table)} ({', '.join([*keys, 'v', 'c'])}) VALUES {listed}"
        )
        kept.stored += len(kept.pending)
        kept.pending = []
    if kept.stored <= 2 * kept.compacted:
        return
    head = "".join(f"{k}, " for k in keys)
    table, fresh = quote_ident(kept.table), quote_ident(kept.table + "new")
    ctx.command(f"DROP TABLE IF EXISTS {fresh} SYNC")
    ctx.command(
        f"CREATE TABLE {fresh} ENGINE = {_values_engine(ctx, keys)} AS "
        f"SELECT {head}v, toInt32(n_) AS c FROM "
        f"(SELECT {head}v, sum(c) AS n_ FROM {table} GROUP BY {head}v HAVING n_ != 0)"
    )
    ctx.command(f"EXCHANGE TABLES {fresh} AND {table}")
    ctx.command(f"DROP TABLE {fresh} SYNC")
    kept.stored = kept.compacted = int(ctx.rows(f"SELECT count() FROM {table}")[0][0])


def _stored_values(
    kept: tally_ledger.Spread, keys: list[str], lost: set[tuple[Any, ...]] | None
) -> str:
    """The values of the keys `lost` (None: of every key) in the values table, one row per
    value (``v``)."""
    head = "".join(f"{k}, " for k in keys)
    where = "1"
    if lost is not None and len(keys) == 1:
        where = f"{keys[0]} IN ({', '.join(str(int(key[0])) for key in sorted(lost))})"
    elif lost is not None and keys:
        listed = ", ".join(f"({', '.join(str(int(p)) for p in key)})" for key in sorted(lost))
        where = f"({', '.join(keys)}) IN ({listed})"
    return f"""SELECT {head}v FROM (
        SELECT {head}v, sum(c) AS n FROM {quote_ident(kept.table)} WHERE {where}
        GROUP BY {head}v HAVING n > 0
    ) ARRAY JOIN range(toUInt64(n)) AS copy_"""


def ranked(
    ctx: BuildContext,
    name: str,
    grouped: Callable[[str], str],
    sums: list[str],
    names: str,
    limit: int,
    **params: Any,
) -> list[tuple[Any, ...]]:
    """The `limit` rows of `grouped` (given where to read the person rows: per ``key``,
    its count ``n`` and the columns `sums`, over signed rows) with the largest count,
    ties broken by `names` (SQL over ``key``) ascending.

    With a kept map's ledger, the counts per key (there can be as many keys as
    journeys) stay in a table, and the leading keys' totals in the ledger
    (:class:`~touchpoint_collector.journey.ledger.Ranking`): a build adds the change's
    counts to the table and reads back the totals of the keys they moved only."""
    order = f"ORDER BY n DESC, {names} ASC LIMIT {{limit:UInt32}}"
    listed = "".join(f", {column}" for column in sums)
    book = ctx.ledger
    if book is None:
        return ctx.rows(
            f"SELECT key, n{listed} FROM ({grouped(ctx.live)}) WHERE n > 0 {order}",
            **params,
            limit=limit,
        )
    depth = limit + tally_ledger.RANK_MARGIN
    sig = tally_ledger.signature(grouped, ctx.params(**params))
    kept = book.ranks.get(name)
    if book.change is not None and kept is not None and kept.signature == sig:
        moved = quote_ident(f"{ctx.prefix}_{name}moved")
        ctx.command(
            f"CREATE TABLE {moved} ENGINE = Memory AS "
            f"SELECT cityHash64(key) AS h, * FROM ({grouped(_changed_rows(ctx, book))})",
            ctx.params(**params),
        )
        try:
            ctx.command(f"INSERT INTO {kept.table} SELECT * FROM {moved}")
            sql, bound = _moved_totals_sql(kept, moved, sums, names)
            moved_totals = ctx.rows(sql, **params, **bound)
        finally:
            ctx.command(f"DROP TABLE IF EXISTS {moved} SYNC")
        tally_ledger.merge_ranking(kept, moved_totals, depth)
        book.corrected.append(name)
        _compact_ranking(ctx, kept, sums)
        found = tally_ledger.top_of(kept, limit)
        if found is not None:
            return found
        book.recounted.append(f"{name} (ranked again)")
    else:
        table = quote_ident(f"{book.home}_{name}")
        ctx.command(f"DROP TABLE IF EXISTS {table} SYNC")
        ctx.command(
            f"CREATE TABLE {table} ENGINE = Memory AS "
            f"SELECT cityHash64(key) AS h, * FROM ({grouped(ctx.live)})",
            ctx.params(**params),
        )
        stored = int(ctx.rows(f"SELECT count() FROM {table}")[0][0])
        kept = book.ranks[name] = tally_ledger.Ranking(sig, table, stored)
        book.recounted.append(name)
    _rank(ctx, kept, sums, names, limit, depth, params)
    found = tally_ledger.top_of(kept, limit)
    if found is None:
        # Ranked from every key, so the last key shown ties in count and name with the
        # best one left out (names collide only for touchpoints the taxonomy would refuse).
        found = tally_ledger.top_of(kept, limit, bounded=False)
    assert found is not None
    return found


def _rank(
    ctx: BuildContext,
    kept: tally_ledger.Ranking,
    sums: list[str],
    names: str,
    limit: int,
    depth: int,
    params: dict[str, Any],
) -> None:
    """Rank every key of `kept`'s table: keep the leading ones (at most `depth`) and the
    bound on the others (``ledger.Ranking``), naming as few keys as can be.

    The `depth` largest counts come first, unnamed (keys sharing a 64-bit hash would count
    as one). The keys counting more than the next largest count rank before every other
    key whatever their names, so naming them is enough, unless fewer than `limit` do:
    with nearly one key per journey, most keys count 1. Then the keys counting at least
    the list's smallest count are named and ranked (as many as tie with it)."""
    totals = "".join(f", sum({column}) AS {column}_" for column in sums)
    grouped = f"SELECT h, sum(n) AS n_{totals} FROM {kept.table} GROUP BY h HAVING n_ > 0"
    counts = ctx.rows(f"{grouped} ORDER BY n_ DESC LIMIT {{depth:UInt32}}", depth=depth + 1)
    cut = int(counts[depth][1]) if len(counts) > depth else 0
    leading = [row for row in counts if int(row[1]) > cut]
    if len(leading) >= limit or not cut:
        named = {
            int(h): (key, name)
            for h, key, name in ctx.rows(
                f"""SELECT h, key_ AS key, {names} AS name_ FROM (
                    SELECT h, any(key) AS key_ FROM {kept.table}
                    WHERE h IN {{rank_held:Array(UInt64)}} GROUP BY h
                )""",
                **params,
                rank_held=[int(row[0]) for row in leading],
            )
        }
        rows = [(h, named[int(h)][0], n, *rest, named[int(h)][1]) for h, n, *rest in leading]
        tally_ledger.keep_ranking(kept, rows, tally_ledger.place(cut, "") if cut else None)
        return
    # The candidates on the right: the join's hash table is built from them, and the
    # kept table is only streamed past it.
    candidates = f"{grouped} ORDER BY n_ DESC LIMIT {{limit:UInt32}} WITH TIES"
    rows = ctx.rows(
        f"""SELECT h, key_ AS key, n_ AS n{"".join(f", {c}_ AS {c}" for c in sums)},
                   {names} AS name_
        FROM (
            SELECT t.h AS h, any(t.key) AS key_, any(c.n_) AS n_{"".join(f", any(c.{c}_) AS {c}_" for c in sums)}
            FROM {kept.table} AS t JOIN ({candidates}) AS c ON t.h = c.h
            GROUP BY t.h
        )
        ORDER BY n DESC, name_ ASC LIMIT {{depth:UInt32}}""",
        **params,
        limit=limit,
        depth=depth + 1,
    )
    if len(rows) > depth:
        tally_ledger.keep_ranking(
            kept, rows[:depth], tally_ledger.place(rows[depth][2], rows[depth][-1])
        )
    else:  # every key counting at least the list's smallest count; the others count less
        least = min(int(row[2]) for row in rows)
        tally_ledger.keep_ranking(
            kept, rows, tally_ledger.place(least - 1, "") if least > 1 else None
        )


def _moved_totals_sql(
    kept: tally_ledger.Ranking, moved: str, sums: list[str], names: str
) -> tuple[str, dict[str, Any]]:
    """The totals of the keys in `moved` that the ranking must take: those it holds, and
    those that now rank before its bound (see ``ledger.merge_ranking``); and the
    query's parameters."""
    totals = "".join(f", sum({column}) AS {column}_" for column in sums)
    wanted, params, candidates = "1", {}, f"SELECT h FROM {moved}"
    enough = "1"
    if kept.bound is not None:
        wanted = (
            "h IN {rank_held:Array(UInt64)} OR n > {rank_n:Int64} "
            "OR (n = {rank_n:Int64} AND name_ < {rank_name:String})"
        )
        # What `wanted` asks of the numbers alone: only those rows are named.
        enough = "h IN {rank_held:Array(UInt64)} OR n_ >= {rank_n:Int64}"
        params = {"rank_held": list(kept.top), "rank_n": -kept.bound[0], "rank_name": kept.bound[1]}
        # A key left out ranked after the bound; unless the change raised its count, it
        # still does, and its total is not wanted (at 10M events, a change spread over
        # 10% of the persons raises 72,000 of 172,000 moved variants).
        candidates = (
            f"SELECT h FROM {moved} GROUP BY h "
            "HAVING sum(n) > 0 OR h IN {rank_held:Array(UInt64)}"
        )
    # The keys from `moved` (one row per key): reading them from the table would filter
    # its every row's. The totals go on the join's right, filtered by their numbers first:
    # joining every moved key's array to them, then naming each, took 0.21 s where the
    # totals took 0.06 s (10M events, spread; 108 of 72,000 totals wanted).
    sql = f"""SELECT h, key, n_ AS n{"".join(f", {c}_ AS {c}" for c in sums)}, {names} AS name_
        FROM (SELECT h, key FROM {moved}) AS m
        JOIN (
            SELECT h, sum(n) AS n_{totals} FROM {kept.table}
            WHERE h IN ({candidates}) GROUP BY h HAVING {enough}
        ) AS t USING (h)
        WHERE {wanted}"""
    return sql, params


def _compact_ranking(ctx: BuildContext, kept: tally_ledger.Ranking, sums: list[str]) -> None:
    """Once a ranked view's table has grown by its recorded size, sum it up again."""
    rows = int(ctx.rows(f"SELECT count() FROM {kept.table}")[0][0])
    if rows <= 2 * kept.recorded_rows:
        return
    fresh = quote_ident(kept.table.strip("`") + "new")
    totals = "".join(f", sum({column}) AS {column}" for column in sums)
    ctx.command(f"DROP TABLE IF EXISTS {fresh} SYNC")
    ctx.command(
        f"""CREATE TABLE {fresh} ENGINE = Memory AS
        SELECT h, any(key) AS key, sum(n) AS n{totals} FROM {kept.table} GROUP BY h
        HAVING sum(n) != 0{"".join(f" OR sum({c}) != 0" for c in sums)}"""
    )
    ctx.command(f"EXCHANGE TABLES {fresh} AND {kept.table}")
    ctx.command(f"DROP TABLE {fresh} SYNC")
    kept.recorded_rows = int(ctx.rows(f"SELECT count() FROM {kept.table}")[0][0])


def settle_changes(ctx: BuildContext) -> None:
    """Make this build's change rows, ended flags included, if a kept map's update has a
    change: views that run side by side then only read them."""
    book = ctx.ledger
    if book is not None and book.change is not None:
        _changed_rows(ctx, book)


def _changed_rows(ctx: BuildContext, book: Ledger, *, flags: bool = True) -> str:
    """This build's changed rows, signed, as views read them (``ledger.signed_rows``):
    kept in a table made once, so that each view reads a few hundred thousand rows
    instead of filtering every row of the kept table again. With `flags`, including
    the rows whose ended flags moved (known once the end-after threshold is)."""
    assert book.change is not None
    table = quote_ident(f"{ctx.prefix}_changed")
    if not book.changed_rows:
        ctx.command(
            f"CREATE TABLE {table} ENGINE = Memory AS "
            f"{changed_sql(quote_ident(ctx.table), book.change)}"
        )
        book.changed_rows, book.moved_added = table, False
    before, now = (book.as_of_ms, book.end_after_ms), (ctx.as_of_ms, ctx.end_after_ms)
    if flags and not book.moved_added:
        dead = quote_ident(ctx.dead) if ctx.dead else ""
        moved = moved_sql(quote_ident(ctx.table), dead, book.change, before, now)
        if moved:
            ctx.command(f"INSERT INTO {table} {moved}")
        book.moved_added = True
    return signed_rows(table, before, now)


def _bounded(params: dict[str, Any], examples: Examples | None) -> dict[str, Any]:
    """`params`, with no removed persons to list (every live row has sign 1)."""
    return {**params, "ex_keys": [], "ex_bounds": []} if examples else params


# -- the SQL they read the rows with ------------------------------------------------------


def examples_sql(key: str, affected: str) -> str:
    """The two example columns of a view keyed by `key` (see :class:`Examples`): the
    smallest persons of `affected` rows added, and the removed ones that can matter."""
    return (
        f"groupArraySortedIf({tally_ledger.CANDIDATES})(person, ({affected}) AND sign > 0) AS examples, "
        f"groupArrayIf(person, ({affected}) AND sign < 0 AND person <= transform(toString({key}), "
        "{ex_keys:Array(String)}, {ex_bounds:Array(String)}, '')) AS removed"
    )


def changed_sql(table: str, change: tally_ledger.Change) -> str:
    """The rows an update replaced (sign -1) and added (+1), as views read them: without
    the events a kept row also holds."""
    rows = f"SELECT {PERSON_COLUMNS}, toInt8"
    parts = [f"{rows}(1) AS sign FROM {table} WHERE rid >= {int(change.born_from)}"]
    if change.killed:
        parts.append(f"{rows}(-1) AS sign FROM {table} WHERE rid IN {change.killed}")
    return " UNION ALL ".join(parts)


def moved_sql(
    table: str,
    dead: str,
    change: tally_ledger.Change,
    before: tuple[int, int],
    now: tuple[int, int],
) -> str:
    """The other live rows with a journey whose ended flag differs between `before` and
    `now` ((as-of, end-after) in ms), each twice: sign -1 and +1 (``""``: none can).
    `dead`: the replaced rows' set ("" when none)."""
    if before == now:
        return ""
    (a0, e0), (a1, e1) = before, now
    live = f"rid NOT IN {dead}" if dead else "1"
    return (
        f"SELECT * EXCEPT (flip), toInt8(flip) AS sign FROM ("
        f"SELECT {PERSON_COLUMNS} FROM {table} "
        # The flip first: it keeps few rows (see `BuildContext.persons_where`).
        f"WHERE arrayExists(x -> ({int(a0)} - x > {int(e0)}) != ({int(a1)} - x > {int(e1)}), jlast) "
        f"AND rid < {int(change.born_from)} AND {live}"
        f") ARRAY JOIN [-1, 1] AS flip"
    )


def signed_rows(table: str, before: tuple[int, int], now: tuple[int, int]) -> str:
    """The changed rows of `table` as views read them: rows of sign -1 count as of the
    previous build (its ended flags' inputs), rows of +1 as of this one."""
    (a0, e0), (a1, e1) = before, now
    return (
        f"(SELECT *, if(sign < 0, toInt64({int(a0)}), toInt64({int(a1)})) AS _as_of, "
        f"if(sign < 0, toInt64({int(e0)}), toInt64({int(e1)})) AS _end_after FROM {table})"
    )


def quantiles_sql(values: str, keys: list[str], levels: Sequence[float], *, windows: bool) -> str:
    """Per key of `values` (rows: the keys, ``v``), the count and either each level's exact
    quantile or (`windows`) each level's window as (lo, sorted values)."""
    by = ", ".join(keys)
    group = f"GROUP BY {by}" if keys else ""
    head = f"{by}, " if keys else ""
    listed = ", ".join(repr(float(level)) for level in levels)
    if not windows:
        return f"SELECT {head}count() AS n, quantilesExact({listed})(v) FROM ({values}) {group}"
    lo = "greatest(toInt64(toUInt64(level_ * n_)) - w_, 0)"
    return f"""SELECT {head}n_, arrayMap(
                level_ -> ({lo}, arraySlice(sorted_, {lo} + 1, 2 * w_ + 1)), [{listed}])
        FROM (
            SELECT {head}count() AS n_, arraySort(groupArray(v)) AS sorted_,
                   greatest({tally_ledger.WINDOW_MIN}, intDiv(n_, {tally_ledger.WINDOW_SHARE})) AS w_
            FROM ({values}) {group}
        )"""


def changes_sql(values: str, keys: list[str]) -> str:
    """Per key of `values` (rows: the keys, ``v``, ``sign``), each value whose count
    changed, and by how much."""
    head = "".join(f"{k}, " for k in keys)
    return f"SELECT {head}v, sum(sign) AS c FROM ({values}) GROUP BY {head}v HAVING c != 0"
