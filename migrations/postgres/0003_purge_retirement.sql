-- Retiring purge rules (SPEC §10); the same change as migrations/sqlite/0005_purge_retirement.sql.

ALTER TABLE objects ADD COLUMN invalidated_revision BIGINT;
ALTER TABLE objects ADD COLUMN invalidated_at BIGINT;
ALTER TABLE nodes ADD COLUMN swept_revision BIGINT NOT NULL DEFAULT 0;
INSERT INTO counters (name, value) VALUES ('purge_retired_through', 0);
