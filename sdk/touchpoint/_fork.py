"""Fork safety: a forked child starts every client afresh.

After ``fork()`` the child has a copy of the parent's queue, locks (possibly held by a worker
thread that does not exist in the child) and keep-alive socket. If the child used them, the
parent's pending events would be sent twice and the two processes would interleave bytes on
one connection. So each client, in the child, gets a fresh queue, lock, connection, id
sequence and counters, and the parent's pending events stay the parent's to send.

Two mechanisms, because one is not enough: ``os.register_at_fork`` covers ``os.fork()``,
``multiprocessing`` and gunicorn; servers that fork from C without running Python's fork
hooks (uWSGI without ``--enable-threads``/``py-call-osafterfork``) are caught by the hot
path's pid check, which performs the same reset on the child's first call.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_clients: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def watch(client: ForkAware) -> None:
    """Reset `client` in every forked child (held weakly: watching never keeps it alive)."""
    _clients.add(client)


def _reset_in_child() -> None:
    for client in list(_clients):
        client._after_fork()


os.register_at_fork(after_in_child=_reset_in_child)
