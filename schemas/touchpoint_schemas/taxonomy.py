"""The touchpoint taxonomy: stages, channels and the standard touchpoints.

A journey map is only comparable across teams and over time if everyone means the same thing
by "consideration" or "support contact". The standard registry is that shared vocabulary; a
company's own touchpoints and renamings are declared in the collector's configuration and
merged with :meth:`Taxonomy.extended`, never by editing this module.

Event names from other trackers resolve here too: Segment's semantic event specs ("Order
Completed", "Product Viewed", ...) map onto standard touchpoints, so an app that is already
instrumented for Segment draws a journey map without a code change.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec


class Phase(enum.StrEnum):
    """Where a stage sits relative to the purchase; maps are often read in these three acts."""

    BEFORE = "before_purchase"
    DURING = "during_purchase"
    AFTER = "after_purchase"


class Stage(enum.StrEnum):
    """The journey stages, in journey order (the enum's order is the map's column order)."""

    AWARENESS = "awareness"
    CONSIDERATION = "consideration"
    PURCHASE = "purchase"
    RETENTION = "retention"
    ADVOCACY = "advocacy"

    @property
    def phase(self) -> Phase:
        return _STAGE_PHASE[self]

    @property
    def order(self) -> int:
        """Position in journey order: 0 for awareness ... 4 for advocacy."""
        return _STAGE_ORDER[self]


STAGES: Final[tuple[Stage, ...]] = tuple(Stage)
_STAGE_ORDER: Final = {stage: i for i, stage in enumerate(STAGES)}
_STAGE_PHASE: Final = {
    Stage.AWARENESS: Phase.BEFORE,
    Stage.CONSIDERATION: Phase.BEFORE,
    Stage.PURCHASE: Phase.DURING,
    Stage.RETENTION: Phase.AFTER,
    Stage.ADVOCACY: Phase.AFTER,
}

NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
"""Touchpoint and channel names: snake_case, so they read the same in SQL, URLs and charts."""
_NAME_RE: Final = re.compile(NAME_PATTERN)


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    """Where a touchpoint happens. `online` separates digital from physical contact."""

    name: str
    online: bool
    label: str = ""


class TouchpointDef(msgspec.Struct, frozen=True, kw_only=True):
    """A kind of touchpoint with the stage and channel it defaults to.

    `event_names` are the tracked event names (any spelling; they are normalised) that mean
    this touchpoint when an event carries no explicit `touchpoint` field. `carries_score` marks
    touchpoints whose `properties.score` is a 1-10 feedback score.
    """

    name: str
    stage: Stage
    channel: str
    label: str = ""
    event_names: tuple[str, ...] = ()
    carries_score: bool = False
    cross_cutting: bool = False
    """Touchpoints that can happen in any stage (support contacts); the map lanes them apart."""


STANDARD_CHANNELS: Final[tuple[Channel, ...]] = (
    Channel(name="web", online=True, label="Website"),
    Channel(name="app", online=True, label="Mobile app"),
    Channel(name="email", online=True, label="Email"),
    Channel(name="social", online=True, label="Social media"),
    Channel(name="paid_ads", online=True, label="Paid ads"),
    Channel(name="webinar", online=True, label="Webinar"),
    Channel(name="podcast", online=True, label="Podcast"),
    Channel(name="chat", online=True, label="Chat"),
    Channel(name="partner", online=False, label="Partner"),
    Channel(name="store", online=False, label="Store or branch"),
    Channel(name="phone", online=False, label="Phone"),
    Channel(name="delivery", online=False, label="Delivery"),
    Channel(name="sales", online=False, label="Sales rep"),
    Channel(name="event", online=False, label="Event or trade show"),
    Channel(name="mail", online=False, label="Direct mail"),
)


def _tp(
    name: str,
    stage: Stage,
    channel: str,
    label: str,
    *event_names: str,
    carries_score: bool = False,
    cross_cutting: bool = False,
) -> TouchpointDef:
    return TouchpointDef(
        name=name,
        stage=stage,
        channel=channel,
        label=label,
        event_names=event_names,
        carries_score=carries_score,
        cross_cutting=cross_cutting,
    )


_A, _C, _P, _R, _V = (
    Stage.AWARENESS,
    Stage.CONSIDERATION,
    Stage.PURCHASE,
    Stage.RETENTION,
    Stage.ADVOCACY,
)

STANDARD_TOUCHPOINTS: Final[tuple[TouchpointDef, ...]] = (
    # Awareness
    _tp("ad_click", _A, "paid_ads", "Ad click", "Ad Clicked", "Promotion Clicked"),
    _tp("social_engagement", _A, "social", "Social engagement", "Social Engagement"),
    _tp("newsletter_signup", _A, "email", "Newsletter signup", "Newsletter Subscribed"),
    _tp("email_opened", _A, "email", "Email opened", "Email Opened"),
    _tp("webinar_attended", _A, "webinar", "Webinar attended"),
    _tp("podcast_listened", _A, "podcast", "Podcast listened"),
    _tp("site_visit", _A, "web", "Site visit", "Page Viewed", "Site Visited"),
    # Consideration
    _tp("email_clicked", _C, "email", "Email link clicked", "Email Link Clicked"),
    _tp("product_viewed", _C, "web", "Product viewed", "Product Viewed", "Product Clicked"),
    _tp("pricing_viewed", _C, "web", "Pricing viewed"),
    _tp("demo_requested", _C, "web", "Demo requested"),
    _tp("demo_attended", _C, "webinar", "Demo attended"),
    _tp("trial_started", _C, "app", "Trial started", "Trial Started"),
    _tp("quote_requested", _C, "web", "Quote requested"),
    _tp("store_visit", _C, "store", "Store or branch visit", "Store Visited", "Branch Visited"),
    _tp("phone_call", _C, "phone", "Phone call", "Call Started"),
    # Purchase
    _tp("cart_added", _P, "web", "Added to cart", "Product Added"),
    _tp(
        "checkout_started",
        _P,
        "web",
        "Checkout started",
        "Checkout Started",
        "Checkout Step Viewed",
        "Payment Info Entered",
    ),
    _tp("booking_made", _P, "web", "Booking made", "Booking Completed"),
    _tp("account_opened", _P, "web", "Account opened", "Account Created"),
    _tp("purchase", _P, "web", "Purchase", "Order Completed", "Purchase Completed"),
    # Retention
    _tp("delivery_received", _R, "delivery", "Delivery received", "Order Delivered"),
    _tp("onboarding_completed", _R, "app", "Onboarding completed"),
    _tp("app_opened", _R, "app", "App opened", "Application Opened", "Screen Viewed"),
    _tp(
        "support_contact",
        _R,
        "chat",
        "Support contact",
        "Live Chat Conversation Started",
        "Support Ticket Created",
        "Support Contacted",
        cross_cutting=True,
    ),
    _tp(
        "feedback_given",
        _R,
        "web",
        "Feedback given",
        "Survey Submitted",
        "Feedback Submitted",
        carries_score=True,
    ),
    _tp("return_requested", _R, "web", "Return requested", "Order Returned"),
    _tp("refund_issued", _R, "web", "Refund issued", "Order Refunded"),
    _tp("repeat_purchase", _R, "web", "Repeat purchase", "Order Repeated"),
    _tp("renewal", _R, "web", "Renewal", "Subscription Renewed"),
    _tp("unsubscribed", _R, "email", "Unsubscribed", "Email Unsubscribed"),
    _tp("churned", _R, "web", "Churned", "Subscription Cancelled", "Account Deleted"),
    # Advocacy
    _tp("review_posted", _V, "web", "Review posted", "Product Reviewed"),
    _tp("referral_made", _V, "web", "Referral made", "Product Shared", "Referral Sent"),
)

PAGE_TOUCHPOINT: Final = "site_visit"
"""What a Segment `page` call is when it carries no explicit touchpoint."""
SCREEN_TOUCHPOINT: Final = "app_opened"
"""What a Segment `screen` call is when it carries no explicit touchpoint."""


def normalize_event_name(name: str) -> str:
    """Fold spellings of one event name together: "Order Completed", "order-completed" and
    "orderCompleted" all become ``order_completed``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


