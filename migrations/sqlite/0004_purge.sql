-- Purge and invalidate (SPEC §10): rules by revision, and what each object was filled under.

-- The revision of the zone's latest purge or invalidation rule: a write filled under an older view is not
-- recorded (it may predate the rule, and the rule's background work may already have passed it).
ALTER TABLE zones ADD COLUMN purge_revision BIGINT NOT NULL DEFAULT 0;

-- The zone revision the node that filled an object had applied when the request began: a rule of a higher
-- revision may predate the object's content and applies to it. Objects from before this migration predate
-- every rule.
ALTER TABLE objects ADD COLUMN fill_revision BIGINT NOT NULL DEFAULT 0;

-- `purge_everything` is a generation bump reclaimed like a Clear, but it is not a Clear: the API's Clear
-- state reads only kind 'clear'.
ALTER TABLE clears ADD COLUMN kind TEXT NOT NULL DEFAULT 'clear';

-- One row per selector value of a purge_cache / invalidate_cache call, all with the call's revision.
CREATE TABLE purge_rules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    revision   BIGINT NOT NULL,
    zone_id    TEXT NOT NULL REFERENCES zones(id),
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    headers    TEXT,
    created_on BIGINT NOT NULL,
    -- When the background deletion of its reserve objects finished (purges only).
    done_on    BIGINT
);
CREATE INDEX purge_rules_revision ON purge_rules (revision, id);
CREATE INDEX purge_rules_pending ON purge_rules (revision, id) WHERE done_on IS NULL;
