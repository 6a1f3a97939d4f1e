from __future__ import annotations

import gzip
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import msgspec
import pytest

from tests.sdk.sink import WRITE_KEY, Fault, Sink
from touchpoint.options import Options, endpoint
from touchpoint.record import Encoded
from touchpoint.stats import Ledger, Loss
from touchpoint.transport import Deliverer, HttpSender, Reply, batch_body, parse_retry_after
from touchpoint_schemas.events import Batch, Track


class FakeSender:
    """Answers from a script; records every body (decoded) it was given."""

    def __init__(self, *replies: Reply | Any) -> None:
        self.script: deque[Any] = deque(replies)
        self.bodies: list[dict[str, Any]] = []

    def post(self, body: bytes, timeout: float) -> Reply:
        self.bodies.append(msgspec.json.decode(body))
        answer = self.script.popleft() if self.script else Reply(200)
        return answer(self.bodies[-1]) if callable(answer) else answer

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def sizes(self) -> list[int]:
        return [len(body["batch"]) for body in self.bodies]


def batch(n: int, size: int = 20) -> Encoded:
    out = Encoded()
    for i in range(n):
        raw = msgspec.json.encode({"type": "track", "messageId": f"m{i}", "pad": "x" * size})
        out.ids.append(f"m{i}")
        out.events.append(raw)
        out.nbytes += len(raw)
    return out


