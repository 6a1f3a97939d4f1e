"""Touchpoint's event contract and taxonomy, shared by the SDK and the collector.

Depends on msgspec only: the SDK imports this package, so nothing server-side may creep in
(a test enforces it).
"""

from touchpoint_schemas.decode import ContractError, ErrorCode, decode_batch, decode_event
from touchpoint_schemas.events import (
    EVENT_TYPES,
    Alias,
    Batch,
    Event,
    EventBase,
    Group,
    Identify,
    Page,
    Screen,
    Track,
)
from touchpoint_schemas.taxonomy import (
    STAGES,
    STANDARD_CHANNELS,
    STANDARD_TOUCHPOINTS,
    Channel,
    Phase,
    Resolution,
    Stage,
    Taxonomy,
    TaxonomyError,
    TouchpointDef,
)

__all__ = [
    "EVENT_TYPES",
    "STAGES",
    "STANDARD_CHANNELS",
    "STANDARD_TOUCHPOINTS",
    "Alias",
    "Batch",
    "Channel",
    "ContractError",
    "ErrorCode",
    "Event",
    "EventBase",
    "Group",
    "Identify",
    "Page",
    "Phase",
    "Resolution",
    "Screen",
    "Stage",
    "Taxonomy",
    "TaxonomyError",
    "TouchpointDef",
    "Track",
    "decode_batch",
    "decode_event",
]
