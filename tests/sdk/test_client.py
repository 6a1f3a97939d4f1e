from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import touchpoint
from tests.sdk.fixtures import ClientFactory, Losses, eventually
from tests.sdk.sink import WRITE_KEY, Sink
from touchpoint import Client
from touchpoint.testing import CaptureClient
from touchpoint_schemas.events import Alias, Group, Identify, Page, Screen, Track


@pytest.fixture(name="capture")
def capture_fixture() -> Iterator[CaptureClient]:
    client = CaptureClient()
    yield client
    client.shutdown(0)


@pytest.fixture(name="default_reset")
def default_reset_fixture() -> Iterator[None]:
    previous = touchpoint.set_default(None)
    yield
    current = touchpoint.set_default(previous)
    if current is not None:
        current.shutdown(0.5)


def test_every_call_returns_the_uuid7_its_event_carries(capture: CaptureClient) -> None:
    message_id = capture.track("user-1", "Order Completed", {"revenue": 10})
    assert uuid.UUID(message_id).version == 7
    assert capture.find(message_id).message_id == message_id


def test_segment_calls_produce_their_event_types(capture: CaptureClient) -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    ids = [
        capture.track("u", "Product Viewed", {"sku": "A"}, context={"ip": "1.2.3.4"}),
        capture.identify("u", {"plan": "pro"}, anonymous_id="anon-1"),
        capture.alias("anon-1", "u"),
        capture.group("u", "acme", {"seats": 3}),
        capture.page("u", "Docs", "Pricing", {"path": "/pricing"}, timestamp=when),
        capture.screen(anonymous_id="anon-2", name="Home"),
    ]
    events = [capture.find(mid) for mid in ids]
    assert [type(e) for e in events] == [Track, Identify, Alias, Group, Page, Screen]
    track, identify, alias, group, page, screen = events
    assert isinstance(track, Track) and track.event == "Product Viewed"
    assert track.properties == {"sku": "A"} and track.context["ip"] == "1.2.3.4"
    assert isinstance(identify, Identify) and identify.traits == {"plan": "pro"}
    assert identify.anonymous_id == "anon-1"
    assert isinstance(alias, Alias) and (alias.previous_id, alias.user_id) == ("anon-1", "u")
    assert isinstance(group, Group) and group.group_id == "acme"
    assert isinstance(page, Page) and (page.category, page.name) == ("Docs", "Pricing")
    assert page.timestamp == when
    assert isinstance(screen, Screen) and screen.anonymous_id == "anon-2"


BAD_CALLS: list[tuple[str, Callable[[Client], str]]] = [
    ("no identity", lambda c: c.track(None, "Order Completed")),
    ("no event name", lambda c: c.track("u", None)),
    ("event name not a string", lambda c: c.track("u", 123)),  # type: ignore[arg-type]
    ("empty event name", lambda c: c.track("u", "")),
    ("properties not a mapping", lambda c: c.track("u", "e", [1, 2])),  # type: ignore[arg-type]
    ("context not a mapping", lambda c: c.track("u", "e", context="x")),  # type: ignore[arg-type]
    ("touchpoint not snake_case", lambda c: c.track("u", "e", touchpoint="Big Sale")),
    ("stage not snake_case", lambda c: c.track("u", "e", stage="Later!")),
    ("channel not a string", lambda c: c.track("u", "e", channel=5)),  # type: ignore[arg-type]
    ("timestamp not a datetime", lambda c: c.track("u", "e", timestamp="now")),  # type: ignore[arg-type]
    ("user id too long", lambda c: c.track("u" * 300, "e")),
    ("user id of a strange type", lambda c: c.identify(object())),  # type: ignore[arg-type]
    ("empty message id", lambda c: c.track("u", "e", message_id="")),
    ("alias without previous id", lambda c: c.alias(None, "u")),
    ("alias without user id", lambda c: c.alias("anon", None, )),
    ("group without group id", lambda c: c.group("u", None)),
    ("page name too long", lambda c: c.page("u", name="p" * 300)),
    ("feedback score out of range", lambda c: c.feedback_given("u", score=11)),
    ("feedback score not a number", lambda c: c.feedback_given("u", score="9")),  # type: ignore[arg-type]
    ("explicit feedback without score", lambda c: c.track("u", "e", touchpoint="feedback_given")),
]  # fmt: skip


