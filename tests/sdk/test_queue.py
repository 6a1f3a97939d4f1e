from __future__ import annotations

from typing import Any

from touchpoint.queue import INITIAL_EVENT_BYTES, EventQueue
from touchpoint.record import Captured


def item(n: int) -> Captured:
    return ("track", f"id-{n}", 0, "u", None, "e", None, None, None, None, None, None, None, None)


def make(**kwargs: Any) -> tuple[EventQueue, list[int]]:
    kicks: list[int] = []
    options = {"max_size": 5, "max_bytes": 10**9, "flush_at": 3, "max_batch_bytes": 10**6}
    queue = EventQueue(**{**options, **kwargs}, kick=lambda: kicks.append(len(queue)))
    return queue, kicks


def test_full_queue_drops_the_newest_and_keeps_what_it_has() -> None:
    queue, _ = make()
    accepted = [queue.put(item(n)) for n in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert [it[1] for it in queue.take(10)] == [f"id-{n}" for n in range(5)]


def test_worker_is_woken_when_the_queue_leaves_empty_and_when_a_batch_is_ready() -> None:
    queue, kicks = make(max_size=100)
    for n in range(2):
        queue.put(item(n))
    assert kicks == [1]  # the first event: the worker starts its flush_interval clock
    queue.put(item(2))
    assert kicks == [1, 3]  # a full batch (flush_at=3): no waiting for the interval


def test_take_is_fifo_and_bounded() -> None:
    queue, _ = make()
    for n in range(4):
        queue.put(item(n))
    assert [it[1] for it in queue.take(3)] == ["id-0", "id-1", "id-2"]
    assert len(queue) == 1
    assert queue.take(0) == []


def test_byte_bound_follows_the_measured_event_size() -> None:
    queue, _ = make(max_size=10_000, max_bytes=100 * INITIAL_EVENT_BYTES)
    assert queue.limit == 100
    for _ in range(20):  # the worker keeps measuring 10x larger events
        queue.observe(100, 100 * 10 * INITIAL_EVENT_BYTES)
    assert 10 <= queue.limit <= 12
    assert queue.wake_at == 3  # flush_at still smaller than what max_batch_bytes allows


def test_large_events_make_smaller_batches() -> None:
    queue, _ = make(flush_at=500, max_batch_bytes=500 * 1024)
    for _ in range(20):
        queue.observe(10, 10 * 20_000)
    assert 22 <= queue.wake_at == queue.batch_size <= 24  # one request's worth (90% full)


def test_a_backlog_is_taken_a_whole_request_at_a_time() -> None:
    queue, _ = make(max_size=10_000, flush_at=10, max_batch_bytes=100 * 1024)
    for _ in range(20):
        queue.observe(10, 10 * 100)
    assert queue.wake_at == 10  # a batch is due at flush_at...
    assert 900 <= queue.batch_size <= 930  # ...but a stalled queue drains ~90 KiB at a time


def test_closed_queue_refuses_everything() -> None:
    queue, _ = make()
    queue.close()
    assert not queue.put(item(0))
    queue.observe(1, 100)  # a late measurement does not reopen it
    assert not queue.put(item(1))
