"""The collector's HTTP API against the real embedded store, results read back from ClickHouse."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import CollectorProcess

SEGMENT_CALLS = {
    "track": {
        "event": "Order Completed",
        "userId": "u1",
        "messageId": "t1",
        "properties": {"revenue": 9.5},
    },
    "identify": {
        "anonymousId": "a1",
        "userId": "u1",
        "messageId": "i1",
        "traits": {"persona": "saver"},
    },
    "alias": {"previousId": "a0", "userId": "u1", "messageId": "al1"},
    "page": {"anonymousId": "a1", "name": "Pricing", "messageId": "p1"},
    "screen": {"anonymousId": "a1", "name": "Home", "messageId": "s1"},
    "group": {"userId": "u1", "groupId": "acme", "messageId": "g1", "traits": {"plan": "pro"}},
}


def test_every_segment_endpoint_stores_its_event(collector: CollectorProcess) -> None:
    for kind, body in SEGMENT_CALLS.items():
        response = collector.post(f"/v1/{kind}", body)
        assert response.status == 200, (kind, response)
        assert response.json() == {"success": True, "accepted": 1, "rejected": []}
    rows = collector.wait_until(
        "SELECT type, message_id, touchpoint, person_id FROM events ORDER BY message_id",
        [
            ["alias", "al1", "", "u1"],
            ["group", "g1", "", "u1"],
            ["identify", "i1", "", "u1"],
            ["page", "p1", "site_visit", "a1"],
            ["screen", "s1", "app_opened", "a1"],
            ["track", "t1", "purchase", "u1"],
        ],
    )
    assert len(rows) == 6
    # The loader inserts a segment's identities after its events: wait for them too.
    links = collector.wait_until(
        "SELECT anonymous_id, user_id, kind FROM identities ORDER BY kind",
        [["a0", "u1", "alias"], ["a1", "u1", "identify"]],
    )
    assert links == [["a0", "u1", "alias"], ["a1", "u1", "identify"]]
    props = collector.query(
        "SELECT properties, traits FROM events WHERE message_id IN ('t1', 'g1') ORDER BY message_id"
    )
    assert json.loads(props[1][0]) == {"revenue": 9.5}
    assert json.loads(props[0][1]) == {"plan": "pro"}


def test_analytics_js_paths_with_a_text_plain_body(collector: CollectorProcess) -> None:
    """analytics.js posts to {apiHost}/t, /p, /i, /g, /a, /s and, batching, /b, with
    Content-Type text/plain (no CORS preflight) and the write key in the body."""
    text = {"Content-Type": "text/plain"}
    track = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-ajs",
        "messageId": "ajs-t",
        "writeKey": collector.dev_key,
    }
    assert collector.post("/v1/t", track, key=None, headers=text).status == 200
    page = {"type": "page", "anonymousId": "a-ajs", "messageId": "ajs-p"}
    batch = {"batch": [page], "writeKey": collector.dev_key}
    assert collector.post("/v1/b", batch, key=None, headers=text).json()["accepted"] == 1
    rows = collector.wait_until(
        "SELECT message_id, type FROM events WHERE message_id LIKE 'ajs-%' ORDER BY message_id",
        [["ajs-p", "page"], ["ajs-t", "track"]],
    )
    assert rows == [["ajs-p", "page"], ["ajs-t", "track"]]


def test_integer_ids_as_analytics_python_sends_them(collector: CollectorProcess) -> None:
    """analytics-python's group(user, 777) and alias(12, user) send the number as it is."""
    group = {"type": "group", "userId": "u-int", "groupId": 777, "messageId": "int-g"}
    alias = {"type": "alias", "userId": "u-int", "previousId": 12, "messageId": "int-a"}
    assert collector.post("/v1/batch", {"batch": [group, alias]}).json()["accepted"] == 2
    rows = collector.wait_until(
        "SELECT message_id, group_id, previous_id FROM events "
        "WHERE message_id LIKE 'int-%' ORDER BY message_id",
        [["int-a", "", "12"], ["int-g", "777", ""]],
    )
    assert rows == [["int-a", "", "12"], ["int-g", "777", ""]]


