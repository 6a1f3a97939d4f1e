"""The journey map as data: what ``build_map`` returns, the CLI prints, ``/v1/map`` serves
and the viewer draws. Every figure is defined in ``docs/journey-map.md``.

Counting unit: distinct persons, unless a field's name says journeys, steps or
transitions.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct, field


class MapFilters(Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Which events a map is built from. Every view sees the same filtered events."""

    since: datetime | None = None
    until: datetime | None = None
    """Also the "as of" time for telling ended journeys from journeys in progress."""
    sources: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    persona: str | None = None
    """Persons whose latest identify traits have ``persona`` equal to this."""
    properties: tuple[tuple[str, str], ...] = ()
    """Events whose ``properties`` have these key = value pairs (compared as text)."""


class MapSettings(Struct, kw_only=True, frozen=True):
    gap_days: float = 60.0
    """A person's journey splits only where they were inactive for longer than this."""
    end_after_days: float | None = None
    """A journey idle for longer than this has ended; None derives it from observed gaps."""
    goal: str = "purchase"
    """A touchpoint name, or ``stage:<stage>``."""
    top_n: int = 8
    """Touchpoints kept per stage in the flow; the rest merge into ``other:<stage>``."""
    min_support: int = 5
    """Fewest persons behind a driver or a pain point."""
    path_limit: int = 10
    max_path_steps: int = 20
    cross_cutting: tuple[str, ...] = ("support_contact",)
    """Touchpoints drawn in their own lane as cross-cutting (from the taxonomy's flags)."""
    negative_touchpoints: tuple[str, ...] = (
        "support_contact",
        "return_requested",
        "refund_issued",
        "unsubscribed",
        "churned",
    )
    """Touchpoints that count as negative signals for sentiment."""
    post_goal_touchpoints: tuple[str, ...] = (
        "support_contact",
        "return_requested",
        "refund_issued",
    )
    post_goal_days: float = 14.0
    low_score_max: float = 4.0
    """Feedback scores at or below this are low (scores run 1-10)."""


class Coverage(Struct, kw_only=True):
    events: int
    persons: int
    journeys: int
    stitched_journeys: int
    """Journeys containing an event whose id was resolved through ``identities``."""
    stitched_share: float
    ended_journeys: int
    in_progress_journeys: int
    converted_persons: int
    goal_rate: float
    as_of: datetime
    end_after_seconds: float
    first_event: datetime | None
    last_event: datetime | None


class StageRow(Struct, kw_only=True):
    stage: str
    persons: int
    next_stage: str | None
    converted_persons: int
    conversion_rate: float | None
    median_seconds_to_next: float | None
    p90_seconds_to_next: float | None
    dropped_persons: int
    dropoff_rate: float | None


class BackwardMove(Struct, kw_only=True):
    from_stage: str
    to_stage: str
    transitions: int
    persons: int


class Node(Struct, kw_only=True):
    id: str
    """A touchpoint name, ``other:<stage>``, or START / END / IN_PROGRESS."""
    kind: str
    """touchpoint | other | start | end | in_progress"""
    stage: str
    persons: int
    steps: int
    events: int
    reach: float
    repeat_rate: float
    cross_cutting: bool = False


class Edge(Struct, kw_only=True):
    source: str
    target: str
    transitions: int
    persons: int
    p_next: float
    median_seconds: float | None
    p90_seconds: float | None
    goal_after_persons: int
    goal_after_rate: float


class PathVariant(Struct, kw_only=True):
    steps: list[str]
    journeys: int
    coverage: float
    goal_journeys: int
    goal_rate: float


class Driver(Struct, kw_only=True):
    touchpoint: str
    persons_with: int
    persons_without: int
    goal_rate_with: float | None
    goal_rate_without: float | None
    odds_ratio: float
    ci_low: float
    ci_high: float
    cross_cutting: bool


class PainPoint(Struct, kw_only=True):
    kind: str
    """dropoff | slow_step | loop | post_goal_issue | low_score"""
    touchpoint: str
    stage: str
    persons: int
    rate: float
    baseline: float
    examples: list[str]
    detail: str


class ChannelShare(Struct, kw_only=True):
    channel: str
    online: bool
    steps: int
    share: float


class TouchpointReach(Struct, kw_only=True):
    touchpoint: str
    persons: int
    reach: float


class GridColumn(Struct, kw_only=True):
    stage: str
    phase: str
    persons: int
    touchpoints: list[TouchpointReach]
    channels: list[ChannelShare]
    conversion_to_next: float | None
    dropoff_rate: float | None
    median_seconds_in_stage: float | None
    mean_score: float | None
    negative_signal_rate: float
    sentiment: float | None
    """Derived, in [-1, 1]: see docs/journey-map.md."""
    pain_points: list[str]
    opportunities: list[str]


class EdgeChange(Struct, kw_only=True):
    source: str
    target: str
    persons_now: int
    persons_before: int


class NodeDelta(Struct, kw_only=True):
    node: str
    persons_now: int
    persons_before: int
    reach_now: float
    reach_before: float


class StageShift(Struct, kw_only=True):
    stage: str
    rate_now: float | None
    rate_before: float | None
    z: float | None
    significant: bool


class Comparison(Struct, kw_only=True):
    previous_since: str
    previous_until: str
    persons_before: int
    new_edges: list[EdgeChange]
    vanished_edges: list[EdgeChange]
    node_deltas: list[NodeDelta]
    stage_shifts: list[StageShift]


class JourneyMap(Struct, kw_only=True):
    filters: MapFilters
    settings: MapSettings
    built_at: datetime
    build_seconds: float
    coverage: Coverage
    stages: list[StageRow]
    backward_moves: list[BackwardMove]
    nodes: list[Node]
    edges: list[Edge]
    paths: list[PathVariant]
    path_to_goal: PathVariant | None
    drivers: list[Driver]
    pain_points: list[PainPoint] = field(default_factory=list)
    grid: list[GridColumn] = field(default_factory=list)
    comparison: Comparison | None = None
    """Against the previous period of the same length, when the map has a start."""
