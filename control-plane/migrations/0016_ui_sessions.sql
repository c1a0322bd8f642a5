-- Admin console sign-in sessions (issue 9). Only a hash of the session id
-- (the cookie's value) is stored; the CSRF token is derived from the id, so
-- nothing here lets a reader of the table act as the session. The principal
-- is the credential signed in with, checked again on every request: revoking
-- the admin token, disabling or expiring the key or user, or clearing
-- can_login_web_ui ends its sessions.
CREATE TABLE ui_sessions (
    id             bigserial PRIMARY KEY,
    id_hash        text NOT NULL UNIQUE,
    admin_token_id bigint REFERENCES admin_tokens (id) ON DELETE CASCADE,
    key_id         bigint REFERENCES keys (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    CHECK ((admin_token_id IS NULL) <> (key_id IS NULL))
);

CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);
