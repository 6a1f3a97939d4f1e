"""The default client behind the module-level API: ``touchpoint.init(...)``, then
``touchpoint.track(...)`` anywhere in the app.

Calls made before :func:`init` do not raise (the SDK never does, after setup): they are
dropped with one warning, because an app must not crash for want of analytics, and a missing
``init`` is a deployment mistake that the warning names.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Final, Unpack

from touchpoint.options import DEFAULT_HOST, ClientOptions
from touchpoint.stats import Stats

if TYPE_CHECKING:
    from touchpoint.client import Client

logger: Final = logging.getLogger("touchpoint")

_lock: Final = threading.Lock()
_client: Client | None = None
_unconfigured: Client | None = None


def init(write_key: str, host: str = DEFAULT_HOST, **options: Unpack[ClientOptions]) -> Client:
    """Create the default client. A previous default client is shut down (bounded by its
    ``shutdown_timeout``). Bad options raise :class:`touchpoint.ConfigError`."""
    from touchpoint.client import Client

    previous = set_default(Client(write_key, host, **options))
    if previous is not None:
        previous.shutdown()
    return default_client()


def set_default(client: Client | None) -> Client | None:
    """Install `client` as the default (None: uninstall); return the one it replaces."""
    global _client
    with _lock:
        previous, _client = _client, client
    return previous


def default_client() -> Client:
    """The client the module-level functions use."""
    client = _client
    return client if client is not None else _not_initialised()


def _not_initialised() -> Client:
    global _unconfigured
    with _lock:
        if _unconfigured is None:
            from touchpoint.client import Client

            logger.warning("touchpoint.init() has not been called: module-level calls are dropped")
            _unconfigured = Client("", disabled=True)
        return _unconfigured


def flush(timeout: float | None = None) -> int:
    """:meth:`Client.flush` on the default client."""
    return default_client().flush(timeout)


def shutdown(timeout: float | None = None) -> int:
    """:meth:`Client.shutdown` on the default client."""
    return default_client().shutdown(timeout)


def stats() -> Stats:
    """:meth:`Client.stats` of the default client."""
    return default_client().stats()
