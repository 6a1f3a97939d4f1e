"""Map settings from the collector's configuration and taxonomy."""

from __future__ import annotations

from touchpoint_collector.config import Config
from touchpoint_collector.journey.model import MapSettings
from touchpoint_schemas.taxonomy import Taxonomy


def settings_from_config(config: Config, taxonomy: Taxonomy) -> MapSettings:
    return MapSettings(
        goal=config.map.goal,
        gap_days=config.map.gap_days,
        end_after_days=config.map.end_after_days,
        top_n=config.map.top_n,
        min_support=config.map.min_support,
        cross_cutting=tuple(tp.name for tp in taxonomy.touchpoints if tp.cross_cutting),
    )
