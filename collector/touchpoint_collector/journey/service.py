"""Building a map the way users ask for it: with the comparison to the previous period,
read from a snapshot when one exists, and the result saved as a snapshot in turn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from touchpoint_collector.journey import snapshots
from touchpoint_collector.journey.build import build_map
from touchpoint_collector.journey.compare import compare
from touchpoint_collector.journey.keeper import INBOX_GRACE, INBOX_KEEPS, MapKeeper
from touchpoint_collector.journey.model import JourneyMap, MapFilters, MapSettings
from touchpoint_collector.journey.params import previous_period
from touchpoint_collector.store import Store
from touchpoint_schemas.taxonomy import Taxonomy


def current_map(
    store: Store,
    filters: MapFilters,
    settings: MapSettings,
    *,
    taxonomy: Taxonomy | None = None,
    now: datetime | None = None,
    with_comparison: bool = True,
    save: bool = True,
    keeper: MapKeeper | None = None,
    previous: MapFilters | None = None,
    inbox_grace: timedelta = INBOX_GRACE,
) -> JourneyMap:
    """`keeper`: builds the map by updating the rows it kept from its previous build
    (its own settings apply) instead of from scratch. `previous`: the window to compare
    with, when not the one of the same length just before (``previous_period``).
    `inbox_grace`: as the keeper's (``INBOX_GRACE``), for telling a backfill."""
    now = now or datetime.now(UTC)
    if keeper is not None:
        journey_map = keeper.build(filters, as_of=now)
    else:
        journey_map = build_map(store, filters, settings, as_of=now, taxonomy=taxonomy)
    before_filters = (previous or previous_period(filters, now)) if with_comparison else None
    if before_filters is not None:
        # A snapshot of the previous window is valid once built after that window closed,
        # and until events are backfilled into that window.
        before = snapshots.load(store, before_filters, settings, not_before=before_filters.until)
        if before is not None and backfilled(store, before, inbox_grace):
            before = None
        if before is None:
            before = build_map(store, before_filters, settings, as_of=now, taxonomy=taxonomy)
            if save:
                snapshots.save(store, before)
        journey_map = msgspec.structs.replace(journey_map, comparison=compare(journey_map, before))
    if save:
        snapshots.save(store, journey_map)
    return journey_map


def backfilled(store: Store, snapshot: JourneyMap, inbox_grace: timedelta = INBOX_GRACE) -> bool:
    """Whether events inside `snapshot`'s window arrived since it was built, so that the
    snapshot no longer shows that window: ``journey_inbox`` rows since then (less
    `inbox_grace`, as a kept map reads them) dated inside it, or not dated (written before
    the inbox carried events). The inbox keeps a day: an older snapshot is stale.

    Links learned since then are not looked for: the previous period keeps the identities
    known when it was built (at most a day earlier), or every sign-up would rebuild it.
    """
    # From when the build started reading, less the grace.
    since = snapshot.built_at - timedelta(seconds=snapshot.build_seconds) - inbox_grace
    if datetime.now(UTC) - since >= INBOX_KEEPS:
        return True
    window = snapshot.filters
    dated = ["timestamp < {until:DateTime64(3, 'UTC')}"]
    params: dict[str, object] = {"from": since, "until": window.until}
    if window.until is None:
        dated = ["1"]
    if window.since is not None:
        dated.append("timestamp >= {since:DateTime64(3, 'UTC')}")
        params["since"] = window.since
    found = store.query(
        f"""SELECT count() FROM journey_inbox
        WHERE arrived >= {{from:DateTime64(6, 'UTC')}} AND kind = 'event'
          AND (payload = 0 OR ({" AND ".join(dated)}))""",
        parameters=params,
    ).result_rows
    return bool(found[0][0])
