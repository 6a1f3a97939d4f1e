"""Fixtures shared by the SDK's unit and integration tests.

Defined here, with explicit names, so that ``tests/integration/test_sdk_*.py`` can import them
(``from tests.sdk.fixtures import clients_fixture  # noqa: F401``) without a conftest of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sdk.sink import WRITE_KEY, Sink, running_sink
from touchpoint import Client, Loss

FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "batch_deadline": 5.0,
    "request_timeout": 2.0,
    "shutdown_timeout": 1.0,
    "flush_timeout": 5.0,
}
"""Test timings: everything that waits, waits briefly."""

ClientFactory = Callable[..., Client]


class Losses:
    """An ``on_error`` callback that keeps what it is told."""

    def __init__(self) -> None:
        self.losses: list[Loss] = []
        self._lock = threading.Lock()

    def __call__(self, loss: Loss) -> None:
        with self._lock:
            self.losses.append(loss)

    def ids(self, reason: str | None = None) -> list[str]:
        with self._lock:
            return [
                mid
                for loss in self.losses
                if reason in (None, loss.reason)
                for mid in loss.message_ids
            ]


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(name="sink")
def sink_fixture() -> Iterator[Sink]:
    with running_sink() as sink:
        yield sink


@pytest.fixture(name="clients")
def clients_fixture(sink: Sink) -> Iterator[ClientFactory]:
    """Makes clients aimed at the sink with fast timings; shuts them all down afterwards."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        host = options.pop("host", sink.url)
        client = Client(WRITE_KEY, host=host, **{**FAST, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(0.5)
