"""The map for people: a terminal summary, Mermaid and Graphviz DOT."""

from __future__ import annotations

from touchpoint_collector.journey.model import Edge, JourneyMap
from touchpoint_collector.tables import render as render_table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f}d"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def to_text(journey_map: JourneyMap) -> str:
    cov = journey_map.coverage
    out = [
        f"Journey map as of {cov.as_of:%Y-%m-%d %H:%M} UTC: {cov.events:,} events, "
        f"{cov.persons:,} persons, {cov.journeys:,} journeys "
        f"({cov.stitched_share:.0%} stitched, {cov.in_progress_journeys:,} in progress); "
        f"goal {journey_map.settings.goal!r} reached by {cov.goal_rate:.0%} of persons",
        "",
    ]
    grid = journey_map.grid
    header = ["", *[c.stage for c in grid]]
    rows = [
        ["persons", *[f"{c.persons:,}" for c in grid]],
        [
            "top touchpoints",
            *[", ".join(t.touchpoint for t in c.touchpoints[:3]) or "-" for c in grid],
        ],
        [
            "channels",
            *[
                ", ".join(f"{ch.channel} {ch.share:.0%}" for ch in c.channels[:2]) or "-"
                for c in grid
            ],
        ],
        ["to next stage", *[_pct(c.conversion_to_next) for c in grid]],
        ["drop-off", *[_pct(c.dropoff_rate) for c in grid]],
        ["time in stage", *[_duration(c.median_seconds_in_stage) for c in grid]],
        ["mean score", *["-" if c.mean_score is None else f"{c.mean_score:.1f}" for c in grid]],
        [
            "sentiment (derived)",
            *["-" if c.sentiment is None else f"{c.sentiment:+.2f}" for c in grid],
        ],
        ["pain points", *[str(len(c.pain_points)) for c in grid]],
    ]
    table = render_table(header, rows).splitlines()
    out.extend(table[:-1])  # without the row count
    if journey_map.pain_points:
        out += ["", "Pain points"]
        for p in journey_map.pain_points[:8]:
            out.append(
                f"  [{p.kind}] {p.stage}/{p.touchpoint}: {p.detail} ({p.persons:,} persons; e.g. {', '.join(p.examples[:3])})"
            )
    opportunities = [o for c in journey_map.grid for o in c.opportunities]
    if opportunities:
        out += ["", "Opportunities"]
        out += [f"  - {o}" for o in opportunities[:6]]
    if journey_map.path_to_goal:
        out += [
            "",
            f"Most common path to the goal ({journey_map.path_to_goal.journeys:,} journeys): "
            + " > ".join(journey_map.path_to_goal.steps),
        ]
    if journey_map.drivers:
        out += ["", "Top drivers (odds ratio, 95% interval)"]
        for d in journey_map.drivers[:5]:
            flag = " (cross-cutting)" if d.cross_cutting else ""
            out.append(
                f"  {d.touchpoint}: x{d.odds_ratio:.2f} [{d.ci_low:.2f}, {d.ci_high:.2f}]{flag}"
            )
    return "\n".join(out) + "\n"


def _label(node_id: str) -> str:
    return node_id.replace("_", " ").replace("other:", "other ")


def _visible_edges(journey_map: JourneyMap, limit: int = 60) -> list[Edge]:
    return journey_map.edges[:limit]


def to_mermaid(journey_map: JourneyMap) -> str:
    ids = {n.id: f"n{i}" for i, n in enumerate(journey_map.nodes)}
    lines = ["flowchart LR"]
    for node in journey_map.nodes:
        shape = ("([", "])") if node.kind in ("start", "end", "in_progress") else ("[", "]")
        lines.append(
            f'    {ids[node.id]}{shape[0]}"{_label(node.id)}<br/>{node.persons:,} persons"{shape[1]}'
        )
    for edge in _visible_edges(journey_map):
        lines.append(f"    {ids[edge.source]} -->|{edge.persons:,}| {ids[edge.target]}")
    return "\n".join(lines) + "\n"


def to_dot(journey_map: JourneyMap) -> str:
    lines = [
        "digraph journey {",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
    ]
    max_persons = max((e.persons for e in journey_map.edges), default=1)
    for node in journey_map.nodes:
        shape = "ellipse" if node.kind in ("start", "end", "in_progress") else "box"
        lines.append(
            f'  "{node.id}" [label="{_label(node.id)}\\n{node.persons:,} persons", shape={shape}];'
        )
    for edge in _visible_edges(journey_map):
        width = 1 + 7 * edge.persons / max_persons
        lines.append(
            f'  "{edge.source}" -> "{edge.target}" [label="{edge.persons:,}", penwidth={width:.1f}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
