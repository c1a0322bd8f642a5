-- Why a user or key is disabled: 'expired' when the expiry sweep disabled it
-- (an admin PATCH that moves expires_at into the future, or clears it, then
-- enables it again); NULL when enabled or disabled by an admin. Rows the
-- sweep disabled before this migration stay NULL: the two cases cannot be
-- told apart after the fact.
ALTER TABLE users ADD COLUMN disabled_reason text CHECK (disabled_reason IN ('expired'));
ALTER TABLE keys ADD COLUMN disabled_reason text CHECK (disabled_reason IN ('expired'));
