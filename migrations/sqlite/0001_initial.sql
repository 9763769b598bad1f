-- Control state and object index. Times are BIGINT unix microseconds. The SQL is kept portable to PostgreSQL.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE zones (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    origin              TEXT,
    reserve_on          BIGINT NOT NULL DEFAULT 0,
    reserve_modified_on BIGINT,
    -- Part of every object's location; a Clear bumps it in the transaction that records the Clear.
    generation          BIGINT NOT NULL DEFAULT 1,
    created_on          BIGINT NOT NULL,
    modified_on         BIGINT NOT NULL
);

-- Objects and bytes per (zone, generation): usage of the current one, progress of a Clear over older ones.
CREATE TABLE generations (
    zone_id    TEXT NOT NULL REFERENCES zones(id),
    generation BIGINT NOT NULL,
    objects    BIGINT NOT NULL DEFAULT 0,
    bytes      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (zone_id, generation)
);

CREATE TABLE clears (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    zone_id           TEXT NOT NULL REFERENCES zones(id),
    target_generation BIGINT NOT NULL,
    start_ts          BIGINT NOT NULL,
    end_ts            BIGINT,
    modified_on       BIGINT NOT NULL,
    objects_total     BIGINT NOT NULL,
    bytes_total       BIGINT NOT NULL
);
CREATE INDEX clears_zone ON clears (zone_id, id);
CREATE INDEX clears_pending ON clears (end_ts, id);

CREATE TABLE objects (
    zone_id    TEXT NOT NULL,
    generation BIGINT NOT NULL,
    key_hash   TEXT NOT NULL,
    cache_key  TEXT NOT NULL,
    blob       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    meta       BLOB NOT NULL,
    stored_on  BIGINT NOT NULL,
    PRIMARY KEY (zone_id, generation, key_hash)
) WITHOUT ROWID;

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    -- Comma-separated zone ids; NULL means every zone.
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
