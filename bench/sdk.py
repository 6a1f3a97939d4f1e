"""SDK benchmark: Touchpoint's client against Segment, PostHog and RudderStack, side by side.

One run, one machine, one local sink, one event (a ``track`` with 5 properties). Each SDK is
measured in fresh subprocesses (so its peak RSS is its own):

  * **per-call latency** of the tagging call: ``time.perf_counter_ns`` around each call with
    pre-built arguments, ``--calls`` calls in rounds of at most 5,000 (half the smallest
    default queue) with an untimed flush between rounds, so every timed call takes the
    normal enqueue path while the SDK's worker runs beside it; a bare
    ``deque.append((a, b, c))`` measured the same way is the floor;
  * **sustained** (what the targets mean): the producer is paced at a fixed rate,
    ``--rate`` calls/s (default 100,000, for every SDK), until ``--sustained-events`` calls
    are made, then flush and shutdown. Pacing checks the clock every 100 calls and sleeps the
    slack away when ahead; between checks it is the bare call, so the per-call cost stays
    the SDK's own. An SDK that cannot call that fast simply runs behind (unpaced). Then the
    **highest lossless pace** per SDK: short steps (``--step-seconds``, 2 s) up or down a
    ladder of paces from the main one, then two bisections; a step passes when every call
    was made on pace, nothing was lost and delivery kept up (the sink got >= 90% of the
    second half's calls during the second half);
  * **burst: as fast as possible**: ``--events`` calls unpaced, then flush and shutdown. That
    outruns every SDK's worker and overflows its bounded queue (drop-newest, counted as
    lost) by design: it measures burst overflow, not sustainable delivery.

For both end-to-end phases: delivered/s is the events the sink received divided by the time
from the first call to the sink's last received batch; lost = tracked - received (a queue
that refuses events when full is a loss); peak RSS (VmHWM, reset before the first call) and
its growth over the RSS before the first call.

The sink is one aiohttp process on a free loopback port. It takes any path (``/v1/batch``,
PostHog's ``/batch/``), gunzips, decodes every body and counts events (and distinct ids) per
run, answers 200 ``{"success": true, "accepted": n, "rejected": []}``, and reports its counts
on ``GET /_sink/count/RUN``. Every SDK runs with its defaults except the host (each run gets
its own path prefix on the sink, which is how the sink tells runs apart) and network side
features (PostHog's feature-flag polling, already off without a secret key); each child
records any connection or name lookup outside loopback.

Prints tables and writes JSON to bench/results/sdk.json.

    .venv/bin/python bench/sdk.py [--calls 100000] [--rate 100000] [--sustained-events 200000]
        [--step-seconds 2] [--events 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SCRATCH = Path(tempfile.gettempdir()) / "sdkbench"
WRITE_KEY = "bench-write-key"
POSTHOG_KEY = "phc_bench_project_key"
ROUND = 5_000
"""Most timed calls between two untimed flushes: half the smallest default queue (10k)."""
PACE_CHUNK = 100
"""Paced producer: calls between two clock checks (and, when ahead, one sleep)."""
PACE_TOLERANCE = 0.95
"""A paced run kept its pace when it made every call at >= 95% of the asked rate."""
KEEP_UP = 0.9
"""...and delivery kept up when the sink got >= 90% of the second half's calls meanwhile."""
USERS = 1_000
"""Distinct pre-built argument tuples, cycled through."""
FLUSH_TIMEOUT = 120.0
CHILD_TIMEOUT = 300.0
SDKS = ("touchpoint", "segment", "posthog", "rudder")
ANCHORS = ("segment", "posthog", "rudder")
LABELS = {
    "deque": "deque.append (floor)",
    "touchpoint": "touchpoint",
    "segment": "segment-analytics-python",
    "posthog": "posthog",
    "rudder": "rudder-sdk-python",
}
DISTRIBUTIONS = {
    "touchpoint": "touchpoint",
    "segment": "segment-analytics-python",
    "posthog": "posthog",
    "rudder": "rudder-sdk-python",
}
TARGETS = {
    "p50_us": 2.0,
    "p99_us": 10.0,
    "delivered_per_s": 100_000,
    "lost": 0,
    "extra_rss_mib": 64.0,
}


def make_args() -> list[tuple[str, str, dict[str, Any]]]:
    """The same call for every SDK: a user id, an event name, 5 properties."""
    return [
        (
            f"user-{i:05d}",
            "Product Viewed",
            {
                "sku": f"SKU-{i % 977}",
                "price": 19.99,
                "currency": "EUR",
                "category": "shoes",
                "position": i % 7,
            },
        )
        for i in range(USERS)
    ]


# -- the sink (its own process) ----------------------------------------------------

