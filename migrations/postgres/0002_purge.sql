-- Purge and invalidate (SPEC §10); the same change as migrations/sqlite/0004_purge.sql.

ALTER TABLE zones ADD COLUMN purge_revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE objects ADD COLUMN fill_revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clears ADD COLUMN kind TEXT NOT NULL DEFAULT 'clear';

CREATE TABLE purge_rules (
    id         BIGSERIAL PRIMARY KEY,
    revision   BIGINT NOT NULL,
    zone_id    TEXT NOT NULL REFERENCES zones(id),
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    headers    TEXT,
    created_on BIGINT NOT NULL,
    done_on    BIGINT
);
CREATE INDEX purge_rules_revision ON purge_rules (revision, id);
CREATE INDEX purge_rules_pending ON purge_rules (revision, id) WHERE done_on IS NULL;
