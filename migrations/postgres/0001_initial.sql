-- Control state and object index on PostgreSQL: the same tables as the SQLite schema after its migrations
-- (migrations/sqlite), in one step. Times are BIGINT unix microseconds, from the database's clock where nodes
-- compare them. Key hashes sort bytewise (COLLATE "C"), as the reclaimer's cursor assumes.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The store-wide zone revision: its row is locked by every zone change until commit.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('zone_revision', 0);

CREATE TABLE zones (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    origin              TEXT,
    reserve_on          BIGINT NOT NULL DEFAULT 0,
    reserve_modified_on BIGINT,
    generation          BIGINT NOT NULL DEFAULT 1,
    revision            BIGINT NOT NULL DEFAULT 0,
    created_on          BIGINT NOT NULL,
    modified_on         BIGINT NOT NULL
);
CREATE INDEX zones_revision ON zones (revision);

CREATE TABLE generations (
    zone_id    TEXT NOT NULL REFERENCES zones(id),
    generation BIGINT NOT NULL,
    objects    BIGINT NOT NULL DEFAULT 0,
    bytes      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (zone_id, generation)
);

CREATE TABLE clears (
    id                BIGSERIAL PRIMARY KEY,
    zone_id           TEXT NOT NULL REFERENCES zones(id),
    target_generation BIGINT NOT NULL,
    start_ts          BIGINT NOT NULL,
    end_ts            BIGINT,
    modified_on       BIGINT NOT NULL,
    objects_total     BIGINT NOT NULL,
    bytes_total       BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_until       BIGINT,
    lease_token       BIGINT NOT NULL DEFAULT 0,
    next_attempt      BIGINT NOT NULL DEFAULT 0,
    attempts          BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT
);
CREATE INDEX clears_zone ON clears (zone_id, id);
CREATE INDEX clears_pending ON clears (next_attempt, id) WHERE end_ts IS NULL;

CREATE TABLE objects (
    zone_id     TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    key_hash    TEXT COLLATE "C" NOT NULL,
    cache_key   TEXT NOT NULL,
    blob        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    meta        BYTEA NOT NULL,
    stored_on   BIGINT NOT NULL,
    last_access BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (zone_id, generation, key_hash)
);
CREATE INDEX objects_idle ON objects (last_access);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    zones       TEXT,
    created_on  BIGINT NOT NULL,
    expires_on  BIGINT,
    revoked_on  BIGINT
);

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,
    key_hash   TEXT NOT NULL UNIQUE,
    created_on BIGINT NOT NULL
);

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    seen_revision BIGINT NOT NULL,
    synced_on     BIGINT NOT NULL,
    started_on    BIGINT NOT NULL
);
