"""The per-source token bucket holds its rate whatever the batch size."""

from __future__ import annotations

from touchpoint_collector.ratelimit import _Bucket


def test_batches_larger_than_the_bucket_cannot_beat_the_rate() -> None:
    """100 events/s, a burst of 200, batches of 2,500 sent as soon as allowed for 60 s:
    about 100/s get through (one batch ahead at most), not one batch per refill of the
    bucket (12 times the rate, as an adversarial run measured)."""
    bucket = _Bucket(rate=100.0, capacity=200.0, tokens=200.0, updated=0.0)
    now, accepted = 0.0, 0
    while now < 60.0:
        wait = bucket.take(2500, now)
        if wait == 0:
            accepted += 2500
        now += max(wait, 0.01)
    assert accepted <= 100 * 60 + 2500
    assert accepted >= 100 * 60 - 2500


def test_a_request_within_the_bucket_waits_for_its_tokens() -> None:
    bucket = _Bucket(rate=10.0, capacity=20.0, tokens=20.0, updated=0.0)
    assert bucket.take(15, 0.0) == 0.0
    assert bucket.take(10, 0.0) == 0.5  # 5 left, 5 more at 10/s
    assert bucket.take(10, 0.5) == 0.0
