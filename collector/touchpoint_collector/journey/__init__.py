"""The journey map engine: the current-state map, computed inside ClickHouse.

Definitions: ``docs/journey-map.md``. One module per view (``coverage``, ``funnel``,
``flow``, ``paths``, ``drivers``), each a readable SQL query over the build's steps.
"""

from touchpoint_collector.journey.build import build_map
from touchpoint_collector.journey.model import (
    BackwardMove,
    Coverage,
    Driver,
    Edge,
    JourneyMap,
    MapFilters,
    MapSettings,
    Node,
    PathVariant,
    StageRow,
)

__all__ = [
    "BackwardMove",
    "Coverage",
    "Driver",
    "Edge",
    "JourneyMap",
    "MapFilters",
    "MapSettings",
    "Node",
    "PathVariant",
    "StageRow",
    "build_map",
]
