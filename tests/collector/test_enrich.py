from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from touchpoint_collector.enrich import (
    FUTURE_TOLERANCE,
    SKEW_THRESHOLD,
    anonymize_ip,
    event_time,
)

RECEIVED = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_no_timestamp_means_arrival_time() -> None:
    assert event_time(None, None, None, RECEIVED).timestamp == RECEIVED


def test_small_skew_is_left_alone() -> None:
    sent = RECEIVED - timedelta(minutes=2)
    own = sent - timedelta(seconds=10)
    result = event_time(own, None, sent, RECEIVED)
    assert result.timestamp == own
    assert result.skew_ms == 0


def test_device_clock_an_hour_slow_is_corrected() -> None:
    sent = RECEIVED - timedelta(hours=1)
    own = sent - timedelta(seconds=30)
    result = event_time(own, None, sent, RECEIVED)
    assert result.timestamp == RECEIVED - timedelta(seconds=30)
    assert result.skew_ms == 3_600_000


def test_device_clock_in_the_future_is_corrected() -> None:
    sent = RECEIVED + timedelta(days=365)
    own = sent - timedelta(minutes=1)
    assert event_time(own, None, sent, RECEIVED).timestamp == RECEIVED - timedelta(minutes=1)


def test_historical_import_keeps_its_timestamp() -> None:
    sent = RECEIVED - timedelta(hours=2)  # wrong clock ...
    own = datetime(2024, 5, 1, tzinfo=UTC)  # ... but the event is a deliberate import
    assert event_time(own, None, sent, RECEIVED).timestamp == own


def test_far_future_without_sent_at_is_clamped() -> None:
    own = RECEIVED + timedelta(days=3)
    result = event_time(own, None, None, RECEIVED)
    assert result.timestamp == RECEIVED
    assert result.skew_ms == -3 * 86_400_000


def test_naive_timestamps_are_utc() -> None:
    assert event_time(datetime(2026, 11, 24, 11), None, None, RECEIVED).timestamp == datetime(
        2026, 11, 24, 11, tzinfo=UTC
    )


@given(
    own=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    sent_offset=st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400))
    | st.none(),
)
def test_corrected_time_is_never_beyond_the_future_tolerance(
    own: datetime, sent_offset: timedelta | None
) -> None:
    sent = None if sent_offset is None else RECEIVED + sent_offset
    result = event_time(own, None, sent, RECEIVED)
    assert result.timestamp <= RECEIVED + FUTURE_TOLERANCE
    # the recorded correction explains the difference exactly
    assert result.timestamp - own == timedelta(milliseconds=result.skew_ms) or (
        abs((result.timestamp - own) - timedelta(milliseconds=result.skew_ms))
        < timedelta(milliseconds=1)
    )
    if (
        sent is not None
        and abs(RECEIVED - sent) < SKEW_THRESHOLD
        and own <= RECEIVED + FUTURE_TOLERANCE
    ):
        assert result.timestamp == own


def test_ip_anonymisation() -> None:
    assert anonymize_ip("203.0.113.77") == "203.0.113.0"
    assert anonymize_ip("2001:db8:85a3:1234:5678:8a2e:370:7334") == "2001:db8:85a3::"
    assert anonymize_ip("not an ip") == ""
