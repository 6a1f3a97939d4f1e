"""What the collector promises about acknowledged events, tested by breaking things."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import scale
from tests.integration.harness import CollectorProcess

BATCH = 100


def batch(start: int, tag: str = "k") -> dict[str, object]:
    return {
        "batch": [
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": f"u{(start + i) % 97}",
                "messageId": f"{tag}-{start + i}",
            }
            for i in range(BATCH)
        ]
    }


def send_until_stopped(
    collector: CollectorProcess, batches: int, acked: set[int], stop: threading.Event
) -> None:
    for b in range(batches):
        if stop.is_set():
            return
        try:
            if collector.post("/v1/batch", batch(b * BATCH)).status == 200:
                acked.add(b)
        except (OSError, http.client.HTTPException):
            pass  # the collector died under us: this batch is not acknowledged


def count_in_store(data_dir: Path) -> tuple[int, int]:
    """Read the stopped collector's store with `touchpoint sql` (another process: this one
    already has the session's embedded store open)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(data_dir),
            "sql",
            "--format",
            "csv",
            "SELECT count(), uniqExact(message_id) FROM events",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    total, distinct = out.stdout.splitlines()[1].split(",")
    return int(total), int(distinct)


def test_kill_9_during_load_then_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    batches = scale(60)
    data = tmp_path / "data"
    collector = CollectorProcess(data).start()
    key = collector.dev_key
    acked: set[int] = set()
    stop = threading.Event()
    sender = threading.Thread(target=send_until_stopped, args=(collector, batches, acked, stop))
    sender.start()
    while len(acked) < batches // 3 and sender.is_alive():
        time.sleep(0.005)
    collector.kill9()  # mid-load: requests in flight, segments unsealed, loader mid-insert
    stop.set()
    sender.join()
    acked_before_kill = set(acked)
    assert 0 < len(acked_before_kill) < batches

    restarted = CollectorProcess(data).start()  # replays the log left by the crash
    restarted.dev_key = key
    for b in range(batches):  # a client resends whatever was not acknowledged
        if b not in acked_before_kill:
            assert restarted.post("/v1/batch", batch(b * BATCH)).status == 200
    restarted.wait_drained()
    n = batches * BATCH
    assert restarted.query("SELECT count(), uniqExact(message_id) FROM events") == [[n, n]]
    acked_ids = [f"k-{b * BATCH}" for b in sorted(acked_before_kill)]
    present = restarted.query(
        f"SELECT count() FROM events WHERE message_id IN {tuple(acked_ids)!r}".replace(",)", ")")
    )
    assert present == [[len(acked_ids)]]
    assert restarted.stop() == 0


def test_clickhouse_outage_gives_503_past_the_cap_and_everything_drains_after(
    tmp_path: Path,
) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "store.insert").touch()  # ClickHouse "down" from the start
    collector = CollectorProcess(
        tmp_path / "data",
        env={"TOUCHPOINT_FAILPOINTS": str(faults), "TOUCHPOINT_WAL__CAP_BYTES": str(256 * 1024)},
    ).start()
    try:
        acked: list[int] = []
        refused = None
        for b in range(200):
            response = collector.post("/v1/batch", batch(b * BATCH, tag="o"))
            if response.status == 503:
                refused = response
                break
            assert response.status == 200
            acked.append(b)
        assert refused is not None, "the log never reached its cap"
        assert refused.headers["Retry-After"].isdigit()
        assert refused.json()["error"]["code"] == "backlog_full"
        ready = collector.request("GET", "/readyz")
        assert ready.status == 503 and ready.json()["log_below_cap"] is False
        deadline = time.monotonic() + 10
        metrics = ""
        while "touchpoint_clickhouse_errors_total" not in metrics and time.monotonic() < deadline:
            time.sleep(0.1)
            metrics = collector.request("GET", "/metrics").body.decode()
        assert "touchpoint_clickhouse_errors_total" in metrics
        assert collector.request("GET", "/readyz").json()["store"] is False

        (faults / "store.insert").unlink()  # ClickHouse is back
        collector.wait_drained(timeout=60)
        n = len(acked) * BATCH
        assert collector.query("SELECT count(), uniqExact(message_id) FROM events") == [[n, n]]
        assert collector.request("GET", "/readyz").status == 200
        assert collector.post("/v1/batch", batch(10**6, tag="after")).status == 200
    finally:
        collector.stop()


def test_graceful_shutdown_drains_into_clickhouse(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # long segment age: without the shutdown drain these events would still be in the log
    collector = CollectorProcess(
        data, env={"TOUCHPOINT_WAL__SEGMENT_MAX_AGE_SECONDS": "600"}
    ).start()
    for b in range(5):
        assert collector.post("/v1/batch", batch(b * BATCH, tag="g")).status == 200
    assert collector.stop(signal.SIGTERM) == 0
    assert list((data / "wal").glob("*.wal")) == []
    assert count_in_store(data) == (5 * BATCH, 5 * BATCH)
    stopped = [r for r in collector.logs() if r.get("event") == "collector stopped"]
    assert stopped and stopped[-1]["drained"] is True


def test_log_left_by_a_failed_drain_is_loaded_on_next_start(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "store.insert").touch()
    data = tmp_path / "data"
    env = {"TOUCHPOINT_FAILPOINTS": str(faults), "TOUCHPOINT_SERVER__SHUTDOWN_TIMEOUT_SECONDS": "1"}
    collector = CollectorProcess(data, env=env).start()
    assert collector.post("/v1/batch", batch(0, tag="l")).status == 200
    collector.stop(signal.SIGTERM)
    assert list((data / "wal").glob("*.wal")), "the undrained log must stay on disk"
    (faults / "store.insert").unlink()
    again = CollectorProcess(data, env=env).start()
    try:
        again.wait_drained()
        assert again.query("SELECT count() FROM events") == [[BATCH]]
    finally:
        again.stop()


def test_restart_after_a_clean_drain_never_reuses_a_dedup_token(tmp_path: Path) -> None:
    """A clean drain leaves no segment behind; the next start must not number its segments
    from 1 again, or ClickHouse would drop them as duplicates of the first run's inserts."""
    data = tmp_path / "data"
    first = CollectorProcess(data).start()
    key = first.dev_key
    assert first.post("/v1/batch", batch(0, tag="r1")).status == 200
    first.wait_drained()
    assert first.stop() == 0
    second = CollectorProcess(data).start()
    second.dev_key = key
    try:
        assert second.post("/v1/batch", batch(0, tag="r2")).status == 200
        second.wait_drained()
        assert second.query("SELECT count(), uniqExact(message_id) FROM events") == [
            [2 * BATCH, 2 * BATCH]
        ]
    finally:
        second.stop()
