-- Every accepted event, one row each.
--
-- ReplacingMergeTree keyed on (person_id, message_id): a resent event (an SDK retry whose
-- first attempt did land) shares the key of its original and collapses into one row in the
-- background, and at once for any query run with FINAL or the setting `final = 1` (which
-- `touchpoint sql` and the collector's query endpoint set). The person leads the key so a
-- person's whole journey is one contiguous range for sequence scans.
--
-- `non_replicated_deduplication_window` makes ClickHouse remember recent insert tokens: the
-- collector's loader tags each insert with a token derived from its write-ahead-log position,
-- so replaying the log after a crash inserts nothing twice.
CREATE TABLE IF NOT EXISTS events
(
    message_id          String,
    source              LowCardinality(String),
    type                LowCardinality(String),
    event               String,
    touchpoint          LowCardinality(String),
    stage               LowCardinality(String),
    channel             LowCardinality(String),
    person_id           String DEFAULT if(user_id != '', user_id, anonymous_id),
    anonymous_id        String,
    user_id             String,
    group_id            String,
    previous_id         String,
    timestamp           DateTime64(3, 'UTC'),
    original_timestamp  Nullable(DateTime64(3, 'UTC')),
    sent_at             Nullable(DateTime64(3, 'UTC')),
    received_at         DateTime64(3, 'UTC'),
    clock_skew_ms       Int64,
    score               Nullable(Float32),
    properties          String CODEC(ZSTD(1)),
    traits              String CODEC(ZSTD(1)),
    context             String CODEC(ZSTD(1)),
    integrations        String CODEC(ZSTD(1)),
    collector_id        LowCardinality(String),
    ingest_seq          UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (person_id, message_id)
SETTINGS non_replicated_deduplication_window = 10000;