class TaxonomyError(ValueError):
    """An event names a touchpoint, stage or channel that the taxonomy does not know."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} - at `{path}`")
        self.path = path
        self.reason = message


class Resolution(msgspec.Struct, frozen=True):
    """What an event is on the journey map; empty strings when it is not a touchpoint."""

    touchpoint: str
    stage: str
    channel: str


UNCLASSIFIED: Final = Resolution("", "", "")
_NAME_CACHE_SIZE: Final = 10_000


class Taxonomy:
    """A closed vocabulary of touchpoints and channels, plus the event-name lookup table.

    Immutable: :meth:`extended` returns a new taxonomy, so the collector can build one from
    its configuration at start and share it between requests without locks.
    """

    def __init__(
        self,
        touchpoints: Iterable[TouchpointDef],
        channels: Iterable[Channel],
        event_map: Mapping[str, str] | None = None,
    ) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            _check_name(channel.name, "channel")
            self._channels[channel.name] = channel
        self._touchpoints: dict[str, TouchpointDef] = {}
        self._by_event: dict[str, str] = {}
        self._name_cache: dict[str, TouchpointDef | None] = {}
        for tp in touchpoints:
            _check_name(tp.name, "touchpoint")
            if tp.channel not in self._channels:
                raise ValueError(f"touchpoint {tp.name!r} names unknown channel {tp.channel!r}")
            self._touchpoints[tp.name] = tp
            self._by_event[tp.name] = tp.name
            for event_name in tp.event_names:
                self._by_event[normalize_event_name(event_name)] = tp.name
        for event_name, tp_name in (event_map or {}).items():
            if tp_name not in self._touchpoints:
                raise ValueError(
                    f"event mapping {event_name!r} names unknown touchpoint {tp_name!r}"
                )
            self._by_event[normalize_event_name(event_name)] = tp_name

    @classmethod
    def standard(cls) -> Taxonomy:
        return cls(STANDARD_TOUCHPOINTS, STANDARD_CHANNELS)

    def extended(
        self,
        touchpoints: Iterable[TouchpointDef] = (),
        channels: Iterable[Channel] = (),
        event_map: Mapping[str, str] | None = None,
    ) -> Taxonomy:
        """A taxonomy with custom entries added; an entry with a standard name overrides it."""
        merged_tps = {**self._touchpoints, **{tp.name: tp for tp in touchpoints}}
        merged_channels = {**self._channels, **{ch.name: ch for ch in channels}}
        result = Taxonomy(merged_tps.values(), merged_channels.values())
        # Keep this taxonomy's extra event mappings, then layer the new ones on top.
        for event_name, tp_name in self._by_event.items():
            result._by_event.setdefault(event_name, tp_name)
        for event_name, tp_name in (event_map or {}).items():
            if tp_name not in result._touchpoints:
                raise ValueError(
                    f"event mapping {event_name!r} names unknown touchpoint {tp_name!r}"
                )
            result._by_event[normalize_event_name(event_name)] = tp_name
        return result

    @property
    def touchpoints(self) -> tuple[TouchpointDef, ...]:
        return tuple(self._touchpoints.values())

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(self._channels.values())

    def touchpoint(self, name: str) -> TouchpointDef | None:
        return self._touchpoints.get(name)

    def channel(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def touchpoint_for_event(self, event_name: str) -> TouchpointDef | None:
        # Apps send few distinct event names: remember each spelling's answer (bounded, so a
        # sender that puts ids in event names cannot grow it without limit).
        try:
            return self._name_cache[event_name]
        except KeyError:
            pass
        tp_name = self._by_event.get(normalize_event_name(event_name))
        found = None if tp_name is None else self._touchpoints[tp_name]
        if len(self._name_cache) < _NAME_CACHE_SIZE:
            self._name_cache[event_name] = found
        return found

    def resolve(
        self,
        event_type: str,
        event_name: str | None,
        touchpoint: str | None,
        stage: str | None,
        channel: str | None,
    ) -> Resolution:
        """Place an event on the map.

        Explicit fields win over derived ones, but must name known entries: a typo in an
        explicit touchpoint is rejected (with the path), not silently mapped to nothing.
        An event with no explicit touchpoint whose name is unknown stays on record,
        unclassified, so it can be mapped later in configuration.
        """
        if stage is not None and stage not in _STAGE_ORDER:
            raise TaxonomyError(
                "$.stage", f"unknown stage {stage!r}, expected one of {_stage_list()}"
            )
        if channel is not None and channel not in self._channels:
            raise TaxonomyError(
                "$.channel",
                f"unknown channel {channel!r}; declare custom channels in the collector config",
            )
        if touchpoint is not None:
            tp = self._touchpoints.get(touchpoint)
            if tp is None:
                raise TaxonomyError(
                    "$.touchpoint",
                    f"unknown touchpoint {touchpoint!r}; declare custom touchpoints "
                    "in the collector config",
                )
        elif event_type == "track" and event_name:
            tp = self.touchpoint_for_event(event_name)
        elif event_type == "page":
            tp = self._touchpoints.get(PAGE_TOUCHPOINT)
        elif event_type == "screen":
            tp = self._touchpoints.get(SCREEN_TOUCHPOINT)
        else:
            tp = None
        if tp is None:
            return (
                Resolution("", stage or "", channel or "") if (stage or channel) else UNCLASSIFIED
            )
        return Resolution(tp.name, stage or tp.stage.value, channel or tp.channel)


def _check_name(name: str, what: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"{what} name {name!r} must match {NAME_PATTERN}")


def _stage_list() -> str:
    return ", ".join(stage.value for stage in STAGES)