def test_batch_with_segment_envelope_context_and_sent_at(collector: CollectorProcess) -> None:
    payload = {
        "batch": [
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": "a9",
                "messageId": "b1",
                "context": {"page": {"path": "/x"}},
            },
            {"type": "track", "event": "Checkout Started", "anonymousId": "a9", "messageId": "b2"},
        ],
        "context": {"library": {"name": "analytics-python"}, "page": {"path": "/batch"}},
        "sentAt": "2026-01-01T00:00:00Z",
    }
    response = collector.post("/v1/batch", payload, headers={"User-Agent": "it-test/1.0"})
    assert response.json()["accepted"] == 2
    rows = collector.wait_until("SELECT count() FROM events", [[2]])
    assert rows == [[2]]
    contexts = {
        r[0]: json.loads(r[1]) for r in collector.query("SELECT message_id, context FROM events")
    }
    assert contexts["b1"]["page"] == {"path": "/x"}  # the event's own context wins
    assert contexts["b2"]["page"] == {"path": "/batch"}
    assert contexts["b1"]["library"] == {"name": "analytics-python"}
    assert contexts["b1"]["userAgent"] == "it-test/1.0"
    assert contexts["b1"]["ip"] == "127.0.0.1"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_three_ways_to_authenticate_and_failures(collector: CollectorProcess) -> None:
    event = {"type": "track", "event": "x", "userId": "u"}
    ev = [{**event, "messageId": f"auth-{i}"} for i in range(3)]
    assert (
        collector.post(
            "/v1/batch", {"batch": [ev[0]]}, key=None, headers=basic(collector.dev_key or "")
        ).status
        == 200
    )
    assert collector.post("/v1/batch", {"batch": [ev[1]]}).status == 200  # Bearer
    assert (
        collector.post(
            "/v1/batch", {"batch": [ev[2]], "writeKey": collector.dev_key}, key=None
        ).status
        == 200
    )
    missing = collector.post("/v1/batch", {"batch": [event]}, key=None)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    assert (
        collector.post("/v1/batch", {"batch": [event]}, key="tpw_nope").json()["error"]["code"]
        == "invalid_key"
    )
    # a read key cannot write, a write key cannot read
    assert collector.post("/v1/batch", {"batch": [event]}, key=collector.read_key()).status == 401
    assert collector.post("/v1/query", {"query": "SELECT 1"}).status == 401
    assert collector.wait_until("SELECT count() FROM events", [[3]]) == [[3]]


def keys_cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(data_dir),
            "keys",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_a_key_that_is_not_utf8_is_401_not_500(collector: CollectorProcess) -> None:
    event = {"type": "track", "event": "x", "userId": "u"}
    for path in ("/v1/track", "/v1/query"):
        response = collector.request(
            "POST",
            path,
            json.dumps(event).encode(),
            {"Authorization": "Bearer \xe9", "Content-Type": "application/json"},
        )
        assert response.status == 401, path
    viewer = collector.request("GET", "/v1/map", headers={"Cookie": "tp_read_key=\xe9"})
    assert viewer.status == 401


def test_keys_per_source_isolation_and_revocation(collector: CollectorProcess) -> None:
    shop = keys_cli(collector.data_dir, "create", "--source", "shop").splitlines()
    crm = keys_cli(collector.data_dir, "create", "--source", "crm").splitlines()
    shop_key, crm_key = shop[-1].rsplit(" ", 1)[1], crm[-1].rsplit(" ", 1)[1]
    shop_id = shop[0].split()[3]
    listing = keys_cli(collector.data_dir, "list")
    assert "shop" in listing and shop_key not in listing  # only hashes are stored
    import time

    time.sleep(1.1)  # the collector re-reads the keys file at most once a second
    event = {"type": "track", "event": "Product Viewed", "userId": "u"}
    assert collector.post("/v1/batch", {"batch": [event]}, key=shop_key).status == 200
    pair = [{**event, "messageId": "crm-1"}, {**event, "messageId": "crm-2"}]
    assert collector.post("/v1/batch", {"batch": pair}, key=crm_key).status == 200
    assert collector.wait_until(
        "SELECT source, count() FROM events GROUP BY source ORDER BY source",
        [["crm", 2], ["shop", 1]],
    ) == [["crm", 2], ["shop", 1]]
    assert "revoked" in keys_cli(collector.data_dir, "revoke", shop_id)
    time.sleep(1.1)
    assert collector.post("/v1/batch", {"batch": [event]}, key=shop_key).status == 401
    assert (
        collector.post(
            "/v1/batch", {"batch": [{**event, "messageId": "crm-3"}]}, key=crm_key
        ).status
        == 200
    )


