#!/usr/bin/env python3
"""The collector image's entrypoint.

``touchpoint-entrypoint``             run ``touchpoint serve`` (the default)
``touchpoint-entrypoint -- ARGS``     ``touchpoint serve ARGS``
``touchpoint-entrypoint pre-stop``    Kubernetes preStop hook: wait for the log to drain
``touchpoint-entrypoint CMD ARGS``    any other ``touchpoint`` command (``keys list``, ``migrate``)

The collector id comes from the environment (the pod name, through the downward API).
Restarts under the same id are safe: the write-ahead log never reuses a segment number, so
the loader's dedup tokens never repeat.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request


def serve(args: list[str]) -> None:
    os.execvp("touchpoint", ["touchpoint", "serve", *args])


def readiness(url: str) -> dict[str, object]:
    """/readyz's JSON body, whether it answers 200 or 503."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as error:
        return dict(json.load(error))


def pre_stop(settle: float = 5.0, budget: float = 20.0) -> int:
    """Let the load balancer drop this pod (``settle`` seconds, while it still accepts),
    then wait up to ``budget`` seconds for the log to reach ClickHouse. SIGTERM follows,
    and the collector's own shutdown drains whatever is left within
    ``server.shutdown_timeout_seconds``."""
    port = os.environ.get("TOUCHPOINT_SERVER__PORT", "8088")
    url = f"http://127.0.0.1:{port}/readyz"
    time.sleep(settle)
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        try:
            if readiness(url).get("log_backlog_bytes") == 0:
                return 0
        except (OSError, ValueError):
            return 0  # not answering: nothing to wait for here, SIGTERM comes next
        time.sleep(0.5)
    return 0


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        serve(argv[1:] if argv[:1] == ["--"] else argv)
    elif argv[0] == "pre-stop":
        sys.exit(pre_stop())
    else:
        os.execvp("touchpoint", ["touchpoint", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