SINK = r"""
import asyncio, sys, time, zlib
from collections import Counter
import msgspec
from aiohttp import web

class Ev(msgspec.Struct):
    messageId: str | None = None
    uuid: str | None = None

class Body(msgspec.Struct):
    batch: list[Ev]

batch_decoder = msgspec.json.Decoder(Body)
any_decoder = msgspec.json.Decoder()
runs = {}

def run_stats(run):
    s = runs.get(run)
    if s is None:
        s = runs[run] = {"events": 0, "ids": set(), "requests": 0, "wire_bytes": 0,
                         "json_bytes": 0, "gzip_requests": 0, "bad_bodies": 0,
                         "first": None, "last": None, "paths": Counter(), "agents": Counter(),
                         "timeline": []}
    return s

def events_of(body):
    try:
        return batch_decoder.decode(body).batch
    except msgspec.MsgspecError:
        pass
    doc = any_decoder.decode(body)
    items = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) and "event" in doc else None
    if items is None:
        raise ValueError("no events in body")
    return [Ev(i.get("messageId"), i.get("uuid")) for i in items if isinstance(i, dict)]

async def handle(request):
    parts = request.path.split("/", 3)
    run, rest = (parts[2], "/" + (parts[3] if len(parts) > 3 else "")) if len(parts) > 2 and parts[1] == "run" else ("-", request.path)
    s = run_stats(run)
    s["requests"] += 1
    s["paths"][f"{request.method} {rest}"] += 1
    s["agents"][request.headers.get("User-Agent", "")] += 1
    body = await request.read()
    s["wire_bytes"] += request.content_length or len(body)
    if body[:2] == b"\x1f\x8b":
        body = zlib.decompress(body, 47)
    if request.headers.get("Content-Encoding", "") == "gzip":
        s["gzip_requests"] += 1
    s["json_bytes"] += len(body)
    try:
        events = events_of(body)
    except Exception:
        s["bad_bodies"] += 1
        return web.json_response({"success": False}, status=400)
    ids = s["ids"]
    for ev in events:
        key = ev.messageId or ev.uuid
        if key:
            ids.add(key)
    s["events"] += len(events)
    now = time.monotonic()
    s["first"] = s["first"] or now
    s["last"] = now
    s["timeline"].append((now, len(events)))
    return web.json_response({"success": True, "accepted": len(events), "rejected": []})

async def count(request):
    s = run_stats(request.match_info["run"])
    out = {k: v for k, v in s.items() if k != "ids"}
    out["unique"] = len(s["ids"])
    if request.query.get("final"):
        s["ids"] = set()
    return web.json_response(out)

async def rss(request):
    with open("/proc/self/status") as f:
        hwm = [l.split()[1] for l in f if l.startswith("VmHWM:")]
    return web.json_response({"peak_rss_kib": int(hwm[0])})

app = web.Application(client_max_size=64 << 20)
app.router.add_get("/_sink/count/{run}", count)
app.router.add_get("/_sink/rss", rss)
app.router.add_route("*", "/{tail:.*}", handle)

async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening", runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_sink() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[1]
    return proc, f"http://127.0.0.1:{port}"


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


# -- the SDKs, as each child process drives them -----------------------------------


@dataclass
class Adapter:
    names: dict[str, Any]
    """What `call` and `ok` refer to (bound methods, looked up once as every SDK allows)."""
    call: str
    """The tagging call, with the user id, event and properties in `u`, `e` and `p`."""
    ok: str
    """True when the call's result `r` says the event was taken (for SDKs that say so)."""
    drain: Callable[[], object]
    """Untimed, between latency rounds: wait until what was tracked is delivered."""
    finish: Callable[[], dict[str, Any]]
    """Flush and shut down; return the SDK's own counts and its settings."""


def adapt(sdk: str, base: str) -> Adapter:
    if sdk == "deque":
        from collections import deque

        queue: deque[tuple[str, str, dict[str, Any]]] = deque()
        return Adapter({"append": queue.append}, "append((u, e, p))", "True", queue.clear, dict)
    if sdk == "touchpoint":
        import touchpoint

        tp = touchpoint.Client(WRITE_KEY, host=base)

        def tp_finish() -> dict[str, Any]:
            pending = tp.flush(FLUSH_TIMEOUT)
            not_delivered = tp.shutdown(FLUSH_TIMEOUT)
            stats = tp.stats()
            o = tp.options
            return {
                "refused": stats.queue_full,
                "pending_after_flush": pending,
                "shutdown_not_delivered": not_delivered,
                "sdk_stats": stats.as_dict(),
                "settings": {
                    "max_queue_size": o.max_queue_size,
                    "max_queue_bytes": o.max_queue_bytes,
                    "flush_at": o.flush_at,
                    "flush_interval": o.flush_interval,
                    "gzip": o.gzip,
                    "full_queue": "drops the newest event (counted queue_full)",
                },
            }

        return Adapter(
            {"track": tp.track},
            "track(u, e, p)",
            "True",
            lambda: tp.flush(FLUSH_TIMEOUT),
            tp_finish,
        )
    if sdk in ("segment", "rudder"):
        if sdk == "segment":
            from segment.analytics import Client
        else:
            from rudderstack.analytics import Client  # type: ignore[no-redef]
        sr = Client(WRITE_KEY, host=base)
        d = Client.DefaultConfig

        def sr_finish() -> dict[str, Any]:
            sr.flush()  # queue.join(): every queued event uploaded (or given up)
            sr.join()
            return {
                "settings": {
                    "max_queue_size": d.max_queue_size,
                    "upload_size": d.upload_size,
                    "upload_interval": d.upload_interval,
                    "gzip": d.gzip,
                    "threads": d.thread,
                    "full_queue": "drops the new event: track() returns (False, msg), "
                    "logs a warning",
                }
            }

        return Adapter({"track": sr.track}, "track(u, e, p)", "r[0]", sr.flush, sr_finish)
    if sdk == "posthog":
        import inspect

        from posthog import Posthog

        # No secret key: no flag-definition polling, no remote config. Local evaluation is
        # also switched off explicitly; geoip is already disabled by default.
        ph = Posthog(POSTHOG_KEY, host=base, enable_local_evaluation=False)
        defaults = {
            k: v.default
            for k, v in inspect.signature(Posthog.__init__).parameters.items()
            if k in ("max_queue_size", "flush_at", "flush_interval", "gzip", "thread")
        }

        def ph_finish() -> dict[str, Any]:
            ph.flush(timeout_seconds=FLUSH_TIMEOUT)
            ph.shutdown()
            return {
                "settings": {
                    **defaults,
                    "capture_mode": str(ph.capture_mode),
                    "full_queue": "drops the new event: capture() returns None, logs a warning",
                }
            }

        return Adapter(
            {"capture": ph.capture},
            "capture(e, distinct_id=u, properties=p)",
            "r is not None",
            lambda: ph.flush(timeout_seconds=FLUSH_TIMEOUT),
            ph_finish,
        )
    raise ValueError(sdk)


