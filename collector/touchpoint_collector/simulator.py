"""Persona-driven customer journeys, sent through the real SDK to a collector.

Three businesses, as journey maps are drawn for them in practice: an online shop (B2C), a
B2B SaaS and a bank. Journeys are not linear: persons go back to earlier touchpoints, take
side tracks (a support contact mid-checkout), abandon, or are still in progress; they mix
online and offline channels, start anonymous and are identified later, and leave feedback
scores. Each business has pain points planted in it, which the journey map must find:

* shop: checkout is slow and leaky (many persons stop at ``checkout_started``), and one
  product (``Trail Runner X``) comes back: returns soon after its purchase;
* saas: the wait between ``demo_requested`` and ``demo_attended`` is days, not hours;
* bank: feedback after a ``phone_call`` scores low.

Deterministic for a given seed. Timestamps spread over the last ``days`` days.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PLANTED = {
    "shop": ("dropoff", "checkout_started"),
    "saas": ("slow_step", "demo_requested"),
    "bank": ("low_score", "phone_call"),
    "shop-returns": ("post_goal_issue", "return_requested"),
}
"""The pain points the map must reveal: kind and touchpoint, per planted problem."""

RETURNING_PRODUCT = "Trail Runner X"


@dataclass
class Event:
    """One call the simulated person makes."""

    at: datetime
    touchpoint: str
    event: str
    channel: str
    properties: dict[str, Any] = field(default_factory=dict)
    identify: bool = False
    traits: dict[str, Any] = field(default_factory=dict)


@dataclass
class Person:
    source: str
    anonymous_id: str
    user_id: str
    persona: str
    events: list[Event]


class Journey:
    """A person's walk through a business, built step by step with a seeded random."""

    def __init__(self, rng: random.Random, start: datetime, now: datetime) -> None:
        self.rng = rng
        self.at = start
        self.now = now
        self.events: list[Event] = []
        self.identified = False

    def wait(self, low_minutes: float, high_minutes: float) -> None:
        self.at += timedelta(minutes=self.rng.uniform(low_minutes, high_minutes))

    def do(self, touchpoint: str, event: str, channel: str, **properties: Any) -> bool:
        """Record a touchpoint; False once the journey has run into the present."""
        if self.at >= self.now:
            return False
        self.events.append(Event(self.at, touchpoint, event, channel, properties))
        return True

    def identify(self, persona: str) -> None:
        if not self.identified and self.at < self.now:
            self.events.append(
                Event(self.at, "", "identify", "", identify=True, traits={"persona": persona})
            )
            self.identified = True

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def shop_journey(j: Journey) -> str:
    persona = j.rng.choice(["bargain_hunter", "loyal_fan", "browser"])
    first = j.rng.choice(
        [
            ("ad_click", "Ad Clicked", "paid_ads"),
            ("social_engagement", "Social Engagement", "social"),
        ]
    )
    j.do(*first)
    j.wait(1, 30)
    if j.chance(0.3):
        j.do("newsletter_signup", "Newsletter Subscribed", "email")
        j.wait(60, 60 * 24)
    for _ in range(j.rng.randint(1, 3)):  # browsing, back and forth
        j.do(
            "product_viewed",
            "Product Viewed",
            "web",
            product=j.rng.choice(["Trail Runner X", "City Walker", "Court Classic"]),
        )
        j.wait(2, 60)
        if j.chance(0.25):
            j.do("site_visit", "Page Viewed", "web")
            j.wait(1, 20)
    if persona == "browser" and j.chance(0.6):
        return persona
    if j.chance(0.15):
        j.do("store_visit", "Store Visited", "store")  # offline detour
        j.wait(60, 60 * 48)
    product = j.rng.choice(["Trail Runner X", "City Walker", "Court Classic"])
    j.do("cart_added", "Product Added", "web", product=product)
    j.wait(2, 30)
    j.identify(persona)
    if j.chance(0.15):
        j.do("product_viewed", "Product Viewed", "web", product=product)  # a step back
        j.wait(2, 20)
    j.do("checkout_started", "Checkout Started", "web", product=product)
    # planted: checkout is slow and many give up here
    if j.chance(0.55):
        if j.chance(0.3):
            j.wait(5, 60)
            j.do("support_contact", "Live Chat Conversation Started", "chat")
        return persona
    j.wait(60 * 6, 60 * 30)
    j.do(
        "purchase",
        "Order Completed",
        "web",
        product=product,
        revenue=round(j.rng.uniform(40, 160), 2),
    )
    j.wait(60 * 24, 60 * 24 * 4)
    j.do("delivery_received", "Order Delivered", "delivery", product=product)
    j.wait(60, 60 * 24 * 3)
    # planted: one product comes back
    if j.chance(0.45 if product == RETURNING_PRODUCT else 0.04):
        j.do("return_requested", "Order Returned", "web", product=product)
        j.wait(60, 60 * 24 * 2)
        j.do("refund_issued", "Order Refunded", "web", product=product)
        j.do("feedback_given", "Survey Submitted", "email", score=j.rng.randint(2, 6))
        return persona
    if j.chance(0.4):
        j.do("feedback_given", "Survey Submitted", "email", score=j.rng.randint(7, 10))
    if j.chance(0.3):
        j.wait(60 * 24, 60 * 24 * 10)
        j.do("review_posted", "Product Reviewed", "web", product=product)
    if persona == "loyal_fan" and j.chance(0.6):
        j.wait(60 * 24 * 3, 60 * 24 * 20)
        j.do(
            "repeat_purchase",
            "Order Repeated",
            "web",
            product=j.rng.choice(["City Walker", "Court Classic"]),
        )
    return persona


