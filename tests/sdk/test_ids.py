from __future__ import annotations

import threading
import time
import uuid

from touchpoint.ids import IdGenerator, uuid7_unix_ms


def test_ids_are_uuid7_with_the_capture_millisecond() -> None:
    ns = time.time_ns()
    value = uuid.UUID(IdGenerator().new(ns))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid7_unix_ms(str(value)) == ns // 1_000_000


def test_ids_sort_in_capture_order_within_a_process() -> None:
    ids = IdGenerator()
    start = time.time_ns()
    made = [ids.new(start + i * 100_000) for i in range(5_000)]  # ~50 distinct milliseconds
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_are_unique_across_threads() -> None:
    ids = IdGenerator()
    out: list[list[str]] = [[] for _ in range(4)]

    def work(bucket: list[str]) -> None:
        for _ in range(20_000):
            bucket.append(ids.new(time.time_ns()))

    threads = [threading.Thread(target=work, args=(bucket,)) for bucket in out]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [mid for bucket in out for mid in bucket]
    assert len(set(everything)) == 80_000


def test_reseeding_starts_an_unrelated_sequence() -> None:
    """What a forked child does: it must not continue its parent's sequence."""
    ids = IdGenerator()
    ns = time.time_ns()
    parent_next = [ids.new(ns) for _ in range(3)]
    ids.reseed()
    child_next = [ids.new(ns) for _ in range(3)]
    assert not set(parent_next) & set(child_next)
    assert parent_next[0][:19] != child_next[0][:19]  # different random middle


def test_counter_exhaustion_reseeds_instead_of_failing() -> None:
    ids = IdGenerator()
    ids._counter = iter([(1 << 48) - 1, 1 << 48])  # type: ignore[assignment]
    ns = time.time_ns()
    last = ids.new(ns)
    assert last.endswith("ffffffffffff")
    after = ids.new(ns)
    assert uuid.UUID(after).version == 7
    assert after != last
