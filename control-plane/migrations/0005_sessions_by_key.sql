-- Sessions belong to a key (SPEC 2.7): the session id is chosen by the
-- client, so it must never let one key's requests touch another key's row.
-- The same id under two keys is two sessions. Nothing wrote this table
-- before, so it is recreated.
--
-- Written at event ingestion (internal/events.rs) from forwarded requests
-- only (blocked_by IS NULL); rows idle for over 24 h are deleted by the
-- background sweep (background::delete_idle_sessions).

DROP TABLE sessions;

CREATE TABLE sessions (
    key_id        bigint NOT NULL,
    session_id    text NOT NULL,
    user_id       bigint,
    provider_id   bigint,
    -- User agent of the latest request, clipped to 256 characters.
    client        text CHECK (char_length(client) <= 256),
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    request_count bigint NOT NULL DEFAULT 0 CHECK (request_count >= 0),
    PRIMARY KEY (key_id, session_id)
);
CREATE INDEX sessions_key_last_seen ON sessions (key_id, last_seen_at);
CREATE INDEX sessions_user_last_seen ON sessions (user_id, last_seen_at);
-- The unfiltered listing (newest first) and the retention sweep.
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
