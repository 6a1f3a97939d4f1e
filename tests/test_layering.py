"""The SDK and the contract must stay light: no server-side import may reach them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO_ROOT

FORBIDDEN = {"aiohttp", "clickhouse_connect", "chdb", "structlog", "touchpoint_collector"}
LIGHT_PACKAGES = {
    "sdk/touchpoint": "touchpoint",
    "schemas/touchpoint_schemas": "touchpoint_schemas",
}


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("directory", sorted(LIGHT_PACKAGES))
def test_light_packages_never_import_server_side_code(directory: str) -> None:
    offenders = {}
    for path in (REPO_ROOT / directory).rglob("*.py"):
        bad = imported_modules(path.read_text()) & FORBIDDEN
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders


def test_importing_the_sdk_loads_no_server_side_module() -> None:
    code = (
        "import sys, touchpoint, touchpoint_schemas;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bare_install_depends_on_msgspec_only() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0].split("=")[0] for dep in project["dependencies"]] == ["msgspec"]
    collector = " ".join(project["optional-dependencies"]["collector"])
    for needed in ("aiohttp", "clickhouse-connect", "chdb", "structlog"):
        assert needed in collector
