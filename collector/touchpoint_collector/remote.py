"""Querying a running collector's read-only SQL endpoint (stdlib HTTP: the CLI may run
where the event loop is not)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class QueryFailed(RuntimeError):
    pass


def _fetch(request: urllib.request.Request, url: str, timeout: float) -> bytes:
    """The response body; the collector's own error message when it refuses."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        raise QueryFailed(message) from None
    except urllib.error.URLError as exc:
        raise QueryFailed(f"cannot reach the collector at {url}: {exc.reason}") from None


def _authorized(request: urllib.request.Request, read_key: str | None) -> urllib.request.Request:
    if read_key:
        request.add_header("Authorization", f"Bearer {read_key}")
    return request


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
    body = json.loads(_fetch(_authorized(request, read_key), url, timeout))
    return body["columns"], body["rows"]


def remote_map(
    url: str, query: dict[str, Any], read_key: str | None, timeout: float = 600.0
) -> Any:
    """A running collector's map for the same filters (``GET /v1/map``)."""
    import msgspec

    from touchpoint_collector.journey.model import JourneyMap

    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        name = {"sources": "source", "channels": "channel", "properties": "property"}.get(key, key)
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((name, str(item)))
    request = urllib.request.Request(f"{url}/v1/map?{urllib.parse.urlencode(pairs)}", method="GET")
    body = _fetch(_authorized(request, read_key), url, timeout)
    return msgspec.json.decode(body, type=JourneyMap)
