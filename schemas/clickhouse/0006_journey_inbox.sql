-- journey_inbox: which ids new rows of `events` and `identities` belong to, stamped with
-- the time they were inserted. A kept map (touchpoint_collector.journey.keeper) reads the
-- rows that arrived since its last build to find the persons to recompute, instead of
-- scanning every event. Filled by the two materialized views below, so every writer
-- (collector, WAL replay, SQL inserts) is seen; kept a day, which is longer than any kept
-- map goes without a full rebuild.
CREATE TABLE IF NOT EXISTS journey_inbox
(
    arrived  DateTime64(6, 'UTC'),
    id       String,
    kind     LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toStartOfHour(arrived)
ORDER BY arrived
TTL toDateTime(arrived) + INTERVAL 1 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS journey_inbox_events TO journey_inbox
AS SELECT now64(6, 'UTC') AS arrived, person_id AS id, 'event' AS kind
FROM events;

CREATE MATERIALIZED VIEW IF NOT EXISTS journey_inbox_links TO journey_inbox
AS SELECT now64(6, 'UTC') AS arrived, anonymous_id AS id, 'link' AS kind
FROM identities;
