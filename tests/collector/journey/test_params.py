"""Map parameters from strings: out-of-range values are a clear error, never a crash (an
adversarial run got 500s from /v1/map for each of these)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from touchpoint_collector.journey.model import MapFilters
from touchpoint_collector.journey.params import MapParamError, parse, previous_period
from touchpoint_schemas.limits import EARLIEST_TIME

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    "arguments",
    [
        {"since": "99999999d"},
        {"since": "9999-12-31T23:59:59Z"},
        {"since": "0001-01-01T00:00:00Z"},
        {"until": "1899-12-31"},
        {"gap_days": "nan"},
        {"gap_days": "inf"},
        {"gap_days": "1e308"},
        {"gap_days": "-1"},
        {"gap_days": "0"},
        {"end_after_days": "nan"},
        {"top_n": "-3"},
        {"min_support": "0"},
        {"top_n": "many"},
    ],
)
def test_out_of_range_parameters_are_refused_with_a_reason(arguments: dict[str, str]) -> None:
    with pytest.raises(MapParamError):
        parse(now=NOW, **arguments)  # type: ignore[arg-type]


def test_parameters_in_range_are_read() -> None:
    filters, settings = parse(
        now=NOW, since="90d", until="2026-11-01", gap_days="30", top_n="3", min_support="1"
    )
    assert filters.since == datetime(2026, 8, 27, tzinfo=UTC)
    assert filters.until == datetime(2026, 11, 1, tzinfo=UTC)
    assert (settings.gap_days, settings.top_n, settings.min_support) == (30.0, 3, 1)


def test_the_previous_period_stops_at_the_earliest_storable_time() -> None:
    filters = MapFilters(since=datetime(1950, 1, 1, tzinfo=UTC))
    before = previous_period(filters, NOW)
    assert before is not None
    assert (before.since, before.until) == (EARLIEST_TIME, filters.since)
