"""The wire format as JSON Schema, generated from the Structs.

The committed files under `schemas/jsonschema/` are what other-language senders validate
against; a test fails when they drift from the code. Regenerate with
``python -m touchpoint_schemas.jsonschema``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from touchpoint_schemas.events import Batch, Event

SCHEMA_FILES: Final = {"event.schema.json": Event, "batch.schema.json": Batch}


def schema_documents() -> dict[str, bytes]:
    """File name -> pretty, stable JSON Schema bytes."""
    documents: dict[str, bytes] = {}
    for filename, type_ in SCHEMA_FILES.items():
        schema: dict[str, Any] = msgspec.json.schema(type_)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"Touchpoint {filename.split('.')[0]}",
            **schema,
        }
        documents[filename] = msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n"
    return documents


def schema_dir() -> Path:
    """Where the committed schema lives: beside the package in a source tree, inside it
    in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "jsonschema", here.parent / "jsonschema"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("schemas/jsonschema not found beside touchpoint_schemas")


def main() -> int:
    target = schema_dir()
    for filename, content in schema_documents().items():
        (target / filename).write_bytes(content)
        print(f"wrote {target / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