LOOPS = """
def timed(rounds, size, args, out, drain):
    pc = perf_counter_ns
    nargs = len(args)
    refused = 0
    i = 0
    for _ in range(rounds):
        for _ in range(size):
            u, e, p = args[i % nargs]
            t0 = pc()
            r = {call}
            out[i] = pc() - t0
            if not ({ok}):
                refused += 1
            i += 1
        drain()
    return refused

def burst(n, args):
    nargs = len(args)
    refused = 0
    for i in range(n):
        u, e, p = args[i % nargs]
        r = {call}
        if not ({ok}):
            refused += 1
    return refused

def paced(n, args, rate, chunk, limit, clock, sleep):
    # Call i is due at t0 + i / rate. Between checks (every `chunk` calls) the loop is the
    # same bare call as `burst`; when ahead it sleeps the slack away (releasing the GIL to the
    # SDK's worker), when behind it carries on without sleeping and catches up. A producer
    # still behind after `limit` seconds stops: it cannot keep this pace.
    nargs = len(args)
    refused = 0
    i = 0
    t0 = clock()
    while i < n:
        stop = i + chunk if i + chunk < n else n
        for j in range(i, stop):
            u, e, p = args[j % nargs]
            r = {call}
            if not ({ok}):
                refused += 1
        i = stop
        now = clock()
        slack = t0 + i / rate - now
        if slack > 0:
            sleep(slack)
        elif now - t0 > limit:
            break
    return i, refused, t0, clock()
"""


def compile_loops(adapter: Adapter) -> dict[str, Any]:
    """The timing loops with the SDK's call inlined (no wrapper function in between)."""
    names: dict[str, Any] = {"perf_counter_ns": time.perf_counter_ns, **adapter.names}
    source = LOOPS.replace("{call}", adapter.call).replace("{ok}", adapter.ok)
    exec(compile(source, "<bench/sdk.py loops>", "exec"), names)
    return names


