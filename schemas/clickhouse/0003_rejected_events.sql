-- The dead letter: everything that reached the collector and was refused, with why.
-- Failed events are data: count them by reason_code, read the payload, fix the sender,
-- replay. `payload` holds the exact bytes received for that event (or the whole body when
-- the request itself could not be parsed); `event_index` is -1 in that case.
CREATE TABLE IF NOT EXISTS rejected_events
(
    received_at     DateTime64(3, 'UTC'),
    source          LowCardinality(String),
    endpoint        LowCardinality(String),
    reason_code     LowCardinality(String),
    reason          String,
    path            String,
    event_index     Int32,
    message_id      String,
    payload         String CODEC(ZSTD(3)),
    client_ip       String,
    user_agent      String,
    collector_id    LowCardinality(String),
    ingest_seq      UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, reason_code)
SETTINGS non_replicated_deduplication_window = 10000;