class FakeClock:
    """Virtual monotonic time: sleeping advances it at once, and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(
    sender: FakeSender, stop_at: float = float("inf"), **options: Any
) -> tuple[Deliverer, Ledger, list[Loss], FakeClock]:
    losses: list[Loss] = []
    clock = FakeClock()
    ledger = Ledger(losses.append)
    settings = {"backoff_base": 0.5, "backoff_max": 30.0, "max_retries": 10, **options}
    options_ = Options(write_key="k", **settings)
    deliverer = Deliverer(sender, options_, ledger, clock.sleep, lambda: stop_at, clock)
    return deliverer, ledger, losses, clock


def deliver(deliverer: Deliverer, ledger: Ledger, n: int) -> Any:
    ledger.take(n)
    return deliverer.deliver(batch(n))


@pytest.mark.parametrize("status", [0, 408, 500, 502, 503])
def test_network_errors_408_and_5xx_are_retried_with_full_jitter(status: int) -> None:
    sender = FakeSender(Reply(status), Reply(status), Reply(status), Reply(200))
    deliverer, ledger, losses, clock = make(sender)
    assert deliver(deliverer, ledger, 3) is None
    assert sender.sizes() == [3, 3, 3, 3]
    sleeps = clock.sleeps
    assert len(sleeps) == 3
    ceilings = [0.5, 1.0, 2.0]
    assert all(
        0 <= slept <= ceiling + 0.01 for slept, ceiling in zip(sleeps, ceilings, strict=True)
    )
    stats = ledger.snapshot(0, 0)
    assert (stats.sent, stats.retries, stats.pending, losses) == (3, 3, 0, [])


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_never_retried(status: int) -> None:
    sender = FakeSender(Reply(status, b'{"error":"nope"}'))
    deliverer, ledger, losses, clock = make(sender)
    assert deliver(deliverer, ledger, 2) is None
    assert len(sender.bodies) == 1 and clock.sleeps == []
    assert losses == [Loss("invalid", ("m0", "m1"), f'HTTP {status}: {{"error":"nope"}}')]


def test_retry_after_is_honoured_and_429_pauses_the_whole_client() -> None:
    sender = FakeSender(Reply(429, retry_after=7.0), Reply(200), Reply(200))
    deliverer, ledger, _, clock = make(sender)
    assert deliver(deliverer, ledger, 1) is None
    assert clock.sleeps == [7.0]
    # The pause holds back every batch, not only the one that was answered 429.
    deliverer.paused_until = clock.now + 5.0
    assert deliver(deliverer, ledger, 1) is None
    assert clock.sleeps == [7.0, 5.0]
    assert ledger.snapshot(0, 0).sent == 2


def test_413_splits_until_the_parts_fit() -> None:
    def only_small(body: dict[str, Any]) -> Reply:
        return Reply(413) if len(body["batch"]) > 3 else Reply(200)

    sender = FakeSender(*[only_small] * 20)
    deliverer, ledger, losses, _ = make(sender)
    assert deliver(deliverer, ledger, 10) is None
    sent_sizes = [n for n in sender.sizes() if n <= 3]
    assert sum(sent_sizes) == 10
    delivered = [body["batch"][i]["messageId"] for body in sender.bodies if len(body["batch"]) <= 3
                 for i in range(len(body["batch"]))]  # fmt: skip
    assert delivered == [f"m{i}" for i in range(10)]  # order kept
    assert ledger.snapshot(0, 0).sent == 10 and losses == []


def test_a_single_event_refused_with_413_is_oversize() -> None:
    sender = FakeSender(*[Reply(413)] * 5)
    deliverer, ledger, losses, _ = make(sender)
    assert deliver(deliverer, ledger, 2) is None
    assert sender.sizes() == [2, 1, 1]
    assert [loss.reason for loss in losses] == ["oversize", "oversize"]


def test_retries_are_bounded_by_max_retries() -> None:
    sender = FakeSender(*[Reply(503)] * 10)
    deliverer, ledger, _, _ = make(sender, max_retries=2)
    unsent = deliver(deliverer, ledger, 2)
    assert unsent is not None and unsent.reason == "retry_exhausted"
    assert unsent.batch.ids == ["m0", "m1"]
    assert len(sender.bodies) == 3


def test_a_429_pauses_the_client_even_when_the_batch_is_given_up() -> None:
    sender = FakeSender(Reply(429, retry_after=9.0), Reply(200))
    deliverer, ledger, _, clock = make(sender, max_retries=0)
    unsent = deliver(deliverer, ledger, 1)
    assert unsent is not None and unsent.reason == "rate_limited"
    assert deliverer.paused_until == clock.now + 9.0
    assert deliver(deliverer, ledger, 1) is None
    assert clock.sleeps == [9.0]  # the next batch waited out the pause


def test_exhaustion_on_429_is_rate_limited() -> None:
    sender = FakeSender(*[Reply(429)] * 10)
    deliverer, ledger, _, _ = make(sender, max_retries=1)
    unsent = deliver(deliverer, ledger, 1)
    assert unsent is not None and unsent.reason == "rate_limited"


def test_a_wait_beyond_the_batch_deadline_gives_up_at_once() -> None:
    sender = FakeSender(Reply(503, retry_after=3600.0))
    deliverer, ledger, _, clock = make(sender, batch_deadline=10.0)
    unsent = deliver(deliverer, ledger, 1)
    assert unsent is not None and unsent.reason == "retry_exhausted"
    assert clock.sleeps == []  # no point waiting for an answer we cannot use


def test_the_batch_deadline_bounds_all_retries() -> None:
    sender = FakeSender(*[Reply(500)] * 100)
    deliverer, ledger, _, clock = make(sender, batch_deadline=10.0, max_retries=100)
    unsent = deliver(deliverer, ledger, 1)
    assert unsent is not None and unsent.reason == "retry_exhausted"
    assert "deadline" in unsent.detail
    assert sum(clock.sleeps) <= 10.0


def test_the_shutdown_deadline_cuts_delivery_short() -> None:
    sender = FakeSender()
    deliverer, ledger, _, _ = make(sender, stop_at=0.0)
    unsent = deliver(deliverer, ledger, 2)
    assert unsent is not None and unsent.reason == "shutdown"
    assert sender.bodies == []


def test_events_rejected_by_the_collector_are_invalid_and_reported() -> None:
    answer = {
        "accepted": 2,
        "rejected": [
            {"index": 1, "messageId": "m1", "code": "unknown_taxonomy", "reason": "no", "path": "$.touchpoint"},
            {"index": 2, "messageId": "", "code": "too_deep", "reason": "deep", "path": "$"},
        ],
    }  # fmt: skip
    sender = FakeSender(Reply(200, msgspec.json.encode(answer)))
    deliverer, ledger, losses, _ = make(sender)
    assert deliver(deliverer, ledger, 4) is None
    stats = ledger.snapshot(0, 0)
    assert (stats.sent, stats.invalid, stats.pending) == (2, 2, 0)
    assert sorted(mid for loss in losses for mid in loss.message_ids) == ["m1", "m2"]
    assert any(
        "unknown_taxonomy" in loss.detail and "$.touchpoint" in loss.detail for loss in losses
    )


def test_an_all_rejected_batch_is_a_400_with_per_event_reasons() -> None:
    answer = {
        "success": False,
        "accepted": 0,
        "rejected": [
            {"index": 0, "messageId": "m0", "code": "missing_id", "reason": "no id", "path": "$"},
            {"index": 1, "messageId": "m1", "code": "too_deep", "reason": "deep", "path": "$"},
        ],
    }
    sender = FakeSender(Reply(400, msgspec.json.encode(answer)))
    deliverer, ledger, losses, _ = make(sender)
    assert deliver(deliverer, ledger, 3) is None
    details = {loss.message_ids: loss.detail for loss in losses}
    assert "missing_id" in details[("m0",)] and "too_deep" in details[("m1",)]
    assert details[("m2",)].startswith("HTTP 400")  # not listed: refused with the request
    stats = ledger.snapshot(0, 0)
    assert (stats.invalid, stats.sent, stats.pending, stats.retries) == (3, 0, 0, 0)


def test_batches_are_cut_to_max_batch_bytes() -> None:
    sender = FakeSender()
    deliverer, ledger, _, _ = make(sender, max_batch_bytes=4096)
    ledger.take(30)
    assert deliverer.deliver(batch(30, 400)) is None
    assert sum(sender.sizes()) == 30
    assert all(len(msgspec.json.encode(body)) <= 4096 for body in sender.bodies)
    assert len(sender.bodies) > 1


def test_no_request_carries_more_events_than_the_collector_takes() -> None:
    sender = FakeSender()
    deliverer, ledger, _, _ = make(sender)
    ledger.take(6000)
    assert deliverer.deliver(batch(6000, 1)) is None
    assert sender.sizes() == [2500, 2500, 1000]


def test_batch_body_is_the_contract_envelope() -> None:
    events = [Track(message_id=f"m{i}", user_id="u", event="Order Completed") for i in range(2)]
    body = batch_body([msgspec.json.encode(event) for event in events])
    envelope = msgspec.json.decode(body, type=Batch)
    assert envelope.batch == events
    assert envelope.context["library"]["name"] == "touchpoint-python"
    assert envelope.sent_at is not None
    assert abs(envelope.sent_at - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    value = parse_retry_after(header)
    assert value is not None and 25 <= value <= 31


def test_http_sender_posts_gzip_with_basic_auth_over_one_connection(sink: Sink) -> None:
    sender = HttpSender(endpoint(sink.url), WRITE_KEY, gzip=True)
    for _ in range(3):
        reply = sender.post(batch_body(batch(2).events), 2.0)
        assert reply.status == 200
    requests = sink.requests
    assert [r.status for r in requests] == [200, 200, 200]
    assert requests[0].headers["content-encoding"] == "gzip"
    assert requests[0].headers["user-agent"].startswith("touchpoint-python/")
    msgspec.json.decode(gzip.decompress(requests[0].body))
    sender.close()


def test_http_sender_reconnects_when_the_server_closed_an_idle_connection(sink: Sink) -> None:
    sender = HttpSender(endpoint(sink.url), WRITE_KEY, gzip=False)
    assert sender.post(batch_body(batch(1).events), 2.0).status == 200
    sink.down()  # closes the idle keep-alive connection
    sink.up()
    assert sender.post(batch_body(batch(1).events), 2.0).status == 200
    sender.close()


def test_http_sender_reports_refused_connections_as_status_0(sink: Sink) -> None:
    sink.down()
    reply = HttpSender(endpoint(sink.url), WRITE_KEY, gzip=True).post(b"{}", 1.0)
    assert reply.status == 0 and "Connection" in reply.describe()


def test_http_sender_reports_timeouts_as_status_0(sink: Sink) -> None:
    sink.inject(Fault(delay=2.0))
    started = time.monotonic()
    reply = HttpSender(endpoint(sink.url), WRITE_KEY, gzip=True).post(b"{}", 0.2)
    assert reply.status == 0 and "timed out" in reply.describe()
    assert time.monotonic() - started < 1.5
    sink.release()