@pytest.mark.parametrize(("why", "call"), BAD_CALLS, ids=[why for why, _ in BAD_CALLS])
def test_bad_calls_never_raise_and_are_counted_and_reported(
    why: str, call: Callable[[Client], str]
) -> None:
    losses = Losses()
    client = CaptureClient(on_error=losses)
    message_id = call(client)
    assert uuid.UUID(message_id).version == 7
    assert client.events == []
    assert client.stats().invalid == 1
    assert losses.ids("invalid") == [message_id]
    client.shutdown(0)


def test_int_ids_are_coerced_like_segment(capture: CaptureClient) -> None:
    event = capture.find(capture.track(42, "Order Completed"))  # type: ignore[arg-type]
    assert event.user_id == "42"


def test_caller_message_id_is_kept(capture: CaptureClient) -> None:
    assert capture.track("u", "e", message_id="order-17-completed") == "order-17-completed"
    assert capture.events[0].message_id == "order-17-completed"


def test_nothing_raises_into_the_app_even_if_the_sdk_breaks(
    capture: CaptureClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(item: object) -> bool:
        raise RuntimeError("internal bug")

    monkeypatch.setattr(capture, "_put", broken)
    message_id = capture.track("u", "e")
    assert uuid.UUID(message_id).version == 7
    assert capture.stats().invalid == 1


def test_queued_events_do_not_change_when_the_caller_reuses_its_dict(
    clients: ClientFactory, sink: Sink
) -> None:
    client = clients(flush_interval=5.0)
    properties = {"step": 1}
    ids = []
    for step in range(1, 4):
        properties["step"] = step
        ids.append(client.track("u", "Checkout Step Viewed", properties))
    assert client.flush(5) == 0
    by_id = {e.message_id: e for e in sink.events}
    assert [by_id[mid].properties["step"] for mid in ids] == [1, 2, 3]  # type: ignore[union-attr]


def test_helpers_fill_touchpoint_stage_and_channel_from_the_taxonomy(
    capture: CaptureClient,
) -> None:
    capture.newsletter_signup("u", {"list": "weekly"})
    capture.store_visit(anonymous_id="anon", properties={"store": "Lyon"})
    capture.support_contact("u", channel="phone")
    capture.purchase("u", {"revenue": 99.0}, stage="retention", event="Order Completed")
    signup, visit, support, purchase = capture.events
    assert (signup.touchpoint, signup.stage, signup.channel) == (
        "newsletter_signup",
        "awareness",
        "email",
    )
    assert isinstance(signup, Track) and signup.event == "Newsletter signup"
    assert (visit.touchpoint, visit.stage, visit.channel) == (
        "store_visit",
        "consideration",
        "store",
    )
    assert (support.stage, support.channel) == ("retention", "phone")
    assert isinstance(purchase, Track) and purchase.event == "Order Completed"
    assert (purchase.touchpoint, purchase.stage, purchase.channel) == (
        "purchase",
        "retention",
        "web",
    )


def test_feedback_helper_carries_the_score_in_properties(capture: CaptureClient) -> None:
    event = capture.find(capture.feedback_given("u", {"comment": "great"}, score=9))
    assert isinstance(event, Track)
    assert event.properties == {"comment": "great", "score": 9}
    assert event.touchpoint == "feedback_given"


def test_module_level_api_uses_the_default_client(sink: Sink, default_reset: None) -> None:
    client = touchpoint.init(WRITE_KEY, host=sink.url, flush_interval=0.05)
    assert touchpoint.default_client() is client
    ids = [touchpoint.track("u", "Order Completed"), touchpoint.demo_requested("u")]
    assert touchpoint.flush(5) == 0
    assert set(sink.ids()) == set(ids)
    assert touchpoint.stats().sent == 2
    replacement = touchpoint.init(WRITE_KEY, host=sink.url)
    assert client.stats().pending == 0 and touchpoint.default_client() is replacement
    touchpoint.track("u", "after")  # the replaced client is shut down, the new one used
    assert client.stats().shutdown == 0


def test_module_level_calls_before_init_are_dropped_with_a_warning(
    default_reset: None, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = touchpoint.track("u", "Order Completed")
    assert uuid.UUID(message_id).version == 7
    assert "touchpoint.init() has not been called" in caplog.text


def test_disabled_client_sends_nothing_and_starts_no_thread(sink: Sink) -> None:
    client = Client(WRITE_KEY, host=sink.url, disabled=True)
    assert uuid.UUID(client.track("u", "e")).version == 7
    assert client.flush(1) == 0
    assert not client._worker.started
    assert sink.requests == [] and client.stats().enqueued == 0


def test_sync_mode_has_sent_the_event_when_the_call_returns(
    clients: ClientFactory, sink: Sink
) -> None:
    client = clients(sync_mode=True)
    message_id = client.track("u", "Order Completed")
    assert set(sink.ids()) == {message_id}
    assert not client._worker.started
    assert client.stats().sent == 1


def test_calls_after_shutdown_are_dropped_as_shutdown(clients: ClientFactory) -> None:
    losses = Losses()
    client = clients(on_error=losses)
    assert client.shutdown(1) == 0
    assert client.shutdown(1) == 0  # idempotent
    message_id = client.track("u", "late")
    assert client.stats().shutdown == 1
    assert losses.ids("shutdown") == [message_id]


def test_before_send_scrubs_pii_before_it_leaves_the_process(
    clients: ClientFactory, sink: Sink
) -> None:
    def scrub(event: Any) -> Any:
        event.properties.pop("email", None)
        return None if event.properties.get("internal") else event

    client = clients(before_send=scrub)
    kept = client.track("u", "Signed Up", {"email": "a@b.c", "plan": "pro"})
    client.track("u", "Signed Up", {"internal": True})
    assert client.flush(5) == 0
    [event] = sink.events
    assert event.message_id == kept
    assert event.properties == {"plan": "pro"}  # type: ignore[union-attr]
    assert client.stats().filtered == 1


def test_debug_sets_the_sdk_logger_level_and_adds_no_handler() -> None:
    logger = logging.getLogger("touchpoint")
    level, handlers = logger.level, list(logger.handlers)
    try:
        Client("k", debug=True, disabled=True).shutdown(0)
        assert logger.level == logging.DEBUG
        assert logger.handlers == handlers
    finally:
        logger.setLevel(level)


def test_stats_and_context_manager(clients: ClientFactory, sink: Sink) -> None:
    with clients() as client:
        client.track("u", "e")
    stats = client.stats()
    assert (stats.enqueued, stats.sent, stats.pending, stats.dropped) == (1, 1, 0, 0)
    assert "touchpoint.Client" in repr(client)


async def test_aflush_waits_off_the_event_loop(clients: ClientFactory, sink: Sink) -> None:
    client = clients(flush_interval=10.0)
    client.track("u", "e")
    assert await client.aflush(5) == 0
    assert len(sink.ids()) == 1
    assert await client.ashutdown(1) == 0


def test_a_child_without_fork_hooks_resets_on_its_first_call(clients: ClientFactory) -> None:
    """What the pid check on the hot path does when a server forked without running
    Python's fork hooks (simulated: the client believes it lives in another process)."""
    client = clients(flush_interval=60.0)
    client.track("u", "parent event")
    parent_queue = client._queue
    client._pid = -1
    client.track("u", "child event")
    assert client._queue is not parent_queue
    assert len(client._queue) == 1  # only the child's own event
    assert client.stats().enqueued == 1


def test_misspelled_options_are_ignored_with_a_warning(
    capture: CaptureClient, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = capture.identify("u", {"plan": "pro"}, contxt={"ip": "1.2.3.4"})  # type: ignore[call-arg]
    assert capture.find(message_id).context == {}
    assert "identify(): unknown option(s) ignored: contxt" in caplog.text


def test_on_error_never_runs_on_the_callers_thread(clients: ClientFactory) -> None:
    threads: list[str] = []
    client = clients(on_error=lambda loss: threads.append(threading.current_thread().name))
    client.track(None, "no identity")  # invalid, and the very first call of this client
    assert client.flush(5) == 0
    assert eventually(lambda: threads == ["touchpoint-worker"])
