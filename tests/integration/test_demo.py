"""The demo's whole pipeline at small size: SDK -> collector -> ClickHouse -> map, and the
planted pain points and stitched journeys must show in the map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import scale
from touchpoint_collector.simulator import PLANTED


def test_demo_pipeline_finds_every_planted_pain_point(tmp_path: Path) -> None:
    out = tmp_path / "map.json"
    page = tmp_path / "journey-map.html"
    persons = max(600, scale(800))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "touchpoint_collector.cli",
            "--data-dir",
            str(tmp_path / "data"),
            "demo",
            "--no-serve",
            "--port",
            "0",
            "--persons",
            str(persons),
            "--json",
            str(out),
            "--html",
            str(page),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    maps = json.loads(out.read_text())
    overall = maps["overall"]
    assert overall["coverage"]["persons"] == persons
    assert overall["coverage"]["stitched_journeys"] > persons // 2  # began anonymous, joined later
    for name, (kind, touchpoint) in PLANTED.items():
        found = {(p["kind"], p["touchpoint"]) for p in maps[name]["pain_points"]}
        assert (kind, touchpoint) in found, (name, sorted(found))
    # evidence comes with the pain point
    checkout = next(p for p in maps["shop"]["pain_points"] if p["touchpoint"] == "checkout_started")
    assert checkout["persons"] >= 5
    assert checkout["examples"]
    assert checkout["rate"] > checkout["baseline"]
    # the SDK lost nothing, and the page was written
    assert "lost: none" in run.stdout
    assert page.read_text().lstrip().lower().startswith("<!doctype html>")
    for name in PLANTED:
        assert f"({name})" in run.stdout and "NOT FOUND" not in run.stdout
