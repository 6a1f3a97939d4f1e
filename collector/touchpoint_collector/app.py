"""The collector's HTTP API (aiohttp).

Request path for events: read the body under a hard cap (decompressing gzip as a stream),
authenticate the source, rate-limit it, judge each event, append the request's rows -
accepted and rejected alike - to the write-ahead log, and only then answer. Nothing here
touches ClickHouse; the loader does, in the background.

Bad input of any kind gets a 4xx with a JSON body that says what was wrong; a 500 means a
bug in the collector.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog
from aiohttp import web
from clickhouse_connect.driver.client import Client

from touchpoint_collector import sqlguard, viewer
from touchpoint_collector.config import Config
from touchpoint_collector.enrich import Arrival, anonymize_ip
from touchpoint_collector.ingest import Prepared, prepare_batch, prepare_single, rejected_row
from touchpoint_collector.journey.params import MapParamError
from touchpoint_collector.keys import KeyKind, KeyStore
from touchpoint_collector.loader import Loader, WalRecord, encode_record
from touchpoint_collector.mapservice import MapService
from touchpoint_collector.metrics import Metrics
from touchpoint_collector.ratelimit import RateLimited, RateLimiter
from touchpoint_collector.store import Store
from touchpoint_collector.wal import WalClosedError, WalFullError, WriteAheadLog
from touchpoint_collector.writer import encode_rows
from touchpoint_schemas.decode import ContractError, ErrorCode
from touchpoint_schemas.taxonomy import Taxonomy

log = structlog.get_logger("touchpoint.collector")

SINGLE_EVENT_ENDPOINTS: Final = ("track", "identify", "alias", "page", "screen", "group")
ANALYTICS_JS_PATHS: Final = {
    "t": "track",
    "i": "identify",
    "a": "alias",
    "p": "page",
    "s": "screen",
    "g": "group",
}
"""The one-letter paths analytics.js (analytics-next) posts to under its ``apiHost``, with
``/b`` for batches: without them, a browser app could not send here by changing only the
host."""
RETRY_AFTER_FULL: Final = 5
READ_KEY_COOKIE: Final = "tp_read_key"
SOURCE: Final = web.RequestKey("source", str)
"""The authenticated source of a request, for metrics and logs."""
_json = msgspec.json.Encoder(enc_hook=str)  # IPs, Decimals... from query results


class HttpError(Exception):
    """A refusal with a status and a JSON explanation."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json.encode(body), status=status, content_type="application/json", headers=headers
    )


@dataclass(frozen=True)
class Caller:
    source: str
    key_id: str


