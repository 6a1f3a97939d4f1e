"""A real collector in a subprocess, on a free loopback port, with its own store directory.

Results are read back from ClickHouse through the collector's read-only SQL endpoint (the
collector owns the embedded store while it runs), or, after it stopped, by opening the store.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

STARTUP_TIMEOUT = 90.0


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


class CollectorProcess:
    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, config_text: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.config_text = config_text
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.dev_key: str | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-collector.log"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> CollectorProcess:
        env = {
            **os.environ,
            "TOUCHPOINT_DATA_DIR": str(self.data_dir),
            "TOUCHPOINT_SERVER__PORT": "0",
            "TOUCHPOINT_WAL__SEGMENT_MAX_AGE_SECONDS": "0.2",
            "TOUCHPOINT_LOG_FORMAT": "json",
            "TOUCHPOINT_COLLECTOR_ID": "it",
            **self.extra_env,
        }
        if self.config_text:
            config = self.data_dir.parent / f"{self.data_dir.name}.toml"
            config.write_text(self.config_text)
            env["TOUCHPOINT_CONFIG"] = str(config)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "touchpoint_collector.cli", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"collector exited during start-up:\n{self.log_path.read_text()[-3000:]}"
                )
            if line.startswith("development write key"):
                self.dev_key = line.rsplit(" ", 1)[1].strip()
            elif line.startswith("Touchpoint collector listening on "):
                self.url = line.rsplit(" ", 1)[1].strip()
                return self
        raise RuntimeError("collector did not start in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    # -- requests --------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        parsed = urlparse(self.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Response(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def post(
        self,
        path: str,
        payload: Any = None,
        *,
        key: str | None = "dev",
        raw: bytes | None = None,
        gzip_body: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if gzip_body:
            body = gzip.compress(body)
            all_headers["Content-Encoding"] = "gzip"
        if key == "dev":
            key = self.dev_key
        if key:
            all_headers["Authorization"] = "Bearer " + key
        return self.request("POST", path, body, all_headers)

    def read_key(self) -> str:
        return (self.data_dir / "local-read.key").read_text().strip()

    def query(self, sql: str, final: bool = True) -> list[list[Any]]:
        path = "/v1/query" if final else "/v1/query?final=0"
        response = self.post(path, {"query": sql}, key=self.read_key())
        assert response.status == 200, response
        return response.json()["rows"]

    def wait_until(self, sql: str, expected: Any, timeout: float = 30.0) -> list[list[Any]]:
        """Poll a query until it returns `expected` (the loader inserts in the background)."""
        deadline = time.monotonic() + timeout
        rows = self.query(sql)
        while rows != expected and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.query(sql)
        return rows

    def wait_drained(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.request("GET", "/readyz").json()
            if ready["log_backlog_bytes"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"log not drained: {ready}")
