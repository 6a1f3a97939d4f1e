from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT
from touchpoint_schemas.jsonschema import schema_documents


@pytest.mark.parametrize("filename", ["event.schema.json", "batch.schema.json"])
def test_committed_json_schema_matches_the_code(filename: str) -> None:
    committed = (REPO_ROOT / "schemas" / "jsonschema" / filename).read_bytes()
    assert committed == schema_documents()[filename], (
        f"schemas/jsonschema/{filename} is stale: run `python -m touchpoint_schemas.jsonschema`"
    )


def test_schema_describes_segment_names_and_touchpoint_fields() -> None:
    schema = json.loads(schema_documents()["event.schema.json"])
    track = schema["$defs"]["Track"]
    for name in (
        "messageId",
        "anonymousId",
        "userId",
        "event",
        "properties",
        "context",
        "timestamp",
        "sentAt",
        "touchpoint",
        "stage",
        "channel",
    ):
        assert name in track["properties"], name
    assert track["properties"]["type"] == {"enum": ["track"]}
    assert "event" in track["required"]
