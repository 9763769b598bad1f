-- For the proxy.

-- Every change to a zone row bumps its revision, so an in-memory copy can tell which of two reads is newer.
ALTER TABLE zones ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

-- Retention: when each object was last read, recorded in batches; objects idle past the retention period
-- are evicted by the sweeper, least recently read first.
ALTER TABLE objects ADD COLUMN last_access BIGINT NOT NULL DEFAULT 0;
UPDATE objects SET last_access = stored_on;
CREATE INDEX objects_idle ON objects (last_access);
