from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from touchpoint_schemas import STAGES, Channel, Phase, Stage, Taxonomy, TaxonomyError, TouchpointDef
from touchpoint_schemas.taxonomy import normalize_event_name

REQUIRED = [
    "ad_click",
    "social_engagement",
    "newsletter_signup",
    "webinar_attended",
    "podcast_listened",
    "site_visit",
    "product_viewed",
    "pricing_viewed",
    "demo_requested",
    "demo_attended",
    "trial_started",
    "quote_requested",
    "booking_made",
    "cart_added",
    "checkout_started",
    "purchase",
    "delivery_received",
    "onboarding_completed",
    "support_contact",
    "feedback_given",
    "return_requested",
    "refund_issued",
    "repeat_purchase",
    "renewal",
    "review_posted",
    "referral_made",
    "unsubscribed",
    "churned",
    "store_visit",
    "phone_call",
]


def test_stages_are_ordered_with_phases() -> None:
    assert [s.value for s in STAGES] == [
        "awareness",
        "consideration",
        "purchase",
        "retention",
        "advocacy",
    ]
    assert [s.order for s in STAGES] == [0, 1, 2, 3, 4]
    assert [s.phase for s in STAGES] == [
        Phase.BEFORE,
        Phase.BEFORE,
        Phase.DURING,
        Phase.AFTER,
        Phase.AFTER,
    ]


def test_standard_registry_has_every_required_touchpoint() -> None:
    taxonomy = Taxonomy.standard()
    for name in REQUIRED:
        tp = taxonomy.touchpoint(name)
        assert tp is not None, name
        assert taxonomy.channel(tp.channel) is not None
    feedback = taxonomy.touchpoint("feedback_given")
    assert feedback is not None
    assert feedback.carries_score
    support = taxonomy.touchpoint("support_contact")
    assert support is not None
    assert support.cross_cutting


def test_channels_are_marked_online_or_offline() -> None:
    taxonomy = Taxonomy.standard()
    assert taxonomy.channel("web") == Channel(name="web", online=True, label="Website")
    for name in ("store", "phone"):
        channel = taxonomy.channel(name)
        assert channel is not None
        assert not channel.online
    for name in ("web", "app", "email", "social", "paid_ads", "webinar", "podcast", "chat"):
        channel = taxonomy.channel(name)
        assert channel is not None
        assert channel.online


@pytest.mark.parametrize(
    ("event_name", "touchpoint", "stage"),
    [
        ("Order Completed", "purchase", "purchase"),
        ("Order Refunded", "refund_issued", "retention"),
        ("Product Viewed", "product_viewed", "consideration"),
        ("Checkout Started", "checkout_started", "purchase"),
        ("Trial Started", "trial_started", "consideration"),
        ("Email Link Clicked", "email_clicked", "consideration"),
        ("Live Chat Conversation Started", "support_contact", "retention"),
        ("newsletter_signup", "newsletter_signup", "awareness"),
        ("Newsletter Signup", "newsletter_signup", "awareness"),
        ("demoRequested", "demo_requested", "consideration"),
    ],
)
def test_event_names_resolve_through_segment_specs(
    event_name: str, touchpoint: str, stage: str
) -> None:
    placed = Taxonomy.standard().resolve("track", event_name, None, None, None)
    assert (placed.touchpoint, placed.stage) == (touchpoint, stage)


def test_explicit_fields_win_and_are_checked() -> None:
    taxonomy = Taxonomy.standard()
    placed = taxonomy.resolve("track", "Order Completed", "store_visit", "consideration", "phone")
    assert (placed.touchpoint, placed.stage, placed.channel) == (
        "store_visit",
        "consideration",
        "phone",
    )
    with pytest.raises(TaxonomyError) as info:
        taxonomy.resolve("track", "x", "teleported", None, None)
    assert info.value.path == "$.touchpoint"
    with pytest.raises(TaxonomyError):
        taxonomy.resolve("track", "x", None, "nirvana", None)
    with pytest.raises(TaxonomyError):
        taxonomy.resolve("track", "x", None, None, "carrier_pigeon")


def test_page_screen_and_unknown_events() -> None:
    taxonomy = Taxonomy.standard()
    assert taxonomy.resolve("page", "Home", None, None, None).touchpoint == "site_visit"
    assert taxonomy.resolve("screen", None, None, None, None).touchpoint == "app_opened"
    assert taxonomy.resolve("track", "Something Custom", None, None, None).touchpoint == ""
    assert taxonomy.resolve("identify", None, None, None, None).touchpoint == ""


def test_custom_entries_extend_and_override() -> None:
    custom = Taxonomy.standard().extended(
        touchpoints=[
            TouchpointDef(
                name="branch_appointment",
                stage=Stage.CONSIDERATION,
                channel="branch",
                event_names=("Appointment Booked",),
            ),
            TouchpointDef(name="purchase", stage=Stage.PURCHASE, channel="store"),
        ],
        channels=[Channel(name="branch", online=False)],
        event_map={"Signup Finished": "newsletter_signup"},
    )
    assert (
        custom.resolve("track", "Appointment Booked", None, None, None).touchpoint
        == "branch_appointment"
    )
    assert custom.resolve("track", "Order Completed", None, None, None).channel == "store"
    assert (
        custom.resolve("track", "signup-finished", None, None, None).touchpoint
        == "newsletter_signup"
    )
    # the standard taxonomy is untouched
    assert Taxonomy.standard().touchpoint("branch_appointment") is None


def test_bad_custom_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        Taxonomy.standard().extended(
            touchpoints=[TouchpointDef(name="x", stage=Stage.PURCHASE, channel="nope")]
        )
    with pytest.raises(ValueError, match="must match"):
        Taxonomy.standard().extended(channels=[Channel(name="Bad Name", online=True)])
    with pytest.raises(ValueError, match="unknown touchpoint"):
        Taxonomy.standard().extended(event_map={"x": "nope"})


@given(st.text(max_size=40))
def test_normalising_is_idempotent(name: str) -> None:
    once = normalize_event_name(name)
    assert normalize_event_name(once) == once
    assert once == "" or once[0] != "_"
