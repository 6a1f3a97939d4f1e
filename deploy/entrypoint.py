#!/usr/bin/env python3
"""The collector image's entrypoint.

``touchpoint-entrypoint``             run ``touchpoint serve`` (the default)
``touchpoint-entrypoint -- ARGS``     ``touchpoint serve ARGS``
``touchpoint-entrypoint pre-stop``    Kubernetes preStop hook: wait for the log to drain
``touchpoint-entrypoint CMD ARGS``    any other ``touchpoint`` command (``keys list``, ``migrate``)

Why serve goes through here: the loader's dedup token is ``<collector id>:<segment>:<table>``
and the write-ahead log numbers segments from 1 again whenever it starts on an empty
directory (after every clean drain). With a stable id (the pod name) a restarted collector
would reuse tokens that ClickHouse still remembers and silently drop those inserts
(docs/operations.md, "Dedup tokens across collectors and restarts"). So the id gets a
*log generation* suffix: ``<id>.g<n>``, a new ``n`` whenever the log is empty at start,
and the same ``n`` while segments from the previous run wait to be replayed (their tokens
must not change). ``n`` is kept in ``<data_dir>/collector-generation``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

GENERATION_FILE = "collector-generation"
MAX_ID = 64  # touchpoint_collector.server.collector_id_for cuts ids at 64 characters


def log_generation(data_dir: Path, now: float) -> int:
    """The generation to serve under; 0 when leftover segments predate generations."""
    path = data_dir / GENERATION_FILE
    try:
        previous = int(path.read_text().strip())
    except (OSError, ValueError):
        previous = 0
    wal = data_dir / "wal"
    if wal.is_dir() and any(wal.glob("*.wal")):
        return previous  # replay under the tokens they were written with
    generation = max(int(now), previous + 1)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        handle.write(f"{generation}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return generation


def generation_id(base: str, generation: int) -> str:
    if not generation:
        return base[:MAX_ID]
    suffix = f".g{generation}"
    return base[: MAX_ID - len(suffix)] + suffix


def serve(args: list[str]) -> None:
    from touchpoint_collector.config import load_config
    from touchpoint_collector.server import collector_id_for

    config = load_config()
    base = collector_id_for(config)  # the configured id (pod name) or the host name, cleaned
    generation = log_generation(config.data_path, time.time())
    os.environ["TOUCHPOINT_COLLECTOR_ID"] = generation_id(base, generation)
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
