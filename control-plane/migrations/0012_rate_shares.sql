-- RPM and concurrency shares handed to filter instances (SPEC §4): one row
-- per (entity, kind, instance). The instance may count up to `share`
-- requests a minute or active sessions until `usable_until`; the share stays
-- reserved until `expires_at` (usable_until + the window a count stays in:
-- 60 s for RPM, 300 s for sessions), so what it admitted is never handed to
-- another instance while it still counts. When a renewal lowers the share,
-- the previous one stays reserved as `held` until `held_until`.
CREATE TABLE rate_shares (
    entity_type  text NOT NULL CHECK (entity_type IN ('key', 'user')),
    entity_id    bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('rpm', 'sessions')),
    instance     text NOT NULL,
    share        integer NOT NULL CHECK (share >= 0),
    usable_until timestamptz NOT NULL,
    held         integer NOT NULL DEFAULT 0,
    held_until   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (entity_type, entity_id, kind, instance)
);
