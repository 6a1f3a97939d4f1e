"""Running the collector: start every part, serve, and shut down without losing events.

Start order: the store (taking the embedded store's lock), migrations, keys, the log (whose
leftover segments from a crash are loaded first), the loader, then the HTTP listener.
Shutdown (SIGTERM/SIGINT) reverses it: stop listening, let in-flight requests finish, seal
the log, drain it into ClickHouse until the deadline, and leave whatever is left on disk
for the next start.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from touchpoint_collector.app import CollectorApp
from touchpoint_collector.config import Config
from touchpoint_collector.failpoints import failpoint
from touchpoint_collector.keys import KeyKind, KeyStore, read_local_read_key, write_local_read_key
from touchpoint_collector.loader import Loader
from touchpoint_collector.mapservice import MapService
from touchpoint_collector.metrics import Metrics
from touchpoint_collector.migrations import migrate
from touchpoint_collector.store import Store
from touchpoint_collector.wal import FsyncPolicy, WriteAheadLog

log = structlog.get_logger("touchpoint.server")


@dataclass
class Running:
    """What a started collector exposes to its caller (the CLI, the demo, tests)."""

    url: str
    app: CollectorApp
    dev_key: str | None
    stop: Callable[[], None]


def collector_id_for(config: Config) -> str:
    name = config.collector_id or socket.gethostname()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "collector"


def ensure_local_read_key(keys: KeyStore) -> str:
    existing = read_local_read_key(keys.data_dir)
    if existing and keys.authenticate(existing, KeyKind.READ):
        return existing
    key, _ = keys.create("local", KeyKind.READ, note="local CLI access (touchpoint sql)")
    write_local_read_key(keys.data_dir, key)
    return key


async def serve(
    config: Config,
    *,
    on_ready: Callable[[Running], None] | None = None,
    install_signal_handlers: bool = True,
) -> int:
    data_dir = config.data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    collector_id = collector_id_for(config)
    store = await asyncio.to_thread(
        Store.open, config.dsn, config.store.database, role="touchpoint serve"
    )
    try:
        await asyncio.to_thread(migrate, store)
        keys = KeyStore(data_dir)
        dev_key = None
        if not keys.has_write_keys():
            dev_key, _ = keys.create("default", note="development key created by touchpoint serve")
        local_read_key = ensure_local_read_key(keys)
        wal = WriteAheadLog(
            data_dir / "wal",
            fsync=FsyncPolicy(config.wal.fsync),
            segment_max_bytes=config.wal.segment_max_bytes,
            segment_max_age=config.wal.segment_max_age_seconds,
            cap_bytes=config.wal.cap_bytes,
        )
        metrics = Metrics()
        loader = Loader(wal, store, collector_id, metrics, failpoint=failpoint("store.insert"))
        collector = CollectorApp(config, store, wal, loader, keys, metrics, collector_id)
        collector.maps = MapService(config, store)
        wal.start()
        loader.start()
        collector.maps.start()
        runner = web.AppRunner(
            collector.build(),
            auto_decompress=False,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=config.server.shutdown_timeout_seconds,
        )
        await runner.setup()
        site = web.TCPSite(runner, config.server.host, config.server.port, backlog=2048)
        await site.start()
        port = _bound_port(runner)
        host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{port}"
        store.advertise(command="touchpoint serve", url=url, query_url=f"{url}/v1/query")
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop_event.set)
        log.info(
            "collector started",
            url=url,
            store=store.target.describe(),
            collector_id=collector_id,
            replaying_segments=len(wal.sealed_segments()),
        )
        del local_read_key

        def stop() -> None:
            loop.call_soon_threadsafe(stop_event.set)

        if on_ready is not None:
            on_ready(Running(url, collector, dev_key, stop))
        await stop_event.wait()
        return await _shutdown(config, collector, runner, wal, loader)
    finally:
        store.close()


async def _shutdown(
    config: Config,
    collector: CollectorApp,
    runner: web.AppRunner,
    wal: WriteAheadLog,
    loader: Loader,
) -> int:
    started = time.monotonic()
    deadline = started + config.server.shutdown_timeout_seconds
    log.info("shutting down: no new requests, finishing in-flight ones")
    collector.accepting = False
    await runner.cleanup()  # stops listening, waits for in-flight handlers
    if collector.maps is not None:
        await collector.maps.stop()
    await wal.close()  # commits what is queued, seals the active segment
    drained = await loader.drain(deadline)
    await loader.stop(grace=max(0.1, deadline - time.monotonic()))
    left = len(wal.sealed_segments())
    log.info(
        "collector stopped",
        drained=drained,
        segments_left_for_next_start=left,
        seconds=round(time.monotonic() - started, 3),
    )
    return 0


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the collector is not listening")
