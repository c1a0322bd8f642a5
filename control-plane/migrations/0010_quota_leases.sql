-- Quota budget handed to filter instances (SPEC §4): one live row per
-- (instance, entity, cost window). `granted_usd` is what the instance may
-- spend under the lease, `spent_usd` what ingested events charged to it;
-- the difference of a live lease counts as committed spend when the next
-- slice is granted. A lease of a fixed window never outlives the window.
-- Replaces the unused draft table of 0001 (nothing ever wrote to it).
DROP TABLE quota_leases;

CREATE TABLE quota_leases (
    id          bigserial PRIMARY KEY,
    instance    text NOT NULL,
    entity_type text NOT NULL CHECK (entity_type IN ('key', 'user')),
    entity_id   bigint NOT NULL,
    limit_type  text NOT NULL,
    granted_usd numeric NOT NULL DEFAULT 0,
    spent_usd   numeric NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX quota_leases_live ON quota_leases (entity_type, entity_id, limit_type, expires_at);