def test_gzip_bodies_and_gzip_bombs(collector: CollectorProcess) -> None:
    payload = {
        "batch": [{"type": "track", "event": "Trial Started", "userId": f"u{i}"} for i in range(50)]
    }
    assert collector.post("/v1/batch", payload, gzip_body=True).json()["accepted"] == 50
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    assert len(bomb) < 100 * 1024
    response = collector.post("/v1/batch", raw=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status == 413
    assert "decompressed" in response.json()["error"]["message"]
    corrupt = collector.post(
        "/v1/batch", raw=b"\x1f\x8bnot really gzip", headers={"Content-Encoding": "gzip"}
    )
    assert corrupt.status == 400
    assert collector.post("/v1/batch", raw=b"{}", headers={"Content-Encoding": "br"}).status == 415
    assert collector.wait_until("SELECT count() FROM events", [[50]]) == [[50]]


def test_gzip_members_x_gzip_and_what_follows_a_stream(collector: CollectorProcess) -> None:
    """A gzip body may hold several members (RFC 1952), and x-gzip is gzip (RFC 9110);
    garbage after the stream is an error, not silently dropped."""

    def body(message: str) -> bytes:
        event = {"type": "track", "event": "x", "userId": "u-gz", "messageId": message}
        return json.dumps({"batch": [event]}).encode()

    def send(raw: bytes, encoding: str = "gzip") -> Any:
        return collector.post("/v1/batch", raw=raw, headers={"Content-Encoding": encoding})

    members = gzip.compress(body("gz1")[:20]) + gzip.compress(body("gz1")[20:])
    assert send(members).json()["accepted"] == 1
    assert send(gzip.compress(body("gz2")), "x-gzip").json()["accepted"] == 1
    assert send(gzip.compress(body("gz3")) + b"\0" * 8).json()["accepted"] == 1
    garbage = send(gzip.compress(body("gz4")) + b"junk")
    assert (garbage.status, garbage.json()["error"]["code"]) == (400, "bad_compression")
    assert collector.wait_until(
        "SELECT message_id FROM events WHERE user_id = 'u-gz' ORDER BY message_id",
        [["gz1"], ["gz2"], ["gz3"]],
    ) == [["gz1"], ["gz2"], ["gz3"]]


BAD_BODIES = {
    "malformed json": (b'{"batch": [', 400, "malformed_json"),
    "not an object": (b"[1, 2]", 400, "invalid_field"),
    "bad utf-8": (
        b'{"batch": [{"type": "track", "event": "\xff", "userId": "u"}]}',
        400,
        "invalid_utf8",
    ),
    "nan": (
        b'{"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"x": NaN}}]}',
        400,
        "malformed_json",
    ),
    "batch not a list": (b'{"batch": {"type": "track"}}', 400, "invalid_field"),
    "missing batch": (b'{"events": []}', 400, "missing_field"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_requests_get_a_clear_4xx_and_are_dead_lettered(
    collector: CollectorProcess, name: str
) -> None:
    raw, status, code = BAD_BODIES[name]
    response = collector.post("/v1/batch", raw=raw)
    assert response.status == status, response
    body = response.json()
    # A batch whose events are all invalid is a 400 listing them; a broken envelope names its code.
    codes = {body["error"]["code"]} if "error" in body else {r["code"] for r in body["rejected"]}
    assert codes == {code}
    rows = collector.wait_until(
        "SELECT reason_code, endpoint FROM rejected_events", [[code, "/v1/batch"]]
    )
    assert rows == [[code, "/v1/batch"]]
    stored = collector.query("SELECT payload FROM rejected_events")[0][0]
    # the exact bytes are kept (the whole body, or the one event's bytes when only it was
    # bad); clickhouse-connect shows a non-UTF-8 String as hex
    kept = stored.encode() if stored.encode() in raw else bytes.fromhex(stored)
    assert kept in raw
    assert len(kept) >= min(len(raw), 20)


def test_partial_batch_accepts_the_valid_events(collector: CollectorProcess) -> None:
    deep: object = 1
    for _ in range(40):
        deep = {"d": deep}
    batch = [
        {"type": "track", "event": "Product Viewed", "userId": "u", "messageId": "ok-1"},
        {"type": "track", "userId": "u", "messageId": "no-event"},
        {"type": "track", "event": "x", "messageId": "no-id"},
        {"type": "track", "event": "x", "userId": 7.5, "messageId": "float-user"},
        {"type": "track", "event": "x", "userId": "u", "messageId": "deep", "properties": deep},
        {
            "type": "track",
            "event": "x",
            "userId": "u",
            "messageId": "huge",
            "properties": {"blob": "x" * 40_000},
        },
        {
            "type": "track",
            "event": "Survey Submitted",
            "userId": "u",
            "messageId": "score",
            "properties": {"score": 0},
        },
        {"type": "track", "event": "x", "userId": "u", "messageId": "stage", "stage": "nirvana"},
        {"type": "track", "event": "Purchase", "userId": "u", "messageId": "ok-2"},
    ]
    response = collector.post("/v1/batch", {"batch": batch})
    assert response.status == 200
    body = response.json()
    assert body["accepted"] == 2
    rejected = {(r["index"], r["messageId"], r["code"]) for r in body["rejected"]}
    assert rejected == {
        (1, "no-event", "missing_field"),
        (2, "no-id", "missing_id"),
        (3, "float-user", "invalid_field"),
        (4, "deep", "too_deep"),
        (5, "huge", "event_too_large"),
        (6, "score", "invalid_score"),
        (7, "stage", "unknown_taxonomy"),
    }
    assert collector.wait_until(
        "SELECT message_id FROM events ORDER BY message_id", [["ok-1"], ["ok-2"]]
    ) == [["ok-1"], ["ok-2"]]
    dead = collector.wait_until("SELECT count() FROM rejected_events", [[7]])
    assert dead == [[7]]
    assert collector.query(
        "SELECT event_index, path FROM rejected_events WHERE message_id = 'score'"
    ) == [[6, "$.properties.score"]]


def test_an_event_the_json_decoder_refuses_rejects_only_itself(
    collector: CollectorProcess,
) -> None:
    """A lone surrogate escape (Python's json.dumps and JavaScript's JSON.stringify both
    write one for a broken string, and Segment's SDKs send it) and nesting too deep to
    scan used to fail the whole request, the good events with it."""
    good = {"type": "track", "event": "Product Viewed", "userId": "u", "messageId": "fine"}
    surrogate = '{"type": "track", "event": "\\ud800", "userId": "u", "messageId": "lone"}'
    nested = "[" * 1100 + "]" * 1100
    deep = f'{{"type": "track", "event": "x", "userId": "u", "messageId": "deep", "properties": {{"p": {nested}}}}}'
    raw = f'{{"batch": [{json.dumps(good)}, {surrogate}, {deep}]}}'.encode()
    response = collector.post("/v1/batch", raw=raw)
    assert response.status == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "malformed_json"),
        (2, "too_deep"),
    ]
    assert collector.wait_until("SELECT message_id FROM events", [["fine"]]) == [["fine"]]
    assert collector.wait_until(
        "SELECT event_index FROM rejected_events ORDER BY event_index", [[1], [2]]
    ) == [[1], [2]]


def test_events_dated_before_1900_are_refused(collector: CollectorProcess) -> None:
    """ClickHouse's DateTime64 starts in 1900: an event dated before it (here, a time
    whose UTC instant falls before year 1) was stored as year 0, and every query that
    selected its timestamp failed."""
    batch = [
        {"type": "track", "event": "x", "userId": "u", "messageId": "ok"},
        {
            "type": "track",
            "event": "x",
            "userId": "u",
            "messageId": "year-0",
            "timestamp": "0001-01-01T00:00:00+01:00",
        },
        {
            "type": "track",
            "event": "x",
            "userId": "u",
            "messageId": "old",
            "timestamp": "1850-06-01T00:00:00Z",
        },
    ]
    body = collector.post("/v1/batch", {"batch": batch}).json()
    assert body["accepted"] == 1
    assert [(r["messageId"], r["path"]) for r in body["rejected"]] == [
        ("year-0", "$.timestamp"),
        ("old", "$.timestamp"),
    ]
    collector.wait_drained()
    assert collector.query("SELECT message_id, timestamp > '2000-01-01' FROM events") == [["ok", 1]]


def test_oversize_requests_are_413(collector: CollectorProcess) -> None:
    events = [
        {"type": "track", "event": "x", "userId": "u", "properties": {"p": "y" * 300}}
        for _ in range(2000)
    ]
    assert collector.post("/v1/batch", {"batch": events}).status == 413  # > 500 KB
    too_many = {"batch": [{"type": "track", "event": "x", "userId": "u"}] * 2501}
    response = collector.post("/v1/batch", too_many)
    assert response.status == 413
    assert response.json()["error"]["code"] == "too_many_events"
    assert (
        collector.post(
            "/v1/track", {"event": "x", "userId": "u", "properties": {"p": "z" * 40_000}}
        ).status
        == 413
    )


def test_limits_hold_at_their_exact_boundaries(collector: CollectorProcess) -> None:
    """Found by an adversarial run: a /v1/track body of exactly 32 KB without "type" was
    refused (the type the endpoint adds was counted), one a little over the limit got 400
    where the API says 413, and uncompressed batches up to 1 KB over 500 KB were taken."""

    def sized(total: int, **fields: object) -> bytes:
        event = {"event": "x", "userId": "u", **fields, "properties": {"p": ""}}
        short = len(json.dumps(event).encode())
        event["properties"] = {"p": "z" * (total - short)}
        raw = json.dumps(event).encode()
        assert len(raw) == total
        return raw

    assert collector.post("/v1/track", raw=sized(32_768, messageId="at")).status == 200
    over = collector.post("/v1/track", raw=sized(32_769, messageId="over"))
    assert over.status == 413
    assert over.json()["rejected"][0]["code"] == "event_too_large"
    event = {"type": "track", "event": "x", "userId": "u", "properties": {"p": "y" * 20_000}}
    batch = json.dumps({"batch": [event] * 25}).encode()
    padded = batch[:-1] + b" " * (512_000 - len(batch)) + b"}"
    assert collector.post("/v1/batch", raw=padded).status == 200
    assert collector.post("/v1/batch", raw=padded[:-1] + b" }").status == 413


def test_single_event_endpoint_type_mismatch(collector: CollectorProcess) -> None:
    response = collector.post("/v1/track", {"type": "identify", "userId": "u"})
    assert response.status == 400
    assert response.json()["rejected"][0]["path"] == "$.type"


def test_resent_batch_is_deduplicated(collector: CollectorProcess) -> None:
    payload = {
        "batch": [
            {"type": "track", "event": "Order Completed", "userId": f"u{i}", "messageId": f"m{i}"}
            for i in range(20)
        ]
    }
    for _ in range(3):
        assert collector.post("/v1/batch", payload).json()["accepted"] == 20
    collector.wait_drained()
    assert collector.query("SELECT count(), uniqExact(message_id) FROM events") == [[20, 20]]
    assert collector.query("SELECT count() FROM events", final=False)[0][0] >= 20


def test_an_import_spanning_many_months_is_loaded(collector: CollectorProcess) -> None:
    """150 historical events, a month apart: more partitions than ClickHouse lets one
    insert write by default. The loader used to retry that segment forever, and nothing
    accepted after it reached ClickHouse."""
    history = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "hist",
            "messageId": f"h{i}",
            "timestamp": f"{2010 + i // 12}-{i % 12 + 1:02d}-15T12:00:00Z",
        }
        for i in range(150)
    ]
    assert collector.post("/v1/import", {"batch": history}).json()["accepted"] == 150
    later = {"type": "track", "event": "Order Completed", "userId": "later", "messageId": "l1"}
    assert collector.post("/v1/track", later).status == 200
    collector.wait_drained()
    rows = collector.query("SELECT user_id, count() FROM events GROUP BY user_id ORDER BY user_id")
    assert rows == [["hist", 150], ["later", 1]]


