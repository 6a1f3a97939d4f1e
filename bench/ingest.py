"""Collector ingest benchmark: events/s into ClickHouse, acknowledgement latency, RSS, CPU.

Side by side in one run, on this machine:
  * ``bare``: an aiohttp handler that only decodes the same body with msgspec (the ceiling);
  * ``collector fsync=always`` and ``fsync=never``: the real collector on the embedded
    store, measured end to end until every event is visible in ClickHouse;
  * latency at half the measured fsync=always throughput (paced load).

The load comes from a separate process over loopback: batches of 100 events (5 properties
each, unique messageIds), several connections in flight. Prints a table and writes JSON to
bench/results/ingest.json.

    .venv/bin/python bench/ingest.py [--events 300000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 100


def make_body(start: int, run: str) -> bytes:
    events = ",".join(
        f'{{"type":"track","event":"Product Viewed","userId":"u{i % 50_000}",'
        f'"messageId":"{run}-{i}","timestamp":"2026-11-20T10:00:00Z",'
        f'"properties":{{"sku":"SKU-{i % 977}","price":19.99,"currency":"EUR",'
        f'"category":"shoes","position":{i % 7}}}}}'
        for i in range(start, start + BATCH)
    )
    return ('{"batch":[' + events + "]}").encode()


# -- load generator (separate process) ---------------------------------------------


async def _load(
    url: str, key: str, total: int, concurrency: int, rate: float, run: str, out: Any
) -> None:
    import aiohttp

    bodies = [make_body(i, run) for i in range(0, total, BATCH)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    interval = BATCH / rate if rate else 0.0
    started = time.perf_counter()
    sent = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if interval:
                due = started + sent * interval
                sent += 1
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            t0 = time.perf_counter()
            while True:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
                if status != 503 and status != 429:
                    break
                await asyncio.sleep(0.05)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    out.put(
        {
            "latencies": latencies,
            "statuses": statuses,
            "send_seconds": time.perf_counter() - started,
        }
    )


def _load_process(*args: Any) -> None:
    asyncio.run(_load(*args))


def run_load(
    url: str, key: str, total: int, concurrency: int, rate: float, run: str
) -> tuple[float, dict[str, Any]]:
    """Start the load process; returns (start time, result) when it finished sending."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_load_process, args=(url, key, total, concurrency, rate, run, out))
    started = time.perf_counter()
    proc.start()
    result = out.get()
    proc.join()
    return started, result


# -- servers -----------------------------------------------------------------------

