"""Per-source settings: browser origins (CORS) and rate limits, from a real config file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import CollectorProcess

CONFIG = """
[sources.default]
allowed_origins = ["https://shop.example"]
rate_limit = 200
burst = 300

[sources.backend]
rate_limit = 0
"""


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(tmp_path / "data", config_text=CONFIG).start()
    yield process
    process.stop()


def events(n: int, tag: str) -> dict[str, object]:
    return {
        "batch": [
            {"type": "track", "event": "x", "userId": "u", "messageId": f"{tag}{i}"}
            for i in range(n)
        ]
    }


def test_cors_preflight_and_origin_checks(configured: CollectorProcess) -> None:
    preflight = configured.request(
        "OPTIONS",
        "/v1/batch",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert (
        configured.request(
            "OPTIONS", "/v1/batch", headers={"Origin": "https://evil.example"}
        ).status
        == 403
    )

    ok = configured.post("/v1/batch", events(1, "c"), headers={"Origin": "https://shop.example"})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    evil = configured.post("/v1/batch", events(1, "e"), headers={"Origin": "https://evil.example"})
    assert evil.status == 403
    assert evil.json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in evil.headers
    assert configured.wait_until("SELECT message_id FROM events", [["c0"]]) == [["c0"]]


def test_rate_limit_per_source_with_retry_after(configured: CollectorProcess) -> None:
    assert configured.post("/v1/batch", events(250, "a")).status == 200  # within the burst of 300
    limited = configured.post("/v1/batch", events(200, "b"))
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    # another source is not affected by the default source's bucket
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(configured.data_dir),
            "keys",
            "create",
            "--source",
            "backend",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    backend_key = out.stdout.splitlines()[-1].rsplit(" ", 1)[1]
    import time

    time.sleep(1.1)
    assert configured.post("/v1/batch", events(1000, "k"), key=backend_key).status == 200
    configured.wait_drained()
    assert configured.query(
        "SELECT source, count() FROM events GROUP BY source ORDER BY source"
    ) == [
        ["backend", 1000],
        ["default", 250],
    ]
