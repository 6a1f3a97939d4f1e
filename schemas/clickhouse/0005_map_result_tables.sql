-- The journey map's results as plain tables for analysts, rewritten by the collector at
-- every rebuild of its default map (map.refresh_seconds) and kept per build: query the
-- latest with `WHERE built_at = (SELECT max(built_at) FROM map_nodes)`, or watch a figure
-- move over builds. Columns mean what docs/journey-map.md defines.
CREATE TABLE IF NOT EXISTS map_stages
(
    built_at                 DateTime64(3, 'UTC'),
    stage                    LowCardinality(String),
    persons                  UInt64,
    converted_persons        UInt64,
    conversion_rate          Nullable(Float64),
    median_seconds_to_next   Nullable(Float64),
    p90_seconds_to_next      Nullable(Float64),
    dropped_persons          UInt64,
    dropoff_rate             Nullable(Float64),
    mean_score               Nullable(Float64),
    sentiment                Nullable(Float64)
)
ENGINE = MergeTree
ORDER BY (built_at, stage)
TTL toDateTime(built_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS map_nodes
(
    built_at       DateTime64(3, 'UTC'),
    node           String,
    kind           LowCardinality(String),
    stage          LowCardinality(String),
    persons        UInt64,
    steps          UInt64,
    events         UInt64,
    reach          Float64,
    repeat_rate    Float64,
    cross_cutting  UInt8
)
ENGINE = MergeTree
ORDER BY (built_at, node)
TTL toDateTime(built_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS map_edges
(
    built_at            DateTime64(3, 'UTC'),
    source              String,
    target              String,
    transitions         UInt64,
    persons             UInt64,
    p_next              Float64,
    median_seconds      Nullable(Float64),
    p90_seconds         Nullable(Float64),
    goal_after_persons  UInt64,
    goal_after_rate     Float64
)
ENGINE = MergeTree
ORDER BY (built_at, source, target)
TTL toDateTime(built_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS map_pain_points
(
    built_at    DateTime64(3, 'UTC'),
    kind        LowCardinality(String),
    touchpoint  String,
    stage       LowCardinality(String),
    persons     UInt64,
    rate        Float64,
    baseline    Float64,
    examples    Array(String),
    detail      String
)
ENGINE = MergeTree
ORDER BY (built_at, kind, touchpoint)
TTL toDateTime(built_at) + INTERVAL 400 DAY;
