"""Views over a map's person rows that a kept map (``keeper.py``) keeps current by
correcting recorded figures (``ledger.py``, the bookkeeping) instead of counting every row
again: these are the queries. Each takes the view's SQL as a function of where to read the
rows, so the same text reads every live row or only the changed ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from touchpoint_collector.journey import ledger as tally_ledger
from touchpoint_collector.journey.ledger import Examples, Ledger, changes_sql, quantiles_sql
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


def quantiles(
    ctx: BuildContext,
    name: str,
    values: Callable[[str], str],
    keys: list[str],
    levels: Sequence[float],
    *,
    flags: bool = True,
    **params: Any,
) -> dict[tuple[Any, ...], tuple[int, list[int]]]:
    """Per key of `values` (given where to read the person rows, its rows are the
    `keys`, ``v`` and ``sign``): how many values, and each level's exact quantile
    (ClickHouse's ``quantileExact``). `flags`: False while the ended flags' inputs
    are not settled (the values must not depend on them).

    With a kept map's ledger, from the windows of sorted values it kept around each
    quantile, moved by the values that changed (``ledger.merge_spread``); otherwise,
    or when a window ran out, from every live row (and recorded)."""
    book = ctx.ledger
    if book is None:
        rows = ctx.rows(quantiles_sql(values(ctx.live), keys, levels, windows=False), **params)
        width = len(keys)
        return {
            tuple(row[:width]): (int(row[width]), [int(q) for q in row[width + 1]])
            for row in rows
            if row[width]
        }
    sig = tally_ledger.signature(lambda rows: f"{values(rows)} {levels!r}", ctx.params(**params))
    kept = book.spreads.get(name)
    if book.change is not None and kept is not None and kept.signature == sig:
        changed = _changed_rows(ctx, book, flags=flags)
        rows = ctx.rows(changes_sql(values(changed), keys), **params)
        lost = tally_ledger.merge_spread(kept, rows, len(keys), levels)
        if not lost:
            book.corrected.append(name)
            return tally_ledger.quantiles_of(kept, levels)
        if len(keys) == 1 and all(isinstance(key, int) for (key,) in lost):
            # Count only those keys again: the values are still read from every row,
            # but only theirs are sorted and sent.
            listed = ", ".join(str(int(key)) for (key,) in lost)
            again = f"SELECT * FROM ({{}}) WHERE {keys[0]} IN ({listed})"
            rows = ctx.rows(
                quantiles_sql(again.format(values(ctx.live)), keys, levels, windows=True),
                **params,
            )
            fresh = tally_ledger.record_spread(sig, rows, len(keys))
            kept.counts.update(fresh.counts)
            kept.windows.update(fresh.windows)
            book.recounted.append(f"{name} ({len(lost)} of {len(kept.counts)} keys)")
            return tally_ledger.quantiles_of(kept, levels)
    rows = ctx.rows(quantiles_sql(values(ctx.live), keys, levels, windows=True), **params)
    kept = tally_ledger.record_spread(sig, rows, len(keys))
    book.spreads[name] = kept
    book.recounted.append(name)
    return tally_ledger.quantiles_of(kept, levels)


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
    journeys) stay in a table: a build adds the change's counts to it and ranks the
    keys by their totals, naming only those that can make the list."""
    order = f"ORDER BY n DESC, {names} ASC LIMIT {{limit:UInt32}}"
    listed = "".join(f", {column}" for column in sums)
    book = ctx.ledger
    if book is None:
        return ctx.rows(
            f"SELECT key, n{listed} FROM ({grouped(ctx.live)}) WHERE n > 0 {order}",
            **params,
            limit=limit,
        )
    sig = tally_ledger.signature(grouped, ctx.params(**params))
    kept = book.ranks.get(name)
    if book.change is not None and kept is not None and kept.signature == sig:
        table = kept.table
        changed = grouped(_changed_rows(ctx, book))
        ctx.command(
            f"INSERT INTO {table} SELECT cityHash64(key) AS h, * FROM ({changed})",
            ctx.params(**params),
        )
        book.corrected.append(name)
        _compact_ranking(ctx, kept, sums)
    else:
        table = quote_ident(f"{book.home}_{name}")
        ctx.command(f"DROP TABLE IF EXISTS {table} SYNC")
        ctx.command(
            f"CREATE TABLE {table} ENGINE = Memory AS "
            f"SELECT cityHash64(key) AS h, * FROM ({grouped(ctx.live)})",
            ctx.params(**params),
        )
        rows = int(ctx.rows(f"SELECT count() FROM {table}")[0][0])
        book.ranks[name] = tally_ledger.Ranking(sig, table, rows)
        book.recounted.append(name)
    totals = "".join(f", sum({column}) AS {column}_" for column in sums)
    # Only keys with at least the list's smallest count can make it, and only those
    # need their key read and named (keys sharing a 64-bit hash would count as one).
    counts = f"SELECT h, sum(n) AS n_{totals} FROM {table} GROUP BY h HAVING n_ > 0"
    candidates = f"""SELECT * FROM ({counts}) WHERE n_ >= (
        SELECT min(n_) FROM ({counts} ORDER BY n_ DESC LIMIT {{limit:UInt32}}))"""
    return ctx.rows(
        f"""SELECT key_ AS key, n_ AS n{"".join(f", {c}_ AS {c}" for c in sums)}
        FROM ({candidates}) AS c
        JOIN (
            SELECT h, any(key) AS key_ FROM {table}
            WHERE h IN (SELECT h FROM ({candidates})) GROUP BY h
        ) AS k ON k.h = c.h
        {order}""",
        **params,
        limit=limit,
    )


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
            f"{tally_ledger.changed_sql(quote_ident(ctx.table), book.change)}"
        )
        book.changed_rows, book.moved_added = table, False
    before, now = (book.as_of_ms, book.end_after_ms), (ctx.as_of_ms, ctx.end_after_ms)
    if flags and not book.moved_added:
        dead = quote_ident(ctx.dead) if ctx.dead else ""
        moved = tally_ledger.moved_sql(quote_ident(ctx.table), dead, book.change, before, now)
        if moved:
            ctx.command(f"INSERT INTO {table} {moved}")
        book.moved_added = True
    return tally_ledger.signed_rows(table, before, now)


def _bounded(params: dict[str, Any], examples: Examples | None) -> dict[str, Any]:
    """`params`, with no removed persons to list (every live row has sign 1)."""
    return {**params, "ex_keys": [], "ex_bounds": []} if examples else params