def proc_status(field: str) -> float:
    """A /proc/self/status memory field, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def watch_outside() -> list[str]:
    """Record connections and name lookups that leave loopback (phoning home)."""
    import socket

    seen: list[str] = []
    local = ("127.", "::1", "localhost")
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def note(address: Any) -> None:
        host = str(address[0] if isinstance(address, tuple) else address)
        if not host.startswith(local) and len(seen) < 100:
            seen.append(host)

    def watched_connect(self: socket.socket, address: Any) -> None:
        note(address)
        connect(self, address)

    def watched_connect_ex(self: socket.socket, address: Any) -> int:
        note(address)
        return connect_ex(self, address)

    def watched_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        note((host,))
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = watched_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = watched_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = watched_getaddrinfo
    return seen


def percentiles(values: array[int]) -> dict[str, float]:
    ordered = sorted(values)
    n = len(ordered)

    def at(p: float) -> float:
        return round(ordered[min(n - 1, int(p / 100 * n))] / 1000, 3)

    return {
        "p50_us": at(50),
        "p90_us": at(90),
        "p99_us": at(99),
        "p999_us": at(99.9),
        "max_us": round(ordered[-1] / 1000, 1),
        "mean_us": round(sum(ordered) / n / 1000, 3),
    }


def child_latency(adapter: Adapter, calls: int) -> dict[str, Any]:
    loops = compile_loops(adapter)
    args = make_args()
    size = min(calls, ROUND)
    rounds = math.ceil(calls / size)
    warm = min(size, 2_000)
    loops["timed"](1, warm, args, array("q", bytes(8 * warm)), adapter.drain)
    out = array("q", bytes(8 * rounds * size))
    gc.collect()
    refused = loops["timed"](rounds, size, args, out, adapter.drain)
    result: dict[str, Any] = {
        "tracked": warm + len(out),
        "timed_calls": len(out),
        "round": size,
        "refused": refused,
        **percentiles(out),
    }
    if "append" in adapter.names:  # the floor: what the timer itself costs
        empty = compile_loops(Adapter({}, "None", "True", adapter.drain, dict))
        floor = array("q", bytes(8 * len(out)))
        empty["timed"](rounds, size, args, floor, adapter.drain)
        result["timer_only_p50_us"] = percentiles(floor)["p50_us"]
    return result


def child_burst(adapter: Adapter, events: int) -> dict[str, Any]:
    loops = compile_loops(adapter)
    args = make_args()
    gc.collect()
    with contextlib.suppress(OSError):  # reset VmHWM to the current RSS: this phase's own peak
        Path("/proc/self/clear_refs").write_text("5")
    rss_before = proc_status("VmRSS")
    t0 = time.monotonic()
    refused = loops["burst"](events, args)
    t1 = time.monotonic()
    return {
        "tracked": events,
        "refused": refused,
        "t0": t0,
        "track_s": round(t1 - t0, 3),
        "rss_before_mib": round(rss_before, 1),
        "t_last_call": t1,
    }


def child_paced(adapter: Adapter, events: int, rate: float, limit: float) -> dict[str, Any]:
    loops = compile_loops(adapter)
    args = make_args()
    gc.collect()
    with contextlib.suppress(OSError):  # reset VmHWM to the current RSS: this phase's own peak
        Path("/proc/self/clear_refs").write_text("5")
    rss_before = proc_status("VmRSS")
    tracked, refused, t0, t1 = loops["paced"](
        events, args, rate, PACE_CHUNK, limit or math.inf, time.monotonic, time.sleep
    )
    return {
        "rate": rate,
        "planned": events,
        "tracked": tracked,
        "refused": refused,
        "t0": t0,
        "track_s": round(t1 - t0, 3),
        "rss_before_mib": round(rss_before, 1),
        "t_last_call": t1,
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    outside = watch_outside()
    adapter = adapt(spec["sdk"], spec["base"])
    if spec["phase"] == "latency":
        result = child_latency(adapter, spec["calls"])
    elif spec["phase"] == "paced":
        result = child_paced(adapter, spec["events"], spec["rate"], spec["limit"])
    else:
        result = child_burst(adapter, spec["events"])
    finished = adapter.finish()
    if spec["phase"] != "latency":
        result["finish_s"] = round(time.monotonic() - result["t_last_call"], 3)
        result["peak_rss_mib"] = round(proc_status("VmHWM"), 1)
        result["rss_after_mib"] = round(proc_status("VmRSS"), 1)
    result["refused"] += finished.pop("refused", 0)
    result.update(finished)
    result["outside_loopback"] = outside
    return result


# -- the parent --------------------------------------------------------------------


def run_child(sink: str, sdk: str, phase: str, tag: str = "", **params: Any) -> dict[str, Any]:
    run = f"{sdk}-{phase}{tag}"
    spec = {"sdk": sdk, "phase": phase, "base": f"{sink}/run/{run}", **params}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "TOUCHPOINT_"))}
    log = SCRATCH / f"{run}.stderr"
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=SCRATCH,
            env=env,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{run} failed ({done.returncode}); see {log}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    lines = log.read_text(errors="replace").splitlines()
    result["stderr_lines"] = len(lines)
    result["stderr_sample"] = sorted({line[:160] for line in lines})[:5]
    if sdk == "deque":
        return result
    seen = get_json(f"{sink}/_sink/count/{run}")
    for _ in range(20):  # the SDKs waited for the answers, so this is already final
        if seen["unique"] >= result["tracked"]:
            break
        time.sleep(0.1)
        again = get_json(f"{sink}/_sink/count/{run}")
        if again["events"] == seen["events"]:
            break
        seen = again
    seen = get_json(f"{sink}/_sink/count/{run}?final=1")
    result["received"] = seen["unique"]
    result["duplicates"] = seen["events"] - seen["unique"]
    result["lost"] = result["tracked"] - seen["unique"]
    result["requests"] = seen["requests"]
    result["paths"] = seen["paths"]
    result["gzip_requests"] = seen["gzip_requests"]
    result["wire_mib"] = round(seen["wire_bytes"] / 2**20, 2)
    result["bad_bodies"] = seen["bad_bodies"]
    if phase == "latency":
        return result
    t0, t1 = result["t0"], result["t_last_call"]
    last = seen["last"] or t0
    seconds = max(1e-9, last - t0)
    timeline = seen["timeline"]
    result["delivery_s"] = round(seconds, 3)
    result["calls_per_s"] = round(result["tracked"] / max(1e-9, t1 - t0))
    result["delivered_per_s"] = round(seen["unique"] / seconds) if seen["last"] else 0
    # After the last call the worker has the process to itself: its drain rate.
    after = sum(n for t, n in timeline if t > t1)
    result["received_after_last_call"] = after
    result["drain_per_s"] = round(after / (last - t1)) if after and last > t1 else None
    result["extra_rss_mib"] = round(result["peak_rss_mib"] - result["rss_before_mib"], 1)
    result["retained_rss_mib"] = round(result["rss_after_mib"] - result["rss_before_mib"], 1)
    if phase == "paced":
        # Did delivery keep up while the producer ran? Calls are spread evenly over
        # [t0, t1], so the second half of the window saw half of them; a worker slower than
        # the pace delivers only its own rate's worth meanwhile (the rest waits in the queue,
        # where a short run can hide it until the final flush).
        mid = t0 + (t1 - t0) / 2
        second_half = sum(n for t, n in timeline if mid < t <= t1)
        result["backlog_at_last_call"] = result["tracked"] - sum(n for t, n in timeline if t <= t1)
        result["second_half_delivered_share"] = round(second_half / (result["tracked"] / 2), 3)
        judge(result)
    return result


def judge(row: dict[str, Any]) -> None:
    """Sustained at its pace: every planned call made on time, nothing lost, delivery kept up."""
    rate = row["rate"]
    row["kept_pace"] = (
        row["tracked"] == row["planned"] and row["calls_per_s"] >= PACE_TOLERANCE * rate
    )
    row["kept_up"] = row["second_half_delivered_share"] >= KEEP_UP
    row["sustained"] = row["lost"] == 0 and row["kept_pace"] and row["kept_up"]


def versions() -> dict[str, str]:
    out = {}
    for name, dist in {**DISTRIBUTIONS, "aiohttp": "aiohttp", "msgspec": "msgspec"}.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def nice(x: float) -> int:
    """`x` to two significant digits (a readable rate)."""
    digits = max(0, len(str(int(x))) - 2)
    return int(round(x, -digits))


STEP_KEYS = (
    "rate",
    "planned",
    "tracked",
    "refused",
    "received",
    "lost",
    "duplicates",
    "calls_per_s",
    "delivered_per_s",
    "backlog_at_last_call",
    "second_half_delivered_share",
    "kept_pace",
    "kept_up",
    "sustained",
    "track_s",
    "delivery_s",
    "finish_s",
    "peak_rss_mib",
    "extra_rss_mib",
    "stderr_lines",
    "outside_loopback",
)


def search(
    sink: str, sdk: str, at_rate: dict[str, Any], ladder: list[int], seconds: float, refine: int
) -> dict[str, Any]:
    """The highest paced rate the SDK sustains, in steps of `seconds` each.

    The run at the main pace is the first step. From there: up the ladder while steps pass,
    or down it until one passes; then `refine` geometric bisections between the highest
    pass and the lowest fail above it. Each step is a fresh process (empty queue, own RSS).
    """
    steps: dict[int, dict[str, Any]] = {int(at_rate["rate"]): at_rate}

    def step(rate: int) -> bool:
        if rate not in steps:
            print(f"  {sdk} paced at {rate:,}/s for {seconds:g} s ...", file=sys.stderr, flush=True)
            limit = seconds / PACE_TOLERANCE  # still behind then: it cannot keep this pace
            steps[rate] = run_child(
                sink, sdk, "paced", f"-{rate}", events=round(rate * seconds), rate=rate, limit=limit
            )
        return bool(steps[rate]["sustained"])

    base = int(at_rate["rate"])
    if step(base):
        for rate in sorted(r for r in ladder if r > base):
            if not step(rate):
                break
    else:
        for rate in sorted((r for r in ladder if r < base), reverse=True):
            if step(rate):
                break
    for _ in range(refine):
        passed = [r for r, row in steps.items() if row["sustained"]]
        if not passed:
            break
        low = max(passed)
        failed = [r for r, row in steps.items() if not row["sustained"] and r > low]
        if not failed:
            break
        mid = nice(math.sqrt(low * min(failed)))
        if mid in steps or not low < mid < min(failed):
            break
        step(mid)
    passed = [r for r, row in steps.items() if row["sustained"]]
    best = max(passed) if passed else None
    return {
        "highest_sustained_rate": best,
        "top_of_ladder": best is not None and best >= max(ladder),
        "delivered_per_s": steps[best]["delivered_per_s"] if best else None,
        "extra_rss_mib": steps[best]["extra_rss_mib"] if best else None,
        "steps": [{k: steps[r].get(k) for k in STEP_KEYS} for r in sorted(steps, reverse=True)],
    }


def ratios(
    lat: dict[str, Any], burst: dict[str, Any], found: dict[str, Any]
) -> dict[str, dict[str, float | None]]:
    """Touchpoint against each anchor; above 1 means Touchpoint is better."""
    tp_lat = lat["touchpoint"]
    tp_rate = found["touchpoint"]["highest_sustained_rate"]
    out: dict[str, dict[str, float | None]] = {}
    for sdk in ANCHORS:
        other = found[sdk]["highest_sustained_rate"]
        other_burst = burst[sdk]["delivered_per_s"]
        out[sdk] = {
            "p50_speedup": round(lat[sdk]["p50_us"] / tp_lat["p50_us"], 2),
            "p99_speedup": round(lat[sdk]["p99_us"] / tp_lat["p99_us"], 2),
            "sustained_rate_ratio": round(tp_rate / other, 2) if tp_rate and other else None,
            "burst_delivered_per_s_ratio": (
                round(burst["touchpoint"]["delivered_per_s"] / other_burst, 2)
                if other_burst
                else None
            ),
        }
    return out


def burst_loss(row: dict[str, Any]) -> str:
    if not row["lost"]:
        return "0"
    return f"{row['lost']:,} (full queue, calls at {row['calls_per_s']:,}/s)"


def targets(
    lat: dict[str, Any], at_rate: dict[str, Any], burst: dict[str, Any], found: dict[str, Any]
) -> list[dict[str, Any]]:
    """Touchpoint's targets, judged on the sustained run at the main pace; burst beside."""
    tp_lat, tp, tb = lat["touchpoint"], at_rate["touchpoint"], burst["touchpoint"]
    best = found["touchpoint"]
    lost = tp_lat["lost"] + tp["lost"]
    pace = f"{tp['rate']:,.0f}/s"
    rows: list[tuple[str, str, Any, str, bool, str, str]] = [
        (
            "per-call p50",
            f"<= {TARGETS['p50_us']} us",
            tp_lat["p50_us"],
            "us",
            tp_lat["p50_us"] <= TARGETS["p50_us"],
            "-",
            "latency phase",
        ),
        (
            "per-call p99",
            f"<= {TARGETS['p99_us']} us",
            tp_lat["p99_us"],
            "us",
            tp_lat["p99_us"] <= TARGETS["p99_us"],
            "-",
            "latency phase",
        ),
        (
            f"delivered/s, paced {pace}",
            f">= {TARGETS['delivered_per_s']:,}",
            tp["delivered_per_s"],
            "/s",
            tp["delivered_per_s"] >= TARGETS["delivered_per_s"],
            f"{tb['delivered_per_s']:,}/s",
            f"paced at {pace}, delivered/s cannot exceed the pace: the last batch reaches the "
            f"sink after the last call ({tp['delivery_s'] - tp['track_s']:+.3f} s here)",
        ),
        (
            "highest lossless pace",
            f">= {TARGETS['delivered_per_s']:,}",
            best["highest_sustained_rate"] or 0,
            "/s",
            (best["highest_sustained_rate"] or 0) >= TARGETS["delivered_per_s"],
            "-",
            f"{best['delivered_per_s'] or 0:,}/s delivered there, 0 lost"
            + (" (top of the ladder: a lower bound)" if best["top_of_ladder"] else ""),
        ),
        (
            f"events lost (latency + {pace})",
            "0",
            lost,
            "",
            lost <= TARGETS["lost"],
            burst_loss(tb),
            "burst: drop-newest on a full queue, by design" if tb["lost"] else "",
        ),
        (
            f"extra RSS, paced {pace}",
            f"<= {TARGETS['extra_rss_mib']} MiB",
            tp["extra_rss_mib"],
            "MiB",
            tp["extra_rss_mib"] <= TARGETS["extra_rss_mib"],
            f"{tb['extra_rss_mib']} MiB",
            "burst: the default queue filled up, its memory bound reached" if tb["lost"] else "",
        ),
    ]
    return [
        {
            "target": name,
            "goal": goal,
            "measured": value,
            "unit": unit,
            "met": ok,
            "burst": shown,
            "note": note,
        }
        for name, goal, value, unit, ok, shown, note in rows
    ]


