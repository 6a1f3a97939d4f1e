"""Journey map benchmark: full build and refresh after 1% new events, at 1M and 10M events.

Each size runs in its own process on a fresh embedded store (clean peak-RSS numbers):
  * the event log is generated inside ClickHouse (deterministic hashes of row numbers):
    ~10 events per person, stages advancing with noise, back-and-forth moves, drop-offs,
    30% of persons starting anonymous and identified later;
  * once the bulk insert's background merges are idle (a collector-fed store merges
    continuously, never in one burst) and it is older than the keeper's one-minute inbox
    look-back (as a store's history is), a ``MapKeeper``'s first build over everything
    (the full map: every view), timed three times (the keeper forgets its map in between;
    the median is the ratios' denominator), with peak RSS;
  * 1% new events appended, one each for 10% of the persons (returning, weeks later),
    then the map refreshed by a ``MapKeeper`` that kept the first build's person rows and
    updates only the persons touched, appending new events to their rows where it can
    (timed: the refresh target), and built again from scratch by ``build_map`` for
    comparison (the two maps must be equal: checked);
  * 1% more, concentrated: ten each for 1% of the persons, refreshed and checked the same
    way (what a refresh costs depends little on how many persons the events touch);
  * steady: the same again four times, the first refresh untimed (it follows the check's
    scratch build); the next three are timed, each right after the one before, as a
    collector's keeper refreshes, and the median is reported (this VM is noisy); the map
    is checked after the last;
  * the floors: three refreshes with nothing new (the fixed cost of any refresh), and per
    refresh the share of all events its touched persons' rows hold, old and new (what a
    refresh that recomputes whole persons reads again);
  * anchors on the same 1M log, same run: one window-function directly-follows query in
    the engine, pandas groupby/shift, pm4py format_dataframe + discover_dfg (when installed:
    ``pip install pandas pm4py``).

Prints a table, writes bench/results/map.json.

    .venv/bin/python bench/map.py [--sizes 1000000,10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# Touchpoints per stage: the generator picks one by hash within the step's stage.
STAGE_TOUCHPOINTS = [
    ["ad_click", "social_engagement", "newsletter_signup", "site_visit"],
    ["product_viewed", "pricing_viewed", "demo_requested", "store_visit", "phone_call"],
    ["cart_added", "checkout_started", "purchase"],
    [
        "delivery_received",
        "support_contact",
        "feedback_given",
        "return_requested",
        "repeat_purchase",
    ],
    ["review_posted", "referral_made"],
]
FULL_RUNS = 3
"""First builds timed per size; the ratios divide by their median."""
IDLE_RUNS = 3
"""Refreshes with nothing new timed per size (their median is the fixed cost)."""
STAGES = ["awareness", "consideration", "purchase", "retention", "advocacy"]


def generate_sql(first: int, count: int, persons: int, seq_offset: int, tag: str = "b") -> str:
    """INSERT ... SELECT producing `count` events numbered from `first` (deterministic);
    their message ids start with `tag`."""
    tps = (
        "["
        + ",".join("[" + ",".join(f"'{t}'" for t in group) + "]" for group in STAGE_TOUCHPOINTS)
        + "]"
    )
    return f"""
    INSERT INTO events (message_id, source, type, event, touchpoint, stage, channel, person_id,
                        anonymous_id, user_id, group_id, previous_id, timestamp, received_at,
                        clock_skew_ms, score, properties, traits, context, integrations,
                        collector_id, ingest_seq)
    SELECT
        concat('{tag}-', toString(n)) AS message_id,
        if(h % 5 = 0, 'backend', 'web') AS source,
        'track' AS type,
        tp AS event,
        tp AS touchpoint,
        stages[stage_idx + 1] AS stage,
        if(h % 7 = 0, 'store', 'web') AS channel,
        if(anon, concat('anon-', toString(p)), concat('user-', toString(p))) AS person_id,
        if(anon, concat('anon-', toString(p)), '') AS anonymous_id,
        if(anon, '', concat('user-', toString(p))) AS user_id,
        '' AS group_id, '' AS previous_id,
        fromUnixTimestamp64Milli(toInt64(1767225600000 + (p % 86400) * 60000 + k * 3600000 * (1 + h % 48)), 'UTC') AS timestamp,
        now64(3, 'UTC') AS received_at,
        0 AS clock_skew_ms,
        if(tp = 'feedback_given', toFloat32(1 + h % 10), NULL) AS score,
        '{{}}' AS properties, '{{}}' AS traits, '{{}}' AS context, '{{}}' AS integrations,
        'bench' AS collector_id,
        {seq_offset} + n AS ingest_seq
    FROM (
        SELECT number + {first} AS n,
               n % {persons} AS p,
               intDiv(n, {persons}) AS k,
               cityHash64(n, 17) AS h,
               {STAGES!r} AS stages,
               least(4, greatest(0, toInt32(intDiv(k * 5, 10)) - if(h % 6 = 0, 1, 0))) AS stage_idx,
               {tps}[stage_idx + 1] AS group,
               group[1 + (h % length(group))] AS tp,
               (p % 10 < 3) AND k < 3 AS anon
        FROM numbers({count})
    )
    """


def worker(size: int, out_path: str) -> None:
    """One size, in its own process: generate, build, append 1%, build again."""
    from datetime import UTC, datetime

    import msgspec

    from touchpoint_collector.journey import build_map
    from touchpoint_collector.journey.keeper import INBOX_GRACE, MapKeeper
    from touchpoint_collector.migrations import migrate
    from touchpoint_collector.store import Store, quote_ident

    data = Path(tempfile.mkdtemp(prefix="tp-mapbench-"))
    result: dict[str, Any] = {"events": size}
    try:
        store = Store.open(f"chdb://{data / 'store'}", "touchpoint")
        migrate(store)
        persons = max(1, size // 10)
        started = time.perf_counter()
        store.command(generate_sql(0, size, persons, 0))
        store.command(
            f"""INSERT INTO identities (anonymous_id, user_id, source, kind, message_id, first_seen, received_at)
            SELECT concat('anon-', toString(number)), concat('user-', toString(number)), 'web', 'identify',
                   concat('id-', toString(number)), now64(3, 'UTC'), now64(3, 'UTC')
            FROM numbers({persons}) WHERE number % 10 < 3"""
        )
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        generated = time.perf_counter()
        result["settle_seconds"] = _settle(store)
        # A store's history is older than the keeper's inbox look-back (a rebuild re-reads
        # the inbox from a minute before the previous build): wait it out, or the refresh
        # would recompute everybody the bulk insert just wrote.
        time.sleep(max(0.0, INBOX_GRACE.total_seconds() + 1 - (time.perf_counter() - generated)))
        print(
            f"  generated {size:,} events for {persons:,} persons in {result['generate_seconds']} s"
            f" (background merges settled {result['settle_seconds']} s later)",
            file=sys.stderr,
            flush=True,
        )
        as_of = datetime(2026, 12, 1, tzinfo=UTC)
        rss_before = _rss_mib()
        # The ratios' denominator, the median of three first builds (the keeper forgets
        # its map in between): one run of the same build on this VM varies by half.
        keeper = MapKeeper(store)
        full_runs = []
        for run in range(FULL_RUNS):
            if run:
                keeper.forget()
            started = time.perf_counter()
            first = keeper.build(as_of=as_of)
            full_runs.append(time.perf_counter() - started)
            print(
                f"  full build {run + 1} of {FULL_RUNS}: {full_runs[-1]:.2f} s "
                f"({first.coverage.persons:,} persons)",
                file=sys.stderr,
                flush=True,
            )
        result["full_build_runs_seconds"] = [round(seconds, 2) for seconds in full_runs]
        result["full_build_seconds"] = round(statistics.median(full_runs), 2)
        result["persons"] = first.coverage.persons
        result["journeys"] = first.coverage.journeys

        stored = {"events": size}

        def refresh(key: str, new: int, insert: str, what: str, *, check: bool = True) -> float:
            """Insert `new` events, refresh the kept map (timed), and check it against a
            scratch build (timed too); results under `key`; the refresh's seconds."""
            store.command(insert)
            stored["events"] += new
            _settle(store)
            started = time.perf_counter()
            kept = msgspec.to_builtins(keeper.build(as_of=as_of))
            seconds = time.perf_counter() - started
            result[f"{key}_seconds"] = round(seconds, 2)
            last = keeper.last
            assert last is not None and last.mode == "incremental"
            result[f"{key}_persons_recomputed"] = last.persons_recomputed
            result[f"{key}_persons_appended"] = last.persons_appended
            result[f"{key}_views_recounted"] = last.views_recounted
            # The share of all events that the touched persons' rows hold, their old and
            # new events: what a refresh that recomputes whole persons reads and derives
            # again, and so the least share of a full build it can cost (untimed).
            state = keeper.kept
            assert state is not None
            added = store.query(
                f"SELECT sum(length(ev_ts)) FROM {quote_ident(state.table)} "
                f"WHERE rid >= {state.generation << 32}"
            ).result_rows[0][0]
            result[f"{key}_touched_share"] = round((2 * int(added) - new) / stored["events"], 3)
            result[f"{key}_timings"] = [
                [label, round(seconds, 3)]
                for label, seconds in sorted(last.timings, key=lambda t: -t[1])[:12]
            ]
            print(
                f"  refresh {result[f'{key}_seconds']} s after {what} "
                f"({last.persons_recomputed:,} persons updated, "
                f"{last.persons_appended:,} of them by appending)",
                file=sys.stderr,
                flush=True,
            )
            if check:
                started = time.perf_counter()
                once = msgspec.to_builtins(build_map(store, as_of=as_of))
                result[f"{key}_rebuild_seconds"] = round(time.perf_counter() - started, 2)
                result[f"{key}_equals_rebuild"] = all(
                    kept[k] == once[k] for k in kept if k not in {"built_at", "build_seconds"}
                )
            return seconds

        extra = max(1, size // 100)
        refresh(
            "refresh",
            extra,
            generate_sql(size * 3, extra, persons + extra // 10, size * 3),
            "1% new events, one each for 10% of the persons",
        )
        few = max(1, persons // 100)
        refresh(
            "concentrated",
            extra,
            generate_sql(10 * few, extra, few, size * 4, tag="c"),
            "1% more, ten each for 1% of the persons",
        )
        # Steady state: one more concentrated batch refreshed untimed (after the check's
        # scratch build above), then three more, each timed right after the one before.
        store.command(generate_sql(20 * few, extra, few, size * 5, tag="d"))
        stored["events"] += extra
        _settle(store)
        keeper.build(as_of=as_of)
        runs = [
            refresh(
                "steady",
                extra,
                generate_sql((30 + 10 * n) * few, extra, few, size * (6 + n), tag=tag),
                "1% more, ten each for 1% of the persons, right after another refresh",
                check=n == 2,
            )
            for n, tag in enumerate("efg")
        ]
        result["steady_runs_seconds"] = [round(seconds, 2) for seconds in runs]
        result["steady_seconds"] = round(sorted(runs)[1], 2)
        # A refresh with nothing new: what planning and running its ~45 statements costs
        # whatever the change, the floor under every refresh (median of three).
        idle = []
        for _ in range(IDLE_RUNS):
            started = time.perf_counter()
            keeper.build(as_of=as_of)
            idle.append(time.perf_counter() - started)
        result["idle_runs_seconds"] = [round(seconds, 3) for seconds in idle]
        result["idle_seconds"] = round(statistics.median(idle), 3)
        result["peak_rss_mib"] = round(_peak_rss_mib(), 1)
        result["rss_growth_during_builds_mib"] = round(_peak_rss_mib() - rss_before, 1)
        if size <= 2_000_000:
            result["anchors"] = anchors(store)
        store.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    Path(out_path).write_text(json.dumps(result))


def _settle(store: Any, limit: float = 300.0) -> float:
    """Wait for the background merges of the bulk insert to finish; seconds waited.

    The generator writes millions of rows in one statement, and ClickHouse then merges
    their parts for a while on the same two cores. A collector-fed store never sees such
    a burst (its parts merge continuously), so builds are timed once merges are idle.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        busy = store.query("SELECT count() FROM system.merges").result_rows[0][0]
        if not busy:
            break
        time.sleep(0.5)
    return round(time.perf_counter() - started, 1)


def anchors(store: Any) -> dict[str, float | str]:
    """The comparison points named in the issue, on the same log."""
    found: dict[str, float | str] = {}
    started = time.perf_counter()
    store.query(
        """SELECT a, b, count() FROM (
            SELECT touchpoint AS a, leadInFrame(touchpoint, 1, '') OVER w AS b FROM events
            WINDOW w AS (PARTITION BY person_id ORDER BY timestamp, ingest_seq
                         ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING))
        WHERE b != '' GROUP BY a, b""",
        settings={"final": 1},
    )
    found["clickhouse_window_dfg_seconds"] = round(time.perf_counter() - started, 3)
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        found["pandas"] = "not installed"
        return found
    frame = store.client.query_df(
        "SELECT person_id, touchpoint, timestamp, ingest_seq FROM events ORDER BY person_id, timestamp, ingest_seq"
    )
    started = time.perf_counter()
    ordered = frame.sort_values(["person_id", "timestamp", "ingest_seq"])
    ordered["next"] = ordered.groupby("person_id")["touchpoint"].shift(-1)
    ordered.dropna(subset=["next"]).groupby(["touchpoint", "next"]).size()
    found["pandas_groupby_shift_seconds"] = round(time.perf_counter() - started, 3)
    try:
        import pm4py
    except ImportError:
        found["pm4py"] = "not installed"
        return found
    started = time.perf_counter()
    log = pm4py.format_dataframe(
        frame.rename(columns={"ingest_seq": "seq"}),
        case_id="person_id",
        activity_key="touchpoint",
        timestamp_key="timestamp",
    )
    pm4py.discover_dfg(log)
    found["pm4py_format_discover_dfg_seconds"] = round(time.perf_counter() - started, 3)
    return found


def _heading(header: str) -> None:
    print(header)
    print("-" * len(header))


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(int(args.worker[0]), args.worker[1])
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"map benchmark at {size:,} events ...", file=sys.stderr, flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            out = handle.name
        subprocess.run([sys.executable, __file__, "--worker", str(size), out], check=True)
        rows.append(json.loads(Path(out).read_text()))
        os.unlink(out)
    _heading(
        f"{'events':>12} {'persons':>10} {'full build':>11} {'+1% refresh':>12} {'ratio':>6} "
        f"{'updated':>9} {'appended':>9} {'+1% rebuild':>12} {'same map':>9} "
        f"{'+1% to 1%':>10} {'ratio':>6} {'same map':>9} {'steady':>8} {'ratio':>6} "
        f"{'same map':>9} {'peak RSS':>9}"
    )
    for row in rows:
        ratio = row["refresh_seconds"] / row["full_build_seconds"]
        row["refresh_ratio"] = round(ratio, 3)
        concentrated = row["concentrated_seconds"] / row["full_build_seconds"]
        row["concentrated_ratio"] = round(concentrated, 3)
        steady = row["steady_seconds"] / row["full_build_seconds"]
        row["steady_ratio"] = round(steady, 3)
        print(
            f"{row['events']:>12,} {row['persons']:>10,} {row['full_build_seconds']:>10.2f}s "
            f"{row['refresh_seconds']:>11.2f}s {ratio:>6.3f} "
            f"{row['refresh_persons_recomputed']:>9,} {row['refresh_persons_appended']:>9,} "
            f"{row['refresh_rebuild_seconds']:>11.2f}s "
            f"{'yes' if row['refresh_equals_rebuild'] else 'NO':>9} "
            f"{row['concentrated_seconds']:>9.2f}s {concentrated:>6.3f} "
            f"{'yes' if row['concentrated_equals_rebuild'] else 'NO':>9} "
            f"{row['steady_seconds']:>7.2f}s {steady:>6.3f} "
            f"{'yes' if row['steady_equals_rebuild'] else 'NO':>9} "
            f"{row['peak_rss_mib']:>7.0f}Mi"
        )
    print()
    _heading(
        f"{'events':>12} {'nothing new':>12} {'ratio':>6} "
        f"{'touched share: +1%':>19} {'+1% to 1%':>10} {'steady':>7}"
    )
    for row in rows:
        idle = row["idle_seconds"] / row["full_build_seconds"]
        row["idle_ratio"] = round(idle, 3)
        shares = (row[f"{key}_touched_share"] for key in ("refresh", "concentrated", "steady"))
        print(
            f"{row['events']:>12,} {row['idle_seconds']:>11.2f}s {idle:>6.3f} "
            + " ".join(
                f"{share:>{width}.3f}" for share, width in zip(shares, (19, 10, 7), strict=True)
            )
        )
    print(
        "(a refresh that recomputes whole persons costs at least its fixed cost, 'nothing "
        "new', plus about the touched share of a full build's work)"
    )
    if len(rows) >= 2:
        growth = rows[-1]["full_build_seconds"] / rows[0]["full_build_seconds"]
        scale = rows[-1]["events"] / rows[0]["events"]
        print(f"cost grows x{growth:.1f} for x{scale:.0f} events")
    for row in rows:
        if "anchors" in row:
            print(f"anchors on {row['events']:,} events: {row['anchors']}")
            dfg = row["anchors"].get("clickhouse_window_dfg_seconds")
            print(
                f"  full map (every view) vs one DFG query: x{row['full_build_seconds'] / dfg:.1f}"
                if dfg
                else ""
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "map.json").write_text(
        json.dumps(
            {
                "benchmark": "map",
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS / 'map.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