def test_events_without_message_id_dedupe_on_identical_resend(collector: CollectorProcess) -> None:
    payload = {
        "batch": [
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u",
                "timestamp": "2026-11-01T00:00:00Z",
            }
        ]
    }
    collector.post("/v1/batch", payload)
    collector.post("/v1/batch", payload)
    collector.wait_drained()
    assert collector.query("SELECT count() FROM events") == [[1]]


def test_ops_endpoints(collector: CollectorProcess) -> None:
    assert collector.request("GET", "/healthz").status == 200
    ready = collector.request("GET", "/readyz")
    assert ready.status == 200 and ready.json()["ready"] is True
    collector.post(
        "/v1/batch", {"batch": [{"type": "track", "event": "x", "userId": "u"}, {"type": "bad"}]}
    )
    collector.wait_drained()
    metrics = collector.request("GET", "/metrics").body.decode()
    assert 'touchpoint_events_total{outcome="accepted",source="default"} 1' in metrics
    assert 'touchpoint_rejected_total{reason="unknown_type",source="default"} 1' in metrics
    assert "touchpoint_wal_backlog_bytes 0" in metrics
    assert 'touchpoint_insert_rows_count{table="events"}' in metrics
    assert "touchpoint_request_seconds_bucket" in metrics


def test_query_endpoint_is_read_only_and_capped(collector: CollectorProcess) -> None:
    key = collector.read_key()
    assert collector.post("/v1/query", {"query": "SELECT 1 AS one"}, key=key).json()["rows"] == [
        [1]
    ]
    write = collector.post(
        "/v1/query", {"query": "INSERT INTO events (message_id) VALUES ('x')"}, key=key
    )
    assert write.status == 400 and "read-only" in write.json()["error"]["message"].lower()
    drop = collector.post("/v1/query", {"query": "DROP TABLE events"}, key=key)
    assert drop.status == 400
    # readonly = 2 alone let these through (sqlguard.py): a file read, a file write, and
    # the caps lifted by the query's own settings.
    for sql, code in [
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "query_refused"),
        ("SELECT file('/etc/hostname')", "query_refused"),
        (
            f"INSERT INTO FUNCTION file('{collector.data_dir}/x.csv', 'CSV') SELECT 1",
            "query_refused",
        ),
        (f"SELECT 1 INTO OUTFILE '{collector.data_dir}/y.csv'", "query_refused"),
        ("SELECT number FROM numbers(1000000) SETTINGS max_result_rows = 0", "query_refused"),
        ("SYSTEM FLUSH LOGS", "query_failed"),
    ]:
        refused = collector.post("/v1/query", {"query": sql}, key=key)
        assert (refused.status, refused.json()["error"]["code"]) == (400, code), sql
    assert not list(collector.data_dir.glob("*.csv"))
    big = collector.post("/v1/query", {"query": "SELECT number FROM numbers(1000000)"}, key=key)
    assert big.status == 400  # over max_rows (100k by default)
    assert "TOO_MANY_ROWS" in big.json()["error"]["message"]
    after = collector.post("/v1/query", {"query": "SELECT 3"}, key=key)  # the client recovered
    assert after.json()["rows"] == [[3]]
    plain = collector.post(
        "/v1/query", raw=b"SELECT 2", key=key, headers={"Content-Type": "text/plain"}
    )
    assert plain.json()["rows"] == [[2]]


def test_touchpoint_sql_goes_through_the_running_collector(collector: CollectorProcess) -> None:
    collector.post(
        "/v1/batch", {"batch": [{"type": "track", "event": "Order Completed", "userId": "u"}]}
    )
    collector.wait_drained()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(collector.data_dir),
            "sql",
            "--format",
            "csv",
            "SELECT touchpoint, count() AS n FROM events GROUP BY touchpoint",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "touchpoint,n\npurchase,1\n"
