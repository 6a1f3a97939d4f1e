"""Querying a running collector's read-only SQL endpoint (stdlib HTTP: the CLI may run
where the event loop is not)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class QueryFailed(RuntimeError):
    pass


def remote_query(
    url: str, sql: str, read_key: str | None, *, final: bool = True, timeout: float = 60.0
) -> tuple[list[str], list[list[Any]]]:
    target = url if final else f"{url}?final=0"
    request = urllib.request.Request(
        target,
        data=json.dumps({"query": sql}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if read_key:
        request.add_header("Authorization", f"Bearer {read_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        raise QueryFailed(message) from None
    except urllib.error.URLError as exc:
        raise QueryFailed(f"cannot reach the collector at {url}: {exc.reason}") from None
    return body["columns"], body["rows"]
