-- identities kept one row per (anonymous_id, user_id): ReplacingMergeTree keeps the latest
-- insert, so a link sighted again took the later time, and an anonymous id linked to two
-- users (a shared device: X, then Y, then X again) resolved to Y. Each sighting (its
-- event time in ms) now is its own row, so the earliest one survives; resends of a call
-- carry the same time and still collapse. Rows never outnumber the identify and alias
-- events stored in `events`.
--
-- A new sorting-key column must be added in the same ALTER and without a default; the
-- default (what writers that do not name the column get, and what parts written before
-- this migration read) is set by the second statement.
ALTER TABLE identities
    ADD COLUMN IF NOT EXISTS seen_ms Int64 AFTER first_seen,
    MODIFY ORDER BY (anonymous_id, user_id, seen_ms);

ALTER TABLE identities
    MODIFY COLUMN seen_ms Int64 DEFAULT toUnixTimestamp64Milli(first_seen);
