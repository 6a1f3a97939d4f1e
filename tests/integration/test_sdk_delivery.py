"""The SDK against a real HTTP server on loopback that misbehaves on purpose.

Every assertion is on what the sink *received* (by ``messageId``), or on wall-clock time the
sink measured: the client's own counters are checked against it, never trusted alone.
Retries may deliver an event twice; that is allowed only as the same ``messageId``, so each
test counts distinct ids.
"""

from __future__ import annotations

import threading
import time

from tests.sdk.fixtures import (  # noqa: F401
    ClientFactory,
    Losses,
    clients_fixture,
    sink_fixture,
)
from tests.sdk.sink import Fault, Sink
from touchpoint_schemas.taxonomy import Taxonomy


def test_every_event_is_delivered_once_under_normal_load(
    clients: ClientFactory, sink: Sink
) -> None:
    client = clients()
    ids: list[list[str]] = [[] for _ in range(4)]

    def produce(out: list[str]) -> None:
        for i in range(5_000):
            out.append(client.track(f"user-{i % 50}", "Product Viewed", {"i": i, "sku": "A"}))
            if i % 50 == 49:
                time.sleep(0.005)  # ~10k events/s per thread: busy, but not a tight loop

    threads = [threading.Thread(target=produce, args=(out,)) for out in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(20) == 0
    tracked = [mid for out in ids for mid in out]
    received = sink.ids()
    assert len(tracked) == 20_000
    assert set(received) == set(tracked)
    assert set(received.values()) == {1}  # no fault, no resend
    stats = client.stats()
    assert (stats.sent, stats.enqueued, stats.dropped, stats.retries) == (20_000, 20_000, 0, 0)


def test_batches_are_gzipped_authenticated_contract_envelopes(
    clients: ClientFactory, sink: Sink
) -> None:
    client = clients()
    client.track("u", "Order Completed", {"revenue": 5})
    assert client.flush(5) == 0
    [request] = sink.requests
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"].startswith("Basic ")
    [envelope] = sink.envelopes
    assert envelope.sent_at is not None
    assert envelope.context["library"]["name"] == "touchpoint-python"


def test_500s_are_retried_without_loss(clients: ClientFactory, sink: Sink) -> None:
    sink.inject(Fault(status=500), Fault(status=502), Fault(status=503))
    client = clients(flush_at=25)
    ids = {client.track("u", "e", {"i": i}) for i in range(100)}
    assert client.flush(10) == 0
    assert set(sink.ids()) == ids
    assert sink.wait_for_requests(4)
    assert [r.status for r in sink.requests][:3] == [500, 502, 503]
    stats = client.stats()
    assert (stats.sent, stats.retries, stats.dropped) == (100, 3, 0)


def test_retry_after_on_429_is_honoured(clients: ClientFactory, sink: Sink) -> None:
    sink.inject(Fault(status=429, retry_after="1"))
    client = clients()
    ids = {client.track("u", "e") for _ in range(5)}
    assert client.flush(10) == 0
    assert set(sink.ids()) == ids
    assert sink.wait_for_requests(2)
    limited, accepted = sink.requests[:2]
    gap = accepted.received_at - limited.answered_at
    assert 0.95 <= gap < 1.8, gap  # waited as told, and not much longer


def test_429_pauses_the_whole_client_not_just_the_batch(clients: ClientFactory, sink: Sink) -> None:
    """The batch that got the 429 is given up at once (no retries allowed), yet the next
    batch still waits out Retry-After instead of hammering the collector."""
    sink.inject(Fault(status=429, retry_after="1"))
    losses = Losses()
    client = clients(max_retries=0, flush_at=5, on_error=losses)
    first = [client.track("u", "first") for _ in range(5)]
    assert sink.wait_for_requests(1)
    second = {client.track("u", "second") for _ in range(5)}
    assert client.flush(10) == 0
    assert sink.wait_for_requests(2)
    limited, accepted = sink.requests
    assert accepted.received_at - limited.answered_at >= 0.95
    assert set(sink.ids()) == second
    assert sorted(losses.ids("rate_limited")) == sorted(first)
    assert client.stats().rate_limited == 5


def test_timeouts_are_retried_and_duplicates_keep_their_id(
    clients: ClientFactory, sink: Sink
) -> None:
    sink.inject(Fault(delay=1.0))  # answers, but only after the client gave up waiting
    client = clients(request_timeout=0.3)
    ids = {client.track("u", "e") for _ in range(10)}
    assert client.flush(10) == 0
    received = sink.ids()
    assert set(received) == ids
    assert max(received.values()) <= 2
    assert client.stats().retries >= 1


def test_connection_refused_then_back_up(clients: ClientFactory, sink: Sink) -> None:
    sink.down()
    client = clients(backoff_base=0.05, backoff_max=0.1, max_retries=100)  # deadline-bound
    ids = {client.track("u", "e") for _ in range(30)}
    time.sleep(0.4)
    assert sink.requests == []
    sink.up()
    assert client.flush(10) == 0
    assert set(sink.ids()) == ids
    assert client.stats().retries >= 1


def test_a_connection_dropped_without_an_answer_is_retried(
    clients: ClientFactory, sink: Sink
) -> None:
    sink.inject(Fault(drop=True))
    client = clients()
    ids = {client.track("u", "e") for _ in range(10)}
    assert client.flush(10) == 0
    assert set(sink.ids()) == ids


def test_413_splits_the_batch_until_it_fits(clients: ClientFactory, sink: Sink) -> None:
    sink.max_events = 7
    client = clients(flush_at=50)
    ids = [client.track("u", "e", {"i": i}) for i in range(50)]
    assert client.flush(10) == 0
    assert set(sink.ids()) == set(ids)
    assert sink.wait_for(lambda s: sum(r.events for r in s.requests if r.status == 200) == 50)
    statuses = [r.status for r in sink.requests]
    assert statuses[0] == 413
    assert all(r.events <= 7 for r in sink.requests if r.status == 200)
    assert [e.message_id for e in sink.events] == ids  # split halves keep capture order
    assert client.stats().dropped == 0


def test_other_4xx_are_not_retried_and_are_reported(clients: ClientFactory, sink: Sink) -> None:
    sink.inject(Fault(status=400))
    losses = Losses()
    client = clients(on_error=losses)
    ids = [client.track("u", "e") for _ in range(4)]
    assert client.flush(10) == 0
    assert sink.wait_for_requests(1)
    assert sorted(losses.ids("invalid")) == sorted(ids)
    stats = client.stats()
    assert (stats.invalid, stats.retries, stats.sent) == (4, 0, 0)
    assert len(sink.requests) == 1


def test_a_wrong_write_key_is_refused_once_not_hammered(clients: ClientFactory, sink: Sink) -> None:
    from touchpoint import Client

    losses = Losses()
    client = Client("wrong-key", host=sink.url, flush_interval=0.05, on_error=losses)
    message_id = client.track("u", "e")
    assert client.flush(5) == 0
    assert sink.wait_for_requests(1)
    assert [r.status for r in sink.requests] == [401]
    assert losses.ids("invalid") == [message_id]
    client.shutdown(1)


def test_retries_run_out_and_the_events_are_reported_lost(
    clients: ClientFactory, sink: Sink
) -> None:
    sink.fault = Fault(status=503)
    losses = Losses()
    client = clients(max_retries=2, on_error=losses)
    ids = [client.track("u", "e") for _ in range(3)]
    assert client.flush(10) == 0
    assert sink.wait_for_requests(3)
    assert len(sink.requests) == 3  # the first attempt and two retries
    assert sorted(losses.ids("retry_exhausted")) == sorted(ids)
    assert client.stats().retry_exhausted == 3


def test_events_the_collector_rejects_are_counted_invalid_and_reported(
    clients: ClientFactory, sink: Sink
) -> None:
    sink.taxonomy = Taxonomy.standard()
    losses = Losses()
    client = clients(on_error=losses)
    deep: dict[str, object] = {}
    node = deep
    for _ in range(40):  # deeper than the contract allows; only the collector checks depth
        node["x"] = node = {}
    good = [client.purchase("u", {"revenue": 1.0}) for _ in range(3)]
    unknown = client.track("u", "e", touchpoint="not_in_the_collector_config")
    too_deep = client.track("u", "e", {"tree": deep})
    assert client.flush(10) == 0
    assert set(sink.ids()) == set(good)
    details = {loss.message_ids: loss.detail for loss in losses.losses}
    assert set(details) == {(unknown,), (too_deep,)}
    assert "unknown_taxonomy" in details[(unknown,)]
    assert "too_deep" in details[(too_deep,)]
    stats = client.stats()
    assert (stats.sent, stats.invalid) == (3, 2)


def test_full_queue_drops_the_newest_events(clients: ClientFactory, sink: Sink) -> None:
    sink.fault = Fault(delay=30.0)  # the collector hangs: the worker is stuck in a request
    losses = Losses()
    client = clients(max_queue_size=100, flush_at=10, request_timeout=20.0, on_error=losses)
    first = client.track("u", "e")
    assert sink.wait_for_arrivals(1)
    tracked = [client.track("u", "e", {"i": i}) for i in range(150)]
    sink.fault = None
    sink.release()
    assert client.flush(10) == 0
    assert set(sink.ids()) == {first, *tracked[:100]}  # the oldest are kept...
    assert losses.ids("queue_full") == tracked[100:]  # ...and the newest dropped, reported
    stats = client.stats()
    assert (stats.queue_full, stats.sent) == (50, 101)


def test_flush_against_a_hung_collector_returns_on_time(clients: ClientFactory, sink: Sink) -> None:
    sink.fault = Fault(delay=30.0)
    losses = Losses()
    client = clients(request_timeout=20.0, on_error=losses)
    ids = [client.track("u", "e") for _ in range(20)]
    started = time.monotonic()
    pending = client.flush(0.5)
    elapsed = time.monotonic() - started
    # Bounds far from the hang (20 to 30 s) and loose against this VM's hiccups.
    assert pending == 20
    assert 0.45 <= elapsed < 2.0
    started = time.monotonic()
    assert client.shutdown(0.5) == 20  # not delivered
    assert time.monotonic() - started < 2.0
    assert sorted(losses.ids("shutdown")) == sorted(ids)
    assert client.stats().shutdown == 20
    started = time.monotonic()
    assert client.shutdown(0.5) == 0  # idempotent, and immediate the second time
    assert time.monotonic() - started < 0.4
    assert sink.ids() == {}
    sink.release()