def rate_k(rate: float) -> str:
    return f"{rate / 1000:g}k"


def print_tables(
    lat: dict[str, Any],
    at_rate: dict[str, Any],
    found: dict[str, Any],
    burst: dict[str, Any],
    rat: dict[str, Any],
    tgt: list[dict[str, Any]],
    seconds: float,
) -> None:
    floor = lat["deque"]["p50_us"]
    head = (
        f"{'per-call latency':<26} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} "
        f"{'mean us':>8} {'x floor':>8} {'refused':>8} {'lost':>6}"
    )
    print(head)
    print("-" * len(head))
    for sdk, row in lat.items():
        print(
            f"{LABELS[sdk]:<26} {row['p50_us']:>8.2f} {row['p99_us']:>8.2f} "
            f"{row['p999_us']:>9.2f} {row['mean_us']:>8.2f} {row['p50_us'] / floor:>8.1f} "
            f"{row['refused']:>8,} {row.get('lost', 0):>6,}"
        )
    print()
    rate = at_rate["touchpoint"]["rate"]
    head = (
        f"{'sustained: paced ' + rate_k(rate) + '/s':<26} {'delivered/s':>11} {'calls/s':>9} "
        f"{'tracked':>8} {'received':>8} {'lost':>7} {'peak RSS':>9} {'extra':>7} "
        f"{'pace':>5} {'up':>5} {'verdict':>9}"
    )
    print(head)
    print("-" * len(head))
    for sdk, row in at_rate.items():
        print(
            f"{LABELS[sdk]:<26} {row['delivered_per_s']:>11,} {row['calls_per_s']:>9,} "
            f"{row['tracked']:>8,} {row['received']:>8,} {row['lost']:>7,} "
            f"{row['peak_rss_mib']:>7.1f}Mi {row['extra_rss_mib']:>5.1f}Mi "
            f"{'kept' if row['kept_pace'] else 'MISS':>5} {'kept' if row['kept_up'] else 'MISS':>5} "
            f"{'sustained' if row['sustained'] else 'NO':>9}"
        )
    print()
    head = (
        f"{'sustained: highest pace':<26} {'rate/s':>9} {'delivered/s':>11} {'extra':>7}  "
        f"steps of {seconds:g} s (+ sustained, - not; the {rate_k(rate)}/s run above is one)"
    )
    print(head)
    print("-" * len(head))
    for sdk, row in found.items():
        best = row["highest_sustained_rate"]
        steps = " ".join(
            f"{rate_k(s['rate'])}{'+' if s['sustained'] else '-'}"
            for s in sorted(row["steps"], key=lambda s: -s["rate"])
        )
        extra = f"{row['extra_rss_mib']:.1f}Mi" if best else "-"
        print(
            f"{LABELS[sdk]:<26} {(f'{best:,}' if best else 'none'):>9} "
            f"{(row['delivered_per_s'] or 0):>11,} {extra:>7}  {steps}"
        )
    print()
    head = (
        f"{'burst: as fast as possible':<26} {'delivered/s':>11} {'calls/s':>9} {'drain/s':>9} "
        f"{'tracked':>8} {'received':>8} {'lost':>7} {'peak RSS':>9} {'extra':>7} {'kept':>6}"
    )
    print(head)
    print("-" * len(head))
    for sdk, row in burst.items():
        drain = row["drain_per_s"]
        print(
            f"{LABELS[sdk]:<26} {row['delivered_per_s']:>11,} {row['calls_per_s']:>9,} "
            f"{(f'{drain:,}' if drain else '-'):>9} {row['tracked']:>8,} "
            f"{row['received']:>8,} {row['lost']:>7,} {row['peak_rss_mib']:>7.1f}Mi "
            f"{row['extra_rss_mib']:>5.1f}Mi {row['retained_rss_mib']:>4.1f}Mi"
        )
    print()
    head = (
        f"{'touchpoint vs':<26} {'p50 speedup':>12} {'p99 speedup':>12} "
        f"{'sustained rate ratio':>21}"
    )
    print(head)
    print("-" * len(head))
    for sdk, row in rat.items():
        ratio = row["sustained_rate_ratio"]
        print(
            f"{LABELS[sdk]:<26} {row['p50_speedup']:>11.1f}x {row['p99_speedup']:>11.1f}x "
            f"{(f'{ratio:.1f}x' if ratio is not None else 'n/a'):>21}"
        )
    print()
    head = (
        f"{'touchpoint target':<36} {'goal':>12} {'measured':>14} {'':>8}  "
        "burst (as fast as possible)"
    )
    print(head)
    print("-" * len(head))
    for row in tgt:
        value = row["measured"]
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(
            f"{row['target']:<36} {row['goal']:>12} {shown + ' ' + row['unit']:>14} "
            f"{'met' if row['met'] else 'NOT MET':>8}  {row['burst']}"
        )
    print()
    for row in tgt:
        if row["note"] and row["note"] != "latency phase":
            print(f"  {row['target']}: {row['note']}")


