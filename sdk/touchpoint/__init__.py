"""Touchpoint SDK: tag customer touchpoints from shops and backends.

::

    import touchpoint

    touchpoint.init("WRITE_KEY", host="https://collector.example.com")
    touchpoint.track("user-42", "Order Completed", {"revenue": 42.0})
    touchpoint.purchase("user-42", {"revenue": 42.0})          # touchpoint, stage, channel
    touchpoint.feedback_given("user-42", score=9, channel="store")

Or an explicit client: ``client = touchpoint.Client("WRITE_KEY", host=...)``. Calls never
block and never raise; they return the event's ``messageId``. See :class:`Client` for the
lifecycle (``flush``, ``shutdown``, ``stats``) and :class:`Options` for the settings.
"""

from touchpoint import touchpoints as _touchpoints
from touchpoint._default import default_client, flush, init, set_default, shutdown, stats
from touchpoint._version import __version__
from touchpoint.client import Client
from touchpoint.options import DEFAULT_HOST, ClientOptions, ConfigError, Options
from touchpoint.stats import DROP_REASONS, DropReason, Loss, Stats
from touchpoint.touchpoints import *  # noqa: F403  (track, identify, ..., one per touchpoint)

__all__ = [
    "DEFAULT_HOST",
    "DROP_REASONS",
    "Client",
    "ClientOptions",
    "ConfigError",
    "DropReason",
    "Loss",
    "Options",
    "Stats",
    "__version__",
    "default_client",
    "flush",
    "init",
    "set_default",
    "shutdown",
    "stats",
]
__all__ += _touchpoints.__all__
