"""Named failpoints for testing outages against the real engine.

A failpoint is on while a file of its name exists in the directory named by
``TOUCHPOINT_FAILPOINTS``. Tests that run the collector as a separate process can thus make
the store boundary fail (``store.insert``) and recover, without mocking ClickHouse. With the
variable unset (production) every check is a constant False.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def failpoint(name: str) -> Callable[[], bool]:
    directory = os.environ.get("TOUCHPOINT_FAILPOINTS")
    if not directory:
        return lambda: False
    path = Path(directory) / name
    return path.exists
