"""The worker's triggers: interval, full batch, flush; and spooling while the collector fails."""

from __future__ import annotations

import time
from pathlib import Path

from tests.sdk.fixtures import ClientFactory, eventually
from tests.sdk.sink import Sink


def test_a_lone_event_waits_for_the_interval_then_goes(clients: ClientFactory, sink: Sink) -> None:
    client = clients(flush_interval=0.4)
    started = time.monotonic()
    client.track("u", "e")
    time.sleep(0.15)
    assert sink.requests == []  # still collecting a batch
    assert sink.wait_for_ids(1, timeout=3)
    assert time.monotonic() - started >= 0.35


def test_a_full_batch_wakes_the_worker_at_once(clients: ClientFactory, sink: Sink) -> None:
    client = clients(flush_interval=30.0, flush_at=10)
    started = time.monotonic()
    for _ in range(10):
        client.track("u", "e")
    assert sink.wait_for_ids(10, timeout=3)
    assert time.monotonic() - started < 2.0  # nowhere near the 30 s interval
    assert sink.wait_for_requests(1)
    assert [r.events for r in sink.requests] == [10]


def test_flush_sends_a_partial_batch_now(clients: ClientFactory, sink: Sink) -> None:
    client = clients(flush_interval=30.0)
    ids = {client.track("u", "e") for _ in range(3)}
    started = time.monotonic()
    assert client.flush(5) == 0
    assert time.monotonic() - started < 2.0
    assert set(sink.ids()) == ids


def test_an_idle_worker_sleeps_instead_of_polling(clients: ClientFactory, sink: Sink) -> None:
    client = clients(flush_interval=0.01)
    client.track("u", "e")
    assert client.flush(5) == 0
    thread = client._worker._thread
    assert thread is not None
    before = time.thread_time()
    time.sleep(0.3)  # would be ~30 wake-ups if it polled at the interval
    assert sink.requests and len(sink.requests) == 1
    assert time.thread_time() - before < 0.05


def test_with_a_spool_the_queue_moves_to_disk_while_the_collector_is_down(
    clients: ClientFactory, sink: Sink, tmp_path: Path
) -> None:
    sink.down()
    client = clients(
        spool_dir=tmp_path, flush_at=10, max_queue_size=30, backoff_base=0.2, backoff_max=0.2
    )
    ids: list[str] = []
    for _ in range(10):  # 100 events, more than three times what the queue holds
        ids.extend(client.track("u", "e") for _ in range(10))
        deadline = time.monotonic() + 3
        while client.stats().spooled < len(ids) and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker is between retries, moving the queue to disk
    stats = client.stats()
    assert (stats.spooled, stats.queue_full, stats.pending) == (100, 0, 100)
    assert sum(1 for _ in tmp_path.glob("*.batch")) >= 10
    sink.up()
    assert client.flush(10) == 0
    assert set(sink.ids()) == set(ids)
    # Settled first, file deleted right after (a crash in between only means a resend).
    assert eventually(lambda: not list(tmp_path.glob("*.batch")))
