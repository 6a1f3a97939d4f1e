-- journey_inbox rows of new events carry what a kept map needs to append the event to its
-- person's row without reading the person's earlier events again: those are spread over
-- every granule of `events` (sorted by person_id), so reading even 1% of the persons back
-- read nearly all of it. `payload` = 1 marks the rows that carry it; rows written before
-- this migration (0) only name their id, as before, and their persons are recomputed.
ALTER TABLE journey_inbox
    ADD COLUMN IF NOT EXISTS payload UInt8,
    ADD COLUMN IF NOT EXISTS message_id String,
    ADD COLUMN IF NOT EXISTS timestamp DateTime64(3, 'UTC'),
    ADD COLUMN IF NOT EXISTS ingest_seq UInt64,
    ADD COLUMN IF NOT EXISTS touchpoint LowCardinality(String),
    ADD COLUMN IF NOT EXISTS stage LowCardinality(String),
    ADD COLUMN IF NOT EXISTS channel LowCardinality(String),
    ADD COLUMN IF NOT EXISTS source LowCardinality(String),
    ADD COLUMN IF NOT EXISTS score Nullable(Float32);

ALTER TABLE journey_inbox_events MODIFY QUERY
SELECT now64(6, 'UTC') AS arrived, person_id AS id, 'event' AS kind, 1 AS payload, message_id,
       timestamp, ingest_seq, touchpoint, stage, channel, source, score
FROM events;
