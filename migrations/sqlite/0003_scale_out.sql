-- Scale-out: a store-wide zone revision (a change feed), nodes and their syncs, and Clear leases.

-- Every change to a zone takes the next value (under the write lock), so "zones with revision > r" is
-- exactly what changed since a reader saw r. Existing zones are numbered once, in creation order.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
UPDATE zones SET revision = (SELECT COUNT(*) FROM zones z2
                             WHERE z2.created_on < zones.created_on
                                OR (z2.created_on = zones.created_on AND z2.id <= zones.id));
INSERT INTO counters (name, value) SELECT 'zone_revision', COUNT(*) FROM zones;
CREATE INDEX zones_revision ON zones (revision);

-- Nodes serving from this store, and the last zone revision each has applied (times: database clock).
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    seen_revision BIGINT NOT NULL,
    synced_on     BIGINT NOT NULL,
    started_on    BIGINT NOT NULL
);

-- The reclaim lease of a Clear: who works it until when, a fencing token, and backoff after failures.
ALTER TABLE clears ADD COLUMN lease_owner TEXT;
ALTER TABLE clears ADD COLUMN lease_until BIGINT;
ALTER TABLE clears ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clears ADD COLUMN next_attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clears ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clears ADD COLUMN last_error TEXT;
DROP INDEX clears_pending;
CREATE INDEX clears_pending ON clears (next_attempt, id) WHERE end_ts IS NULL;
