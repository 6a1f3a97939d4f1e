"""docs/openapi.yaml and the collector's routes describe the same API."""

from __future__ import annotations

import re
from unittest.mock import MagicMock

import yaml

from tests.conftest import REPO_ROOT
from touchpoint_collector.app import CollectorApp
from touchpoint_collector.config import load_config
from touchpoint_collector.metrics import Metrics


def documented_routes() -> set[tuple[str, str]]:
    spec = yaml.safe_load((REPO_ROOT / "docs" / "openapi.yaml").read_text())
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "delete", "options", "patch"}
    }


def served_routes() -> set[tuple[str, str]]:
    # Building the router needs no store or log: the handlers are never called here.
    collector = CollectorApp(
        load_config(env={}), MagicMock(), MagicMock(), MagicMock(), MagicMock(), Metrics(), "x"
    )
    routes = set()
    for route in collector.build().router.routes():
        path = re.sub(r"\{tail[^}]*\}", "{path}", route.resource.canonical)  # type: ignore[union-attr]
        routes.add((route.method, path))
    return {r for r in routes if r[0] != "HEAD"}


def test_routes_match_the_openapi_document() -> None:
    assert served_routes() == documented_routes()


def test_openapi_references_the_committed_json_schema() -> None:
    text = (REPO_ROOT / "docs" / "openapi.yaml").read_text()
    for ref in re.findall(r'\$ref: "(\.\./[^"]+)"', text):
        assert (REPO_ROOT / "docs" / ref).resolve().is_file(), ref
