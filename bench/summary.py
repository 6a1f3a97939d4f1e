"""One table from every benchmark's latest results (bench/results/*.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    found = sorted(RESULTS.glob("*.json"))
    if not found:
        print("no results yet: run `make bench`", file=sys.stderr)
        return 1
    for path in found:
        report = json.loads(path.read_text())
        machine = report.get("machine", {})
        print(
            f"== {report.get('benchmark', path.stem)}  ({machine.get('cpus', '?')} cpus, {machine.get('platform', '?')})"
        )
        for run in report.get("runs", []):
            fields = ", ".join(f"{k}={v}" for k, v in run.items() if not isinstance(v, dict | list))
            print(f"   {fields}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
