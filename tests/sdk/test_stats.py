from __future__ import annotations

import threading
import time

import pytest

from touchpoint.stats import DROP_REASONS, Ledger, Loss


def test_pending_is_taken_minus_settled_plus_queued() -> None:
    ledger = Ledger(None)
    ledger.take(10)
    ledger.sent(6)
    ledger.filtered(1)
    ledger.drop(Loss("retry_exhausted", ("a", "b")))
    stats = ledger.snapshot(queued=5, spooled=0)
    assert (stats.enqueued, stats.sent, stats.filtered, stats.pending) == (15, 6, 1, 6)
    assert stats.retry_exhausted == 2
    assert stats.dropped == 2
    assert stats.as_dict()["dropped"] == 2
    assert set(DROP_REASONS) <= set(stats.as_dict())


def test_recovered_events_are_pending_but_not_enqueued() -> None:
    ledger = Ledger(None)
    ledger.take(4, recovered=True)
    stats = ledger.snapshot(queued=0, spooled=4)
    assert (stats.enqueued, stats.recovered, stats.pending, stats.spooled) == (0, 4, 4, 4)


def test_wait_returns_what_is_still_pending_when_time_is_up() -> None:
    ledger = Ledger(None)
    ledger.take(3)
    target = ledger.target(queued=0)
    started = time.monotonic()
    assert ledger.wait(target, 0.1) == 3
    assert time.monotonic() - started < 0.5


def test_wait_wakes_as_soon_as_everything_is_settled() -> None:
    ledger = Ledger(None)
    ledger.take(2)
    target = ledger.target(queued=0)
    threading.Timer(0.05, ledger.sent, args=(2,)).start()
    started = time.monotonic()
    assert ledger.wait(target, 5.0) == 0
    assert time.monotonic() - started < 1.0


def test_hot_path_drops_are_counted_at_once_and_reported_later_grouped() -> None:
    seen: list[Loss] = []
    ledger = Ledger(seen.append)
    ledger.defer_drop("queue_full", "a", "queue full")
    ledger.defer_drop("queue_full", "b", "queue full")
    ledger.defer_drop("invalid", "c", "bad")
    assert ledger.snapshot(0, 0).queue_full == 2
    assert seen == []  # nothing runs on the caller's thread
    assert ledger.has_deferred()
    ledger.report_deferred()
    assert sorted((loss.reason, loss.message_ids) for loss in seen) == [
        ("invalid", ("c",)),
        ("queue_full", ("a", "b")),
    ]
    assert not ledger.has_deferred()


def test_a_failing_on_error_callback_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(loss: Loss) -> None:
        raise RuntimeError("callback bug")

    ledger = Ledger(explode)
    ledger.take(1)
    ledger.drop(Loss("oversize", ("x",)))
    assert "on_error callback raised" in caplog.text
    assert ledger.snapshot(0, 0).oversize == 1


def test_drop_with_unknown_ids_counts_the_given_number() -> None:
    ledger = Ledger(None)
    ledger.take(3)
    ledger.drop(Loss("invalid", (), "unreadable"), count=3)
    stats = ledger.snapshot(0, 0)
    assert (stats.invalid, stats.pending) == (3, 0)
