-- Links between identities, from identify (anonymousId -> userId) and alias
-- (previousId -> userId) calls. The journey map stitches a person's anonymous touchpoints
-- to their later known identity through this table. A link seen again collapses into one
-- row after merges; readers take min(first_seen) per link, so the first sighting wins.
CREATE TABLE IF NOT EXISTS identities
(
    anonymous_id    String,
    user_id         String,
    source          LowCardinality(String),
    kind            LowCardinality(String),
    message_id      String,
    first_seen      DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (anonymous_id, user_id)
SETTINGS non_replicated_deduplication_window = 10000;
