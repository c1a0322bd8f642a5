-- hubgate control plane schema, designed for the whole of SPEC.md.
-- Money is NUMERIC (USD); prices are USD per million tokens.
-- Every admin write bumps policy_state.version in the same transaction;
-- user and key writes also bump key_epoch (the filter's key cache epoch).

CREATE TABLE policy_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    version    bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    key_epoch  bigint NOT NULL DEFAULT 1 CHECK (key_epoch >= 1),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO policy_state DEFAULT VALUES;

CREATE TABLE settings (
    id                                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    enable_client_version_check         boolean NOT NULL DEFAULT false,
    intercept_anthropic_warmup_requests boolean NOT NULL DEFAULT false,
    timezone                            text NOT NULL DEFAULT 'UTC',
    unknown_path                        text NOT NULL DEFAULT 'not_found'
                                        CHECK (unknown_path IN ('passthrough', 'not_found')),
    -- Distinct users a client version needs in 7 days to count as GA (SPEC 2.5).
    ga_threshold                        integer NOT NULL DEFAULT 2 CHECK (ga_threshold >= 1),
    updated_at                          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO settings DEFAULT VALUES;

CREATE TABLE admin_tokens (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE users (
    id                        bigserial PRIMARY KEY,
    name                      text NOT NULL,
    description               text NOT NULL DEFAULT '',
    role                      text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    enabled                   boolean NOT NULL DEFAULT true,
    expires_at                timestamptz,
    allowed_clients           text[] NOT NULL DEFAULT '{}',
    blocked_clients           text[] NOT NULL DEFAULT '{}',
    allowed_models            text[] NOT NULL DEFAULT '{}',
    rpm                       integer CHECK (rpm > 0),
    limit_total_usd           numeric CHECK (limit_total_usd >= 0),
    limit_5h_usd              numeric CHECK (limit_5h_usd >= 0),
    limit_5h_mode             text NOT NULL DEFAULT 'rolling' CHECK (limit_5h_mode IN ('rolling', 'fixed')),
    limit_daily_usd           numeric CHECK (limit_daily_usd >= 0),
    limit_weekly_usd          numeric CHECK (limit_weekly_usd >= 0),
    limit_monthly_usd         numeric CHECK (limit_monthly_usd >= 0),
    limit_concurrent_sessions integer CHECK (limit_concurrent_sessions >= 0),
    daily_reset_mode          text NOT NULL DEFAULT 'fixed' CHECK (daily_reset_mode IN ('fixed', 'rolling')),
    daily_reset_time          text NOT NULL DEFAULT '00:00',
    provider_group            text,
    -- limit_total_usd counts spend since this instant (NULL: since creation).
    cost_reset_at             timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    deleted_at                timestamptz
);
CREATE UNIQUE INDEX users_name_live ON users (name) WHERE deleted_at IS NULL;

CREATE TABLE keys (
    id                        bigserial PRIMARY KEY,
    user_id                   bigint NOT NULL REFERENCES users (id),
    name                      text NOT NULL,
    key_hash                  text NOT NULL UNIQUE,
    key_masked                text NOT NULL,
    enabled                   boolean NOT NULL DEFAULT true,
    expires_at                timestamptz,
    can_login_web_ui          boolean NOT NULL DEFAULT false,
    limit_total_usd           numeric CHECK (limit_total_usd >= 0),
    limit_5h_usd              numeric CHECK (limit_5h_usd >= 0),
    limit_5h_mode             text NOT NULL DEFAULT 'rolling' CHECK (limit_5h_mode IN ('rolling', 'fixed')),
    limit_daily_usd           numeric CHECK (limit_daily_usd >= 0),
    limit_weekly_usd          numeric CHECK (limit_weekly_usd >= 0),
    limit_monthly_usd         numeric CHECK (limit_monthly_usd >= 0),
    limit_concurrent_sessions integer CHECK (limit_concurrent_sessions >= 0),
    provider_group            text,
    cost_reset_at             timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    deleted_at                timestamptz
);
CREATE INDEX keys_user_id ON keys (user_id);

CREATE TABLE providers (
    id                          bigserial PRIMARY KEY,
    name                        text NOT NULL,
    type                        text NOT NULL CHECK (type IN ('claude', 'codex', 'openai-compatible', 'gemini')),
    base_url                    text NOT NULL,
    -- Write-only through the admin API; sent to the filter over the internal API only.
    credential                  text NOT NULL,
    enabled                     boolean NOT NULL DEFAULT true,
    weight                      integer NOT NULL DEFAULT 1 CHECK (weight >= 1),
    priority                    integer NOT NULL DEFAULT 0,
    cost_multiplier             numeric NOT NULL DEFAULT 1 CHECK (cost_multiplier >= 0),
    group_tags                  text[] NOT NULL DEFAULT '{}',
    allowed_models              text[] NOT NULL DEFAULT '{}',
    -- [{"match_type": "exact|prefix|suffix|contains|regex", "pattern": "...", "target": "..."}]
    model_redirects             jsonb NOT NULL DEFAULT '[]',
    limit_total_usd             numeric CHECK (limit_total_usd >= 0),
    limit_5h_usd                numeric CHECK (limit_5h_usd >= 0),
    limit_5h_mode               text NOT NULL DEFAULT 'rolling' CHECK (limit_5h_mode IN ('rolling', 'fixed')),
    limit_daily_usd             numeric CHECK (limit_daily_usd >= 0),
    limit_weekly_usd            numeric CHECK (limit_weekly_usd >= 0),
    limit_monthly_usd           numeric CHECK (limit_monthly_usd >= 0),
    limit_concurrent_sessions   integer CHECK (limit_concurrent_sessions >= 0),
    circuit_failure_threshold   integer NOT NULL DEFAULT 5 CHECK (circuit_failure_threshold >= 1),
    circuit_open_seconds        integer NOT NULL DEFAULT 1800 CHECK (circuit_open_seconds >= 1),
    circuit_half_open_successes integer NOT NULL DEFAULT 2 CHECK (circuit_half_open_successes >= 1),
    first_byte_timeout_ms       integer CHECK (first_byte_timeout_ms >= 1),
    idle_timeout_ms             integer CHECK (idle_timeout_ms >= 1),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz
);
CREATE UNIQUE INDEX providers_name_live ON providers (name) WHERE deleted_at IS NULL;

CREATE TABLE model_prices (
    id                      bigserial PRIMARY KEY,
    model                   text NOT NULL UNIQUE,
    input_per_mtok          numeric NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok         numeric NOT NULL CHECK (output_per_mtok >= 0),
    cache_write_5m_per_mtok numeric CHECK (cache_write_5m_per_mtok >= 0),
    cache_write_1h_per_mtok numeric CHECK (cache_write_1h_per_mtok >= 0),
    cache_read_per_mtok     numeric CHECK (cache_read_per_mtok >= 0),
    -- 'seed' rows follow the committed price table on every migrate; 'admin'
    -- rows (created, edited or deleted through the API) are never overwritten.
    source                  text NOT NULL CHECK (source IN ('seed', 'admin')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- A deleted row stays as a tombstone so that the seed does not bring it back.
    deleted_at              timestamptz
);

CREATE TABLE sensitive_words (
    id          bigserial PRIMARY KEY,
    word        text NOT NULL,
    match_type  text NOT NULL CHECK (match_type IN ('contains', 'exact', 'regex')),
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (word, match_type)
);

CREATE TABLE request_filters (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text NOT NULL DEFAULT '',
    scope        text NOT NULL CHECK (scope IN ('header', 'body')),
    action       text NOT NULL CHECK (action IN ('remove', 'set', 'json_path', 'text_replace')),
    match_type   text CHECK (match_type IN ('contains', 'exact', 'regex')),
    target       text NOT NULL,
    replacement  jsonb,
    priority     integer NOT NULL DEFAULT 0,
    enabled      boolean NOT NULL DEFAULT true,
    binding      text NOT NULL DEFAULT 'global' CHECK (binding IN ('global', 'providers', 'groups')),
    provider_ids bigint[] NOT NULL DEFAULT '{}',
    group_tags   text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per client request (SPEC 5), written from hubgate_wire::RequestEvent.
-- No foreign keys: an audit row must never be refused because its user, key
-- or provider changed meanwhile.
CREATE TABLE message_request (
    id                       bigserial PRIMARY KEY,
    event_id                 text NOT NULL UNIQUE,
    request_id               text NOT NULL,
    started_at               timestamptz NOT NULL,
    received_at              timestamptz NOT NULL DEFAULT now(),
    user_id                  bigint,
    key_id                   bigint,
    key_masked               text,
    provider_id              bigint,
    method                   text NOT NULL,
    endpoint                 text NOT NULL,
    original_model           text,
    upstream_model           text,
    status                   integer NOT NULL,
    duration_ms              bigint NOT NULL,
    ttfb_ms                  bigint,
    input_tokens             bigint NOT NULL DEFAULT 0,
    output_tokens            bigint NOT NULL DEFAULT 0,
    cache_creation_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_creation_1h_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens        bigint NOT NULL DEFAULT 0,
    cost_usd                 numeric NOT NULL DEFAULT 0,
    cost_multiplier          numeric NOT NULL DEFAULT 1,
    session_id               text,
    user_agent               text,
    client_ip                text,
    stream                   boolean NOT NULL DEFAULT false,
    blocked_by               text,
    blocked_reason           jsonb,
    error                    text,
    flags                    text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX message_request_started_at ON message_request (started_at DESC, id DESC);
CREATE INDEX message_request_user ON message_request (user_id, started_at DESC);
CREATE INDEX message_request_key ON message_request (key_id, started_at DESC);
CREATE INDEX message_request_provider ON message_request (provider_id, started_at DESC);
CREATE INDEX message_request_status ON message_request (status, started_at DESC);
CREATE INDEX message_request_blocked_by ON message_request (blocked_by, started_at DESC)
    WHERE blocked_by IS NOT NULL;
CREATE INDEX message_request_session ON message_request (session_id) WHERE session_id IS NOT NULL;

-- Hourly spend per entity, maintained at event ingestion (new events only).
-- Quota windows (SPEC 4) sum whole hours from here and the partial edges from
-- message_request.
CREATE TABLE usage_rollup (
    entity_type   text NOT NULL CHECK (entity_type IN ('user', 'key', 'provider')),
    entity_id     bigint NOT NULL,
    bucket_start  timestamptz NOT NULL,
    cost_usd      numeric NOT NULL DEFAULT 0,
    request_count bigint NOT NULL DEFAULT 0,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_type, entity_id, bucket_start)
);

-- Budget slices granted to filter instances per (entity, window) (SPEC 4,
-- "leases"). Outstanding = granted - settled on unexpired rows.
CREATE TABLE quota_leases (
    id           bigserial PRIMARY KEY,
    entity_type  text NOT NULL CHECK (entity_type IN ('user', 'key', 'provider')),
    entity_id    bigint NOT NULL,
    limit_type   text NOT NULL,
    window_start timestamptz NOT NULL,
    holder       text NOT NULL,
    granted_usd  numeric NOT NULL CHECK (granted_usd >= 0),
    settled_usd  numeric NOT NULL DEFAULT 0,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quota_leases_entity ON quota_leases (entity_type, entity_id, limit_type, expires_at);

-- Cluster-wide active sessions (SPEC 2.7) for concurrency admission and
-- /api/v1/sessions.
CREATE TABLE sessions (
    session_id    text PRIMARY KEY,
    user_id       bigint,
    key_id        bigint,
    provider_id   bigint,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    request_count bigint NOT NULL DEFAULT 0
);
CREATE INDEX sessions_key_last_seen ON sessions (key_id, last_seen_at);
CREATE INDEX sessions_user_last_seen ON sessions (user_id, last_seen_at);

-- GA version per client type (SPEC 2.5), recomputed in the background from
-- message_request user agents and shipped in the snapshot.
CREATE TABLE client_ga_versions (
    client_type text PRIMARY KEY,
    version     text NOT NULL,
    users       integer NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);
