from __future__ import annotations

import pytest

import touchpoint
from touchpoint.testing import CaptureClient, capture
from touchpoint_schemas.events import Track
from touchpoint_schemas.taxonomy import Taxonomy


def test_capture_routes_the_module_level_api_and_restores_the_default() -> None:
    before = touchpoint.default_client()
    with capture() as tracked:
        touchpoint.purchase("u", {"revenue": 42.0})
        touchpoint.track("u", "Product Viewed")
        assert touchpoint.default_client() is tracked
    assert touchpoint.default_client() is before
    [purchase] = tracked.events_for("purchase")
    assert isinstance(purchase, Track) and purchase.properties == {"revenue": 42.0}
    assert [e.event for e in tracked.tracked()] == ["Purchase", "Product Viewed"]
    assert tracked.tracked("Product Viewed")[0].touchpoint is None


def test_events_the_collector_would_refuse_are_rejections_not_events() -> None:
    client = CaptureClient(taxonomy=Taxonomy.standard())
    ok = client.track("u", "e", touchpoint="purchase")
    bad = client.track("u", "e", touchpoint="made_up_touchpoint")
    assert [e.message_id for e in client.events] == [ok]
    [rejection] = client.rejected
    assert (rejection.message_id, rejection.code) == (bad, "unknown_taxonomy")
    assert client.stats().invalid == 1
    client.clear()
    assert client.events == [] and client.rejected == []
    with pytest.raises(LookupError):
        client.find(ok)
    client.shutdown(0)
