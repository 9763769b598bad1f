-- Retiring purge rules once their work is done (SPEC §10): a rule is forgotten when the reserve no longer
-- holds a copy it targets unchanged and every live node has swept its memory for it.

-- An invalidation, written into each reserve object it targeted (its rule's revision, and when the rule
-- committed), so the object stays invalidated after the rule is retired. It applies while the object's
-- fill_revision is below invalidated_revision (a revalidation raises fill_revision past it).
ALTER TABLE objects ADD COLUMN invalidated_revision BIGINT;
ALTER TABLE objects ADD COLUMN invalidated_at BIGINT;

-- The revision through which the node has swept its edge tier and reserve metadata in memory.
ALTER TABLE nodes ADD COLUMN swept_revision BIGINT NOT NULL DEFAULT 0;

-- Every rule of a revision up to this one has been retired. A node that has not swept through it (it
-- was not live when the rules were retired) empties its memory tiers before it serves again.
INSERT INTO counters (name, value) VALUES ('purge_retired_through', 0);
