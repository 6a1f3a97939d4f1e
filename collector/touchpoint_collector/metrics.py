"""Prometheus metrics in the text exposition format, with no client library.

The collector needs counters, a few gauges read at scrape time, and histograms for insert
sizes and latencies; that is a page of code, and it keeps the request path free of a
dependency's locking and label machinery. Single-threaded use from the event loop plus the
loader thread: increments are plain dict updates under the GIL.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable
from typing import Final

LabelKey = tuple[tuple[str, str], ...]

HELP: Final[dict[str, tuple[str, str]]] = {
    "touchpoint_requests_total": ("counter", "HTTP requests by endpoint, source and status"),
    "touchpoint_events_total": ("counter", "Events by source and outcome (accepted, rejected)"),
    "touchpoint_rejected_total": ("counter", "Rejected events by reason code"),
    "touchpoint_clickhouse_errors_total": ("counter", "Failed ClickHouse inserts (retried)"),
    "touchpoint_wal_backlog_bytes": ("gauge", "Bytes in the write-ahead log not yet in ClickHouse"),
    "touchpoint_wal_oldest_unloaded_seconds": (
        "gauge",
        "Age of the oldest event not yet in ClickHouse",
    ),
    "touchpoint_wal_fsyncs_total": ("counter", "fsync calls (one per group commit)"),
    "touchpoint_insert_seconds": ("histogram", "Duration of one ClickHouse insert"),
    "touchpoint_insert_rows": ("histogram", "Rows in one ClickHouse insert"),
    "touchpoint_request_seconds": ("histogram", "Time from request to acknowledgement"),
    "touchpoint_ready": ("gauge", "1 when the collector accepts events"),
}

BUCKETS: Final[dict[str, tuple[float, ...]]] = {
    "touchpoint_insert_seconds": (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    "touchpoint_insert_rows": (10, 100, 1_000, 10_000, 50_000, 100_000, 500_000),
    "touchpoint_request_seconds": (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
}


class _Histogram:
    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[str, dict[LabelKey, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, dict[LabelKey, _Histogram]] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._histograms[name]
        histogram = series.get(key)
        if histogram is None:
            histogram = series[key] = _Histogram(BUCKETS.get(name, (0.1, 1, 10)))
        histogram.observe(value)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (tests and the status banner)."""
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        names = sorted(set(self._counters) | set(self._histograms) | set(self._gauges))
        for name in names:
            kind, text = HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            if name in self._gauges:
                lines.append(f"{name} {_number(self._gauges[name]())}")
            for key, value in sorted(self._counters.get(name, {}).items()):
                lines.append(f"{name}{_labels(key)} {_number(value)}")
            for key, hist in sorted(self._histograms.get(name, {}).items()):
                cumulative = 0
                for bound, count in zip((*hist.bounds, float("inf")), hist.counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else _number(bound)
                    lines.append(f"{name}_bucket{_labels((*key, ('le', le)))} {cumulative}")
                lines.append(f"{name}_sum{_labels(key)} {_number(hist.total)}")
                lines.append(f"{name}_count{_labels(key)} {hist.count}")
        return "\n".join(lines) + "\n"


def _labels(key: LabelKey) -> str:
    if not key:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
