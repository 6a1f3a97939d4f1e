-- The journey map's own tables.
--
-- journey_steps: the steps of the unfiltered map (all events, default settings), rebuilt
-- by the refreshable materialized view journey_steps_refresh, which the collector
-- installs with its configured settings (docs/journey-map.md). Analysts query it for
-- their own path analyses.
CREATE TABLE IF NOT EXISTS journey_steps
(
    person      String,
    journey     UInt32,
    step        UInt32,
    touchpoint  LowCardinality(String),
    stage       LowCardinality(String),
    stage_idx   Int8,
    channel     LowCardinality(String),
    ts          DateTime64(3, 'UTC'),
    ts_ms       Int64,
    last_ms     Int64,
    repeats     UInt32,
    stitched    UInt8,
    score       Nullable(Float32)
)
ENGINE = MergeTree
ORDER BY (person, journey, step);

-- map_snapshots: every map a collector or `touchpoint map --save` built: the filters as a
-- key, the window, and the whole map as JSON. Period comparisons read the previous
-- period's snapshot instead of recomputing it; the viewer shows the latest.
CREATE TABLE IF NOT EXISTS map_snapshots
(
    built_at     DateTime64(3, 'UTC'),
    filters_key  String,
    since        Nullable(DateTime64(3, 'UTC')),
    until        Nullable(DateTime64(3, 'UTC')),
    as_of        DateTime64(3, 'UTC'),
    events       UInt64,
    persons      UInt64,
    map_json     String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(built_at)
ORDER BY (filters_key, built_at)
TTL toDateTime(built_at) + INTERVAL 400 DAY;