def saas_journey(j: Journey) -> str:
    persona = j.rng.choice(["ops_lead", "developer", "cfo"])
    j.do(
        *j.rng.choice(
            [
                ("webinar_attended", "Webinar Attended", "webinar"),
                ("podcast_listened", "Podcast Listened", "podcast"),
                ("ad_click", "Ad Clicked", "paid_ads"),
            ]
        )
    )
    j.wait(60, 60 * 72)
    j.do("site_visit", "Page Viewed", "web")
    j.wait(2, 30)
    j.do("pricing_viewed", "Pricing Viewed", "web")
    if j.chance(0.35):
        return persona
    j.identify(persona)
    j.wait(5, 60)
    j.do("demo_requested", "Demo Requested", "web")
    # planted: scheduling the demo takes days
    j.wait(60 * 24 * 3, 60 * 24 * 9)
    if j.chance(0.2):
        return persona
    j.do("demo_attended", "Demo Attended", "webinar")
    j.wait(60, 60 * 48)
    if j.chance(0.2):
        j.do("pricing_viewed", "Pricing Viewed", "web")  # back to pricing
        j.wait(60, 60 * 24)
    j.do("trial_started", "Trial Started", "app")
    j.wait(60 * 24 * 3, 60 * 24 * 12)
    if j.chance(0.3):
        return persona
    j.do("quote_requested", "Quote Requested", "sales")
    j.wait(60 * 24, 60 * 24 * 5)
    j.do("purchase", "Order Completed", "sales", plan=j.rng.choice(["team", "business"]))
    j.wait(60 * 24, 60 * 24 * 7)
    j.do("onboarding_completed", "Onboarding Completed", "app")
    if j.chance(0.3):
        j.wait(60 * 24, 60 * 24 * 10)
        j.do("feedback_given", "Survey Submitted", "email", score=j.rng.randint(6, 10))
    if j.chance(0.25):
        j.wait(60 * 24 * 5, 60 * 24 * 20)
        j.do("referral_made", "Referral Sent", "web")
    return persona


def bank_journey(j: Journey) -> str:
    persona = j.rng.choice(["student", "family", "retiree"])
    j.do("site_visit", "Page Viewed", "web")
    j.wait(5, 60 * 24)
    if persona == "retiree" or j.chance(0.3):
        j.do("store_visit", "Branch Visited", "store")
    else:
        j.do("product_viewed", "Product Viewed", "app", product="current account")
    j.wait(30, 60 * 48)
    if j.chance(0.35):
        j.do("phone_call", "Call Started", "phone")
        j.wait(10, 60)
        # planted: calls leave persons unhappy
        j.do(
            "feedback_given",
            "Survey Submitted",
            "phone",
            score=j.rng.randint(1, 5) if j.chance(0.75) else j.rng.randint(6, 9),
        )
        j.wait(60, 60 * 24)
        if j.chance(0.4):
            return persona
    j.identify(persona)
    j.do(
        "purchase",
        "Account Opened",
        "web" if persona != "retiree" else "store",
        product="current account",
    )
    j.wait(60 * 24, 60 * 24 * 5)
    j.do("app_opened", "Application Opened", "app")
    if j.chance(0.3):
        j.wait(60, 60 * 24 * 5)
        j.do("support_contact", "Support Contacted", "phone")
    if j.chance(0.4):
        j.wait(60 * 24, 60 * 24 * 6)
        j.do("feedback_given", "Survey Submitted", "app", score=j.rng.randint(6, 10))
    return persona


BUSINESSES: dict[str, Callable[[Journey], str]] = {
    "shop": shop_journey,
    "saas": saas_journey,
    "bank": bank_journey,
}


def simulate(
    persons: int, *, seed: int = 7, days: float = 60.0, now: datetime | None = None
) -> Iterator[Person]:
    """`persons` simulated persons, spread over the businesses (half of them to the shop)."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    names = ["shop", "shop", "saas", "bank"]
    for i in range(persons):
        source = names[i % len(names)]
        start = now - timedelta(days=rng.uniform(0, days))
        journey = Journey(random.Random(rng.random()), start, now)
        persona = BUSINESSES[source](journey)
        yield Person(
            source, f"anon-{source}-{i}", f"{source}-customer-{i}", persona, journey.events
        )


def send(
    persons: list[Person],
    clients: dict[str, Any],
    *,
    rate: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Send every person's events through their business's SDK client; returns the count.

    Before identification a person is anonymous (pre-login touchpoints); the identify call
    links that anonymous id to the user id, and later events carry the user id.
    """
    total = sum(len(p.events) for p in persons)
    sent = 0
    started = time.monotonic()
    for person in persons:
        client = clients[person.source]
        known = False
        for event in person.events:
            if event.identify:
                client.identify(
                    person.user_id,
                    event.traits,
                    anonymous_id=person.anonymous_id,
                    timestamp=event.at,
                )
                known = True
            else:
                client.track(
                    person.user_id if known else None,
                    event.event,
                    event.properties,
                    anonymous_id=None if known else person.anonymous_id,
                    touchpoint=event.touchpoint,
                    channel=event.channel,
                    timestamp=event.at,
                )
            sent += 1
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and sent % 200 == 0:
                progress(sent, total)
    if progress is not None:
        progress(sent, total)
    return sent


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A one-line progress bar on standard error."""
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / max(time.monotonic() - started, 1e-6)
        sys.stderr.write(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} events  {rate:,.0f}/s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