def caveats(
    at_rate: dict[str, Any],
    found: dict[str, Any],
    burst: dict[str, Any],
    posthog_version: str,
    seconds: float,
) -> list[str]:
    rate = at_rate["touchpoint"]["rate"]
    notes = [
        "Defaults differ and are kept: queue bound 20,000 events (Touchpoint) vs 10,000 "
        "(Segment, PostHog, Rudder); batch 500 events or 0.5 s (Touchpoint) vs 100 events "
        "or 0.5 s (Segment, Rudder) or 100 events or 5 s (PostHog); gzip on for Touchpoint "
        "(level 1) and Rudder (level 9), off for Segment and PostHog.",
        f"Sustained: the producer is paced at a fixed rate, checking the clock every "
        f"{PACE_CHUNK} calls and sleeping the slack away when ahead (so the SDK's worker gets "
        "the GIL then); between checks it is the same bare call as the burst, so the per-call "
        "cost is the SDK's own. A run is 'sustained' when it made every planned call at >= "
        f"{PACE_TOLERANCE:.0%} of the pace (pace), lost nothing, and the sink received >= "
        f"{KEEP_UP:.0%} of the second half's calls during that second half (up: the queue was "
        "not quietly growing, which a short run could otherwise hide until the final flush).",
        f"Paced at exactly {rate:,.0f}/s, delivered/s cannot reach {rate:,.0f}: it is "
        "received / (last batch at the sink - first call), and the last batch lands after "
        "the last call. The target row is judged as asked (strictly) and the highest lossless "
        "pace is shown beside it.",
        f"Highest lossless pace: steps of {seconds:g} s, each a fresh process; up the ladder "
        "from the main pace while steps pass, down it until one passes, then two geometric "
        "bisections (two significant digits). A step passes at that length: a worker slower "
        "than the pace by less than (queue bound - backlog) / step length per second would "
        "only lose events in a longer run; the 'up' check is what catches that. Each pace is "
        "tried once, on one run: near an SDK's edge the answer can move by a ladder or "
        "bisection step from one run to the next (and more on a busy machine).",
        f"An SDK that cannot call at {rate:,.0f}/s runs unpaced in that run (it is always "
        "behind): for the anchors the run at that pace is close to the burst.",
        "Burst (as fast as possible): every SDK here drops the newest event when its bounded "
        "queue is full (none blocks the caller), counted as lost, as it would be in production. "
        "The burst measures overflow when calls outrun delivery, not a sustainable rate; its "
        "delivered/s is the delivered share of the burst over its duration, and a slower call "
        "throttles its own caller and so loses less of the same burst.",
        "Per-call latency is the enqueue path with the queue under half full (rounds of "
        f"{ROUND:,} calls, untimed flush between rounds), the SDK's worker thread running "
        "beside the caller.",
        "calls/s is the caller's achieved rate; drain/s is the rate the sink received events "
        "after the last call of the burst, when the worker had the process to itself.",
        "One 2-core machine: the sink (one aiohttp process) competes with the SDK process "
        "for the second core; the SDK's caller and worker threads share one GIL.",
        f"posthog {posthog_version}: capture() builds its system context on every call, "
        "including a distro.info() OS lookup on Linux, about half of its per-call cost in a "
        "profile here; that is its default behaviour, measured as is.",
    ]
    for sdk, row in found.items():
        if row["top_of_ladder"]:
            notes.append(
                f"{LABELS[sdk]}: passed the top of the ladder; its highest lossless pace is a "
                "lower bound, and so are the sustained-rate ratios."
            )
    for sdk, row in burst.items():
        if row["lost"]:
            notes.append(
                f"{LABELS[sdk]} burst: {row['refused']:,} of {row['tracked']:,} events refused "
                f"by a full queue ({row['lost']:,} lost in total); calls at "
                f"{row['calls_per_s']:,}/s, {row['delivered_per_s']:,}/s delivered."
            )
    for sdk, row in at_rate.items():
        if row["lost"]:
            notes.append(
                f"{LABELS[sdk]} paced at {rate:,.0f}/s: could call at {row['calls_per_s']:,}/s "
                f"only; {row['refused']:,} of {row['tracked']:,} refused by a full queue "
                f"({row['lost']:,} lost in total)."
            )
    return notes