class CollectorApp:
    """Everything a request needs, built once at start."""

    def __init__(
        self,
        config: Config,
        store: Store,
        wal: WriteAheadLog,
        loader: Loader,
        keys: KeyStore,
        metrics: Metrics,
        collector_id: str,
    ) -> None:
        self.config = config
        self.store = store
        self.wal = wal
        self.loader = loader
        self.keys = keys
        self.metrics = metrics
        self.collector_id = collector_id
        self.taxonomy: Taxonomy = config.build_taxonomy()
        self.limiter = RateLimiter(config)
        self.limits = config.limits
        self.accepting = True
        self._query_client: Client | None = None
        self.maps: MapService | None = None
        self._query_lock = asyncio.Lock()
        metrics.gauge("touchpoint_wal_backlog_bytes", lambda: wal.backlog_bytes)
        metrics.gauge("touchpoint_wal_oldest_unloaded_seconds", wal.oldest_unloaded_age)
        metrics.gauge("touchpoint_wal_fsyncs_total", lambda: wal.fsyncs)
        metrics.gauge("touchpoint_ready", lambda: 1.0 if self.ready()[0] else 0.0)

    # -- wiring ----------------------------------------------------------------------

    def build(self) -> web.Application:
        app = web.Application(
            middlewares=[self.errors_middleware], client_max_size=self.limits.max_batch_bytes
        )
        app.router.add_post("/v1/batch", self.handle_batch)
        app.router.add_post("/v1/import", self.handle_batch)
        for kind in SINGLE_EVENT_ENDPOINTS:
            app.router.add_post(f"/v1/{kind}", self.single_handler(kind))
        for short, kind in ANALYTICS_JS_PATHS.items():
            app.router.add_post(f"/v1/{short}", self.single_handler(kind))
        app.router.add_post("/v1/b", self.handle_batch)
        app.router.add_route("OPTIONS", "/v1/{tail:.*}", self.handle_preflight)
        app.router.add_post("/v1/query", self.handle_query)
        app.router.add_get("/v1/map", self.handle_map)
        viewer.register(app, self)
        app.router.add_get("/healthz", self.handle_healthz)
        app.router.add_get("/readyz", self.handle_readyz)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

    @web.middleware
    async def errors_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        source = "-"
        try:
            response: web.StreamResponse = await handler(request)
        except HttpError as exc:
            response = json_response(
                {"success": False, "error": {"code": exc.code, "message": exc.message}},
                exc.status,
                exc.headers,
            )
        except web.HTTPException as exc:
            response = json_response(
                {
                    "success": False,
                    "error": {
                        "code": exc.reason.lower().replace(" ", "_"),
                        "message": exc.text or exc.reason,
                    },
                },
                exc.status,
            )
        except Exception:
            log.exception("request failed", path=request.path)
            response = json_response(
                {"success": False, "error": {"code": "internal", "message": "internal error"}}, 500
            )
        source = request.get(SOURCE, source)
        self._cors_headers(request, response)
        self.metrics.inc(
            "touchpoint_requests_total",
            endpoint=_endpoint_label(request),
            source=source,
            status=str(response.status),
        )
        if request.path.startswith("/v1/") and request.method == "POST":
            self.metrics.observe("touchpoint_request_seconds", time.perf_counter() - started)
            log.debug("request", path=request.path, status=response.status, source=source)
        return response

    # -- events ----------------------------------------------------------------------

    async def handle_batch(self, request: web.Request) -> web.Response:
        body = await self.read_body(request, self.limits.max_batch_bytes)
        caller = self.authenticate(request, body)
        arrival = self.arrival(request, caller)
        try:
            prepared, arrival = prepare_batch(
                body,
                arrival,
                self.taxonomy,
                max_events=self.limits.max_batch_events,
                max_event_bytes=self.limits.max_event_bytes,
            )
        except ContractError as error:
            await self.dead_letter_request(request, arrival, error, body)
            status = 413 if error.code is ErrorCode.TOO_MANY_EVENTS else 400
            raise HttpError(status, error.code.value, str(error)) from None
        return await self.commit(request, caller, arrival, prepared)

    def single_handler(self, kind: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            # A single event a little over the limit is read, so that it is refused as an
            # event: with its message id and reason, and dead-lettered (413).
            body = await self.read_body(request, self.limits.max_event_bytes, slack=1024)
            caller = self.authenticate(request, body)
            arrival = self.arrival(request, caller)
            prepared = prepare_single(
                body, kind, arrival, self.taxonomy, max_event_bytes=self.limits.max_event_bytes
            )
            return await self.commit(request, caller, arrival, prepared)

        return handle

    async def commit(
        self, request: web.Request, caller: Caller, arrival: Arrival, prepared: Prepared
    ) -> web.Response:
        """Log the rows durably, then report. All-rejected requests are a 400 (nothing to
        retry), partial ones a 200 that lists the rejected events."""
        total = prepared.accepted + len(prepared.rejections)
        try:
            self.limiter.check(caller.source, total)
        except RateLimited as exc:
            raise HttpError(
                429,
                "rate_limited",
                str(exc),
                {"Retry-After": retry_after_seconds(exc.retry_after)},
            ) from None
        record = WalRecord(
            e=encode_rows(prepared.events),
            i=encode_rows(prepared.identities),
            r=prepared.rejected_rows(arrival, request.path),
        )
        await self.append(encode_record(record))
        self.metrics.inc(
            "touchpoint_events_total", prepared.accepted, source=caller.source, outcome="accepted"
        )
        if prepared.rejections:
            self.metrics.inc(
                "touchpoint_events_total",
                len(prepared.rejections),
                source=caller.source,
                outcome="rejected",
            )
            for rejection in prepared.rejections:
                self.metrics.inc(
                    "touchpoint_rejected_total",
                    reason=rejection.error.code.value,
                    source=caller.source,
                )
        body = {
            "success": prepared.accepted > 0 or total == 0,
            "accepted": prepared.accepted,
            "rejected": [r.as_dict() for r in prepared.rejections],
        }
        status = 200 if body["success"] else 400
        if not body["success"] and all(
            r.error.code is ErrorCode.EVENT_TOO_LARGE for r in prepared.rejections
        ):
            status = 413  # every event over the limit: the body is, as a whole
        return json_response(body, status)

    async def append(self, payload: bytes) -> None:
        if not self.accepting:
            raise HttpError(
                503, "shutting_down", "the collector is shutting down", {"Retry-After": "1"}
            )
        try:
            await self.wal.append(payload)
        except WalFullError as exc:
            raise HttpError(
                503,
                "backlog_full",
                f"ClickHouse is behind; retry later ({exc})",
                {"Retry-After": str(RETRY_AFTER_FULL)},
            ) from None
        except WalClosedError:
            raise HttpError(
                503, "shutting_down", "the collector is shutting down", {"Retry-After": "1"}
            ) from None

    async def dead_letter_request(
        self, request: web.Request, arrival: Arrival, error: ContractError, body: bytes
    ) -> None:
        """A request refused as a whole still leaves its body in ``rejected_events``."""
        row = rejected_row(arrival, request.path, error, body[: self.limits.max_batch_bytes])
        self.metrics.inc(
            "touchpoint_rejected_total", reason=error.code.value, source=arrival.source
        )
        try:
            await self.append(encode_record(WalRecord(r=[row])))
        except HttpError:
            log.warning(
                "could not dead-letter a refused request",
                source=arrival.source,
                code=error.code.value,
            )

    async def read_body(self, request: web.Request, limit: int, *, slack: int = 0) -> bytes:
        """The request body, decompressed, never more than `limit` bytes (413 beyond); an
        uncompressed one may be `slack` bytes over, for the caller to refuse itself."""
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        encoding = "gzip" if encoding == "x-gzip" else encoding  # the same (RFC 9110)
        if encoding not in ("identity", "gzip", "deflate", ""):
            raise HttpError(
                415,
                "unsupported_encoding",
                f"Content-Encoding {encoding!r} is not supported; use gzip",
            )
        compressed = encoding in ("gzip", "deflate")
        wire_limit = limit + slack if not compressed else limit
        if request.content_length is not None and request.content_length > wire_limit:
            raise self._too_large(limit)
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        decompressor = zlib.decompressobj(wbits=wbits) if compressed else None
        parts: list[bytes] = []
        received = produced = 0
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                received += len(chunk)
                if received > wire_limit:
                    raise self._too_large(limit)
                if decompressor is None:
                    parts.append(chunk)
                    continue
                while chunk:
                    if decompressor.eof:
                        if not chunk.strip(b"\0"):
                            break  # zero padding after the stream, as some writers add
                        if encoding != "gzip":
                            raise HttpError(400, "bad_compression", "data after the deflate stream")
                        # The next member: a gzip body may hold several (RFC 1952), and
                        # anything else after one fails as a member, not ignored.
                        decompressor = zlib.decompressobj(wbits=wbits)
                    out = decompressor.decompress(chunk, limit - produced + 1)
                    produced += len(out)
                    if produced > limit or decompressor.unconsumed_tail:
                        raise self._too_large(limit, decompressed=True)
                    parts.append(out)
                    chunk = decompressor.unused_data if decompressor.eof else b""
            if decompressor is not None:
                tail = decompressor.flush()
                produced += len(tail)
                if produced > limit:
                    raise self._too_large(limit, decompressed=True)
                parts.append(tail)
                if not decompressor.eof:
                    raise HttpError(400, "bad_compression", "the gzip body is truncated")
        except zlib.error as exc:
            raise HttpError(
                400, "bad_compression", f"the body is not valid {encoding}: {exc}"
            ) from None
        return b"".join(parts)

    @staticmethod
    def _too_large(limit: int, decompressed: bool = False) -> HttpError:
        what = "decompressed body" if decompressed else "body"
        return HttpError(413, "payload_too_large", f"the {what} exceeds {limit} bytes")

    # -- auth ------------------------------------------------------------------------

    def authenticate(
        self, request: web.Request, body: bytes | None, kind: KeyKind = KeyKind.WRITE
    ) -> Caller:
        """Write key as Basic username (Segment), Bearer token, or ``writeKey`` in the body."""
        key = _key_from_headers(request)
        if key is None and body is not None and kind is KeyKind.WRITE:
            key = _key_from_body(body)
        if key is None:
            raise HttpError(
                401,
                "unauthenticated",
                "send the write key as the Basic auth username, a Bearer token, or writeKey in the body",
                {"WWW-Authenticate": 'Basic realm="touchpoint"'},
            )
        record = self.keys.authenticate(key, kind)
        if record is None:
            raise HttpError(
                401,
                "invalid_key",
                f"unknown, revoked or wrong kind of key (a {kind.value} key is needed)",
            )
        request[SOURCE] = record.source
        self._check_origin(request, record.source)
        return Caller(record.source, record.id)

    def authorize_read(self, request: web.Request) -> None:
        """A read key as Bearer token, or in the viewer's cookie (browsers cannot set
        headers when they open a page); or nothing on loopback when so configured."""
        if self.config.server.open_read_on_loopback and _is_loopback(request.remote):
            return
        cookie = request.cookies.get(READ_KEY_COOKIE)
        if cookie and "Authorization" not in request.headers:
            record = self.keys.authenticate(cookie, KeyKind.READ)
            if record is not None:
                request[SOURCE] = record.source
                return
        self.authenticate(request, None, KeyKind.READ)

    def arrival(self, request: web.Request, caller: Caller) -> Arrival:
        ip = _client_ip(request, self.config.server.trust_forwarded_for)
        if self.config.server.anonymize_ip:
            ip = anonymize_ip(ip)
        return Arrival(
            source=caller.source,
            received_at=datetime.now(UTC),
            collector_id=self.collector_id,
            client_ip=ip,
            user_agent=request.headers.get("User-Agent", "")[:512],
        )

    # -- CORS ------------------------------------------------------------------------

    def _origin_allowed(self, source: str | None, origin: str) -> bool:
        if source is None:
            return any(self._origin_allowed(name, origin) for name in self.config.sources)
        allowed = self.config.source(source).allowed_origins
        return "*" in allowed or origin in allowed

    def _check_origin(self, request: web.Request, source: str) -> None:
        origin = request.headers.get("Origin")
        if origin and not self._origin_allowed(source, origin):
            raise HttpError(
                403,
                "origin_not_allowed",
                f"origin {origin} may not send for source {source!r}; add it to sources.{source}.allowed_origins",
            )

    def _cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if not origin:
            return
        if self._origin_allowed(request.get(SOURCE), origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    async def handle_preflight(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        if not origin or not self._origin_allowed(None, origin):
            return web.Response(status=403)
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
                "Access-Control-Max-Age": "86400",
                "Vary": "Origin",
            },
        )

    # -- analysts --------------------------------------------------------------------

    async def handle_query(self, request: web.Request) -> web.Response:
        """Read-only SQL for the embedded store's analysts: reads of the store only
        (``sqlguard``), with row and time caps."""
        self.authorize_read(request)
        raw = await self.read_body(request, 1024 * 1024)
        sql = _query_text(raw, request.content_type)
        settings = {
            "readonly": 2,
            "max_result_rows": self.config.query.max_rows,
            "result_overflow_mode": "throw",
            "max_execution_time": self.config.query.max_seconds,
            "final": 1,
        }
        if request.query.get("final") == "0":
            settings["final"] = 0
        started = time.perf_counter()
        async with self._query_lock:
            if self._query_client is None:
                self._query_client = self.store.new_client()
            client = self._query_client
            try:
                columns, types, rows = await asyncio.to_thread(_run_query, client, sql, settings)
            except sqlguard.QueryRefused as exc:
                raise HttpError(400, "query_refused", str(exc)) from None
            except Exception as exc:
                # A query that failed mid-stream can leave unread data on an embedded
                # client's handle, which the next query would then misread: start afresh.
                self._query_client = None
                await asyncio.to_thread(client.close)
                raise HttpError(400, "query_failed", _clickhouse_message(exc)) from None
        return json_response(
            {
                "columns": columns,
                "types": types,
                "rows": rows,
                "elapsed": round(time.perf_counter() - started, 6),
            }
        )

    async def handle_map(self, request: web.Request) -> web.Response:
        """The journey map as JSON (read key); filters as query parameters."""
        self.authorize_read(request)
        if self.maps is None:
            raise HttpError(503, "map_unavailable", "the map service is not running")
        query = {key: request.query.getall(key) for key in request.query}
        try:
            journey_map = await self.maps.for_request(query)
        except MapParamError as exc:
            raise HttpError(400, "bad_map_request", str(exc)) from None
        return web.Response(body=msgspec.json.encode(journey_map), content_type="application/json")

    # -- ops -------------------------------------------------------------------------

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks = {
            "accepting": self.accepting,
            "store": self.loader.healthy,
            "log_below_cap": not self.wal.full,
        }
        return all(checks.values()), {
            **checks,
            "log_backlog_bytes": self.wal.backlog_bytes,
            "log_oldest_unloaded_seconds": round(self.wal.oldest_unloaded_age(), 3),
        }

    async def handle_readyz(self, request: web.Request) -> web.Response:
        ok, details = self.ready()
        if ok and not await asyncio.to_thread(self.store.ping):
            ok, details["store"] = False, False
        return json_response({"ready": ok, **details}, 200 if ok else 503)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")


# -- helpers ---------------------------------------------------------------------------


def _endpoint_label(request: web.Request) -> str:
    route = request.match_info.route.resource
    return route.canonical if route is not None else "unmatched"


def _key_from_headers(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(
                401, "unauthenticated", "malformed Basic authorization header"
            ) from None
        username = decoded.partition(":")[0]
        return username or None
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class _WriteKeyProbe(msgspec.Struct, rename="camel"):
    write_key: Any = None


_probe = msgspec.json.Decoder(_WriteKeyProbe)


def _key_from_body(body: bytes) -> str | None:
    try:
        key = _probe.decode(body).write_key
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return key if isinstance(key, str) and key else None


def _client_ip(request: web.Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote or ""


def _is_loopback(remote: str | None) -> bool:
    return remote in ("127.0.0.1", "::1") or (remote or "").startswith("127.")


class _QueryBody(msgspec.Struct):
    query: str


def _query_text(raw: bytes, content_type: str) -> str:
    if content_type == "application/json":
        try:
            return msgspec.json.decode(raw, type=_QueryBody).query
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise HttpError(
                400, "bad_query_body", f'send {{"query": "SELECT ..."}} or plain SQL: {exc}'
            ) from None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise HttpError(400, "bad_query_body", "the query is not valid UTF-8") from None


def _run_query(
    client: Client, sql: str, settings: dict[str, Any]
) -> tuple[list[str], list[str], list[list[Any]]]:
    """Check that the query only reads the store (``sqlguard``), then query and materialise
    every row in the worker thread (results stream lazily)."""
    tree = client.query(f"EXPLAIN AST {sql}")  # parses only; settings would show in the tree
    sqlguard.check("\n".join(str(row[0]) for row in tree.result_rows))
    result = client.query(sql, settings=settings)
    rows = [list(row) for row in result.result_rows]
    return list(result.column_names), [t.name for t in result.column_types], rows


def _clickhouse_message(exc: Exception) -> str:
    text = str(exc)
    # clickhouse-connect appends the settings and format it added; they only confuse.
    return text.split("\n SETTINGS ")[0].split(" FORMAT Native")[0].strip()


def retry_after_seconds(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
