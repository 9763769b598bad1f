-- Deleting zones (issue #12 B8); the same change as migrations/sqlite/0006_zone_delete.sql: a deleted zone
-- stays as a tombstone row (`deleted_on` set), and names are unique among live zones only.

ALTER TABLE zones ADD COLUMN deleted_on BIGINT;
ALTER TABLE zones DROP CONSTRAINT zones_name_key;
CREATE UNIQUE INDEX zones_live_name ON zones (name) WHERE deleted_on IS NULL;