def main() -> int:
    global SCRATCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="burst size")
    parser.add_argument("--calls", type=int, default=100_000, help="timed calls per SDK")
    parser.add_argument(
        "--rate", type=int, default=100_000, help="main pace of the sustained runs, calls/s"
    )
    parser.add_argument(
        "--sustained-events", type=int, default=200_000, help="calls in the run at --rate"
    )
    parser.add_argument(
        "--ladder",
        default="300000,200000,150000,100000,50000,20000,10000,5000,2000,1000",
        help="paces tried by the search, calls/s",
    )
    parser.add_argument("--step-seconds", type=float, default=2.0, help="length of a search step")
    parser.add_argument("--refine", type=int, default=2, help="bisections after the ladder")
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help="child logs and cwd")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    SCRATCH = args.scratch
    ladder = sorted({int(r) for r in args.ladder.split(",")} | {args.rate}, reverse=True)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    sink_proc, sink = start_sink()
    started = time.monotonic()
    try:
        lat: dict[str, Any] = {}
        burst: dict[str, Any] = {}
        at_rate: dict[str, Any] = {}
        found: dict[str, Any] = {}
        for sdk in ("deque", *SDKS):
            print(f"latency {sdk} ...", file=sys.stderr, flush=True)
            lat[sdk] = run_child(sink, sdk, "latency", calls=args.calls)
        for sdk in SDKS:
            print(f"burst {sdk} ...", file=sys.stderr, flush=True)
            burst[sdk] = run_child(sink, sdk, "burst", events=args.events)
        for sdk in SDKS:
            print(f"sustained {sdk} at {args.rate:,}/s ...", file=sys.stderr, flush=True)
            at_rate[sdk] = run_child(
                sink,
                sdk,
                "paced",
                f"-{args.rate}-main",
                events=args.sustained_events,
                rate=args.rate,
                limit=0,
            )
            found[sdk] = search(sink, sdk, at_rate[sdk], ladder, args.step_seconds, args.refine)
        sink_rss = get_json(f"{sink}/_sink/rss")["peak_rss_kib"] / 1024
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    rat = ratios(lat, burst, found)
    tgt = targets(lat, at_rate, burst, found)
    print_tables(lat, at_rate, found, burst, rat, tgt, args.step_seconds)
    installed = versions()
    notes = caveats(at_rate, found, burst, installed["posthog"], args.step_seconds)
    print()
    for note in notes:
        print(f"* {note}")
    RESULTS.mkdir(exist_ok=True)
    report = {
        "benchmark": "sdk",
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": installed,
        "event": "track(user_id, 'Product Viewed', 5 properties: sku, price, currency, "
        "category, position)",
        "calls": args.calls,
        "seconds": round(time.monotonic() - started, 1),
        "sink_peak_rss_mib": round(sink_rss, 1),
        "latency": lat,
        "sustained": {
            "label": f"sustained: producer paced at {args.rate:,} calls/s, "
            f"{args.sustained_events:,} calls, then flush and shutdown",
            "rate": args.rate,
            "events": args.sustained_events,
            "pace_check_every": PACE_CHUNK,
            "criteria": {
                "kept_pace": f"every planned call made, at >= {PACE_TOLERANCE} x the pace",
                "lost": "0",
                "kept_up": f"sink received >= {KEEP_UP} x the second half's calls during it",
            },
            "runs": at_rate,
        },
        "highest_sustained": {
            "label": f"highest lossless pace: steps of {args.step_seconds:g} s",
            "ladder": ladder,
            "step_seconds": args.step_seconds,
            "refine": args.refine,
            "sdks": found,
        },
        "burst": {
            "label": "burst: as fast as possible, then flush and shutdown (measures overflow "
            "of the bounded queue, drop-newest, counted as lost)",
            "events": args.events,
            "runs": burst,
        },
        "touchpoint_vs": rat,
        "targets": tgt,
        "caveats": notes,
    }
    (RESULTS / "sdk.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'sdk.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
