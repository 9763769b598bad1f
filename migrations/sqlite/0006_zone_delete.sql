-- Deleting zones (issue #12 B8): a deleted zone stays as a tombstone row (`deleted_on` set), so the change
-- feed carries its deletion to every node, the reclaimer can finish its Clear, and a zone recreated with its
-- id continues its generation counter. Names are unique among live zones only, so a deleted zone's name can
-- be taken again.
--
-- SQLite cannot drop the inline UNIQUE of `zones.name`: the table is rebuilt. Its children (which reference
-- it) are set aside and put back around the rebuild, so that every foreign key holds at every statement.

CREATE TABLE _keep_generations AS SELECT * FROM generations;
CREATE TABLE _keep_clears AS SELECT * FROM clears;
CREATE TABLE _keep_purge_rules AS SELECT * FROM purge_rules;
DELETE FROM generations;
DELETE FROM clears;
DELETE FROM purge_rules;

CREATE TABLE zones_rebuilt (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    origin              TEXT,
    reserve_on          BIGINT NOT NULL DEFAULT 0,
    reserve_modified_on BIGINT,
    generation          BIGINT NOT NULL DEFAULT 1,
    created_on          BIGINT NOT NULL,
    modified_on         BIGINT NOT NULL,
    revision            BIGINT NOT NULL DEFAULT 0,
    purge_revision      BIGINT NOT NULL DEFAULT 0,
    -- When the zone was deleted (unix microseconds, database clock); NULL while it is live.
    deleted_on          BIGINT
);
INSERT INTO zones_rebuilt (id, name, origin, reserve_on, reserve_modified_on, generation, created_on, modified_on,
                           revision, purge_revision)
    SELECT id, name, origin, reserve_on, reserve_modified_on, generation, created_on, modified_on,
           revision, purge_revision
    FROM zones;
DROP TABLE zones;
ALTER TABLE zones_rebuilt RENAME TO zones;
CREATE INDEX zones_revision ON zones (revision);
CREATE UNIQUE INDEX zones_live_name ON zones (name) WHERE deleted_on IS NULL;

INSERT INTO generations SELECT * FROM _keep_generations;
INSERT INTO clears SELECT * FROM _keep_clears;
INSERT INTO purge_rules SELECT * FROM _keep_purge_rules;
DROP TABLE _keep_generations;
DROP TABLE _keep_clears;
DROP TABLE _keep_purge_rules;