BARE_SERVER = """
import asyncio, msgspec, sys
from aiohttp import web
from touchpoint_schemas.decode import RawBatch
decoder = msgspec.json.Decoder(RawBatch)
async def handle(request):
    body = await request.read()
    batch = decoder.decode(body)
    for raw in batch.batch:
        msgspec.json.decode(raw)
    return web.json_response({"success": True, "accepted": len(batch.batch)})
app = web.Application(client_max_size=1 << 20)
app.router.add_post("/v1/batch", handle)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening", runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_bare() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[1]
    return proc, f"http://127.0.0.1:{port}/v1/batch"


def start_collector(data_dir: Path, fsync: str) -> tuple[subprocess.Popen[str], str, str]:
    env = {
        **os.environ,
        "TOUCHPOINT_DATA_DIR": str(data_dir),
        "TOUCHPOINT_SERVER__PORT": "0",
        "TOUCHPOINT_WAL__FSYNC": fsync,
        "TOUCHPOINT_LOG_LEVEL": "warning",
        "TOUCHPOINT_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "touchpoint_collector.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    key = ""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("collector failed to start")
        if line.startswith("development write key"):
            key = line.rsplit(" ", 1)[1].strip()
        if line.startswith("Touchpoint collector listening on "):
            return proc, line.rsplit(" ", 1)[1].strip(), key


def count_events(base: str, read_key: str) -> int:
    request = urllib.request.Request(
        f"{base}/v1/query?final=0",
        data=json.dumps({"query": "SELECT count() FROM events"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {read_key}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(json.loads(response.read())["rows"][0][0])


def peak_rss_mib(pid: int) -> float:
    return proc_status(pid).get("VmHWM", 0) / 1024


def proc_status(pid: int) -> dict[str, int]:
    """The kB counters of /proc/<pid>/status (VmHWM, RssAnon, RssFile, ...)."""
    counters = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                counters[name] = int(value.split()[0])
    return counters


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (the engine's included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Peak private (RssAnon) and file-backed (RssFile: mapped libraries) resident memory,
    sampled every 20 ms: VmHWM alone does not say which of the two it was."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            status = proc_status(self.pid)
            self.anon = max(self.anon, status.get("RssAnon", 0))
            self.file = max(self.file, status.get("RssFile", 0))

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.anon / 1024, self.file / 1024


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def summarize(
    name: str, total: int, seconds: float, load: dict[str, Any], rss: float
) -> dict[str, Any]:
    lat = load["latencies"]
    return {
        "name": name,
        "events": total,
        "seconds": round(seconds, 3),
        "events_per_s": round(total / seconds),
        "ack_p50_ms": round(percentile(lat, 50) * 1000, 2),
        "ack_p99_ms": round(percentile(lat, 99) * 1000, 2),
        "statuses": load["statuses"],
        "peak_rss_mib": round(rss, 1),
    }


def bench_collector(fsync: str, total: int, concurrency: int, rate: float = 0.0) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="tp-bench-"))
    proc, base, key = start_collector(data_dir, fsync)
    try:
        read_key = (data_dir / "local-read.key").read_text().strip()
        idle = proc_status(proc.pid)
        sampler = RssSampler(proc.pid)
        cpu_before = cpu_seconds(proc.pid)
        started, load = run_load(
            f"{base}/v1/batch", key, total, concurrency, rate, f"r{fsync}{rate}"
        )
        while count_events(base, read_key) < total:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu_before
        anon, file = sampler.stop()
        rss = peak_rss_mib(proc.pid)
        label = f"collector fsync={fsync}" + (f" paced {rate / 1000:.0f}k/s" if rate else "")
        row = summarize(label, total, seconds, load, rss)
        row["peak_rss_anon_mib"] = round(anon, 1)
        row["peak_rss_file_mib"] = round(file, 1)
        row["idle_rss_anon_mib"] = round(idle.get("RssAnon", 0) / 1024, 1)
        row["idle_rss_file_mib"] = round(idle.get("RssFile", 0) / 1024, 1)
        row["collector_cpu_us_per_event"] = round(cpu / total * 1e6, 2)
        return row
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_bare(total: int, concurrency: int) -> dict[str, Any]:
    proc, url = start_bare()
    try:
        started, load = run_load(url, "x", total, concurrency, 0.0, "bare")
        seconds = time.perf_counter() - started
        return summarize(
            "bare aiohttp + msgspec decode", total, seconds, load, peak_rss_mib(proc.pid)
        )
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    total = args.events - args.events % BATCH
    rows = []
    for label, run in (
        ("bare", lambda: bench_bare(total, args.concurrency)),
        ("always", lambda: bench_collector("always", total, args.concurrency)),
        ("never", lambda: bench_collector("never", total, args.concurrency)),
    ):
        print(f"running {label} ...", file=sys.stderr, flush=True)
        rows.append(run())
    half = rows[1]["events_per_s"] / 2
    print(f"running paced at {half:.0f} events/s ...", file=sys.stderr, flush=True)
    rows.append(bench_collector("always", total // 2, args.concurrency, rate=half))
    ceiling = rows[0]["events_per_s"]
    for row in rows:
        row["ratio_to_bare"] = round(row["events_per_s"] / ceiling, 3)
    header = (
        f"{'run':<36} {'events/s':>10} {'x bare':>7} {'ack p50':>9} {'ack p99':>9} {'RSS MiB':>8}"
        f" {'anon':>6} {'file':>6} {'CPU us/ev':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['name']:<36} {row['events_per_s']:>10,} {row['ratio_to_bare']:>7.2f} "
            f"{row['ack_p50_ms']:>7.2f}ms {row['ack_p99_ms']:>7.2f}ms {row['peak_rss_mib']:>8.1f}"
            f" {row.get('peak_rss_anon_mib', 0):>6.1f} {row.get('peak_rss_file_mib', 0):>6.1f}"
            f" {row.get('collector_cpu_us_per_event', 0):>9.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "benchmark": "ingest",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "batch_size": BATCH,
        "concurrency": args.concurrency,
        "note": "end to end: from the first request until every event is visible in ClickHouse; "
        "peak RSS is VmHWM, split into its sampled peaks of RssAnon (private memory) and "
        "RssFile (mapped files, mostly the chdb library); CPU is the collector process's, "
        "every thread included, per event",
        "runs": rows,
    }
    (RESULTS / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'ingest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
