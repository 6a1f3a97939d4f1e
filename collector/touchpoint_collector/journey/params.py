"""Map filters and settings from strings: one parser for CLI flags and ``/v1/map`` query
parameters, so ``--since 90d --persona saver`` and ``?since=90d&persona=saver`` mean the
same map."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from touchpoint_collector.journey.model import MapFilters, MapSettings
from touchpoint_schemas.limits import EARLIEST_TIME, LATEST_TIME

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_DAYS = 36_500.0
"""Gap and end-after settings, in days: a century is more than any journey needs."""


class MapParamError(ValueError):
    pass


def parse_time(text: str, now: datetime) -> datetime:
    """``90d`` (ago), ``2026-11-01`` or a full ISO timestamp (UTC when no offset)."""
    match = _RELATIVE.match(text.strip())
    try:
        if match:
            value = now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
        else:
            value = datetime.fromisoformat(text.strip())
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
    except ValueError:
        raise MapParamError(
            f"cannot read time {text!r}: use 90d, 12h, 2026-11-01 or an ISO timestamp"
        ) from None
    except OverflowError:  # so far back that Python's datetime cannot hold it
        raise _outside(text) from None
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        raise _outside(text)
    return value


def _outside(text: str) -> MapParamError:
    return MapParamError(
        f"time {text!r} is outside {EARLIEST_TIME:%Y-%m-%d} to {LATEST_TIME:%Y-%m-%d}, "
        "the range events can be stored in"
    )


def _split(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def parse(
    *,
    since: str | None = None,
    until: str | None = None,
    sources: Iterable[str] = (),
    channels: Iterable[str] = (),
    persona: str | None = None,
    properties: Iterable[str] = (),
    goal: str | None = None,
    gap_days: str | float | None = None,
    end_after_days: str | float | None = None,
    top_n: str | int | None = None,
    min_support: str | int | None = None,
    now: datetime | None = None,
    base: MapSettings | None = None,
) -> tuple[MapFilters, MapSettings]:
    now = now or datetime.now(UTC)
    pairs = []
    for item in properties:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MapParamError(f"property filter {item!r} must look like key=value")
        pairs.append((key.strip(), value.strip()))
    filters = MapFilters(
        since=parse_time(since, now) if since else None,
        until=parse_time(until, now) if until else None,
        sources=_split(sources),
        channels=_split(channels),
        persona=persona or None,
        properties=tuple(pairs),
    )
    if filters.since and filters.until and filters.since >= filters.until:
        raise MapParamError("since must be before until")
    settings = base or MapSettings()
    try:
        changes: dict[str, object] = {}
        if goal:
            changes["goal"] = goal
        if gap_days is not None:
            changes["gap_days"] = float(gap_days)
        if end_after_days is not None:
            changes["end_after_days"] = float(end_after_days)
        if top_n is not None:
            changes["top_n"] = int(top_n)
        if min_support is not None:
            changes["min_support"] = int(min_support)
    except ValueError as exc:
        raise MapParamError(f"bad map setting: {exc}") from None
    for name in ("gap_days", "end_after_days"):
        days = changes.get(name)
        if isinstance(days, float) and not 0 < days <= MAX_DAYS:  # NaN fails too
            raise MapParamError(f"{name} must be more than 0 and at most {MAX_DAYS:g}")
    for name in ("top_n", "min_support"):
        count = changes.get(name)
        if isinstance(count, int) and count < 1:
            raise MapParamError(f"{name} must be at least 1")
    if changes:
        import msgspec

        settings = msgspec.structs.replace(settings, **changes)
    return filters, settings


def previous_period(filters: MapFilters, now: datetime) -> MapFilters | None:
    """The window of the same length just before this one (None without a start)."""
    if filters.since is None:
        return None
    end = filters.until or now
    import msgspec

    # Not before the earliest time events can hold (a window from 1900 has no period
    # before it: the comparison then covers what there is).
    start = max(filters.since - (end - filters.since), EARLIEST_TIME)
    return msgspec.structs.replace(filters, since=start, until=filters.since)
