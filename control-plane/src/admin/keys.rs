//! Keys: `POST/GET /api/v1/users/{id}/keys`, `GET/PATCH/DELETE /api/v1/keys/{id}`,
//! `POST /api/v1/keys/{id}/rotate`. Only the SHA-256 of a key is stored; the
//! raw key is returned once, at creation or rotation. Users may list and
//! rotate their own keys (with a key that has `can_login_web_ui`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rand::distr::Alphanumeric;
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;

use super::crud;
use super::{after_patch, limit_modes, limits, users, Id, LimitFields};
use crate::app::AppState;
use crate::auth::Caller;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{JsonBody, JsonObject};
use crate::openapi::{self, AdminOnly, AdminOrOwner, BadBody, NotFound, Patch};
use crate::validate::{self, Check};

/// A new raw key: `sk-` and 48 random alphanumerics from a CSPRNG.
pub fn generate() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    format!("sk-{body}")
}

/// Body of `POST /api/v1/users/{id}/keys`; PATCH takes any subset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    #[schema(schema_with = openapi::name)]
    pub name: String,
    #[serde(default = "super::yes")]
    pub enabled: bool,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The key may read its user's own data through the admin API.
    #[serde(default)]
    pub can_login_web_ui: bool,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub limit_total_usd: Option<Decimal>,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub limit_5h_usd: Option<Decimal>,
    #[serde(default = "super::rolling")]
    #[schema(schema_with = limit_modes)]
    pub limit_5h_mode: String,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub limit_daily_usd: Option<Decimal>,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub limit_weekly_usd: Option<Decimal>,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub limit_monthly_usd: Option<Decimal>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub limit_concurrent_sessions: Option<i32>,
    #[serde(default)]
    #[schema(schema_with = openapi::group)]
    pub provider_group: Option<String>,
}

pub type KeyPatch = Patch<KeyInput>;

impl KeyInput {
    pub fn named(name: &str) -> Self {
        KeyInput {
            name: name.to_string(),
            enabled: true,
            expires_at: None,
            can_login_web_ui: false,
            limit_total_usd: None,
            limit_5h_usd: None,
            limit_5h_mode: "rolling".to_string(),
            limit_daily_usd: None,
            limit_weekly_usd: None,
            limit_monthly_usd: None,
            limit_concurrent_sessions: None,
            provider_group: None,
        }
    }

    pub fn validate(&self) -> Check {
        validate::name("name", &self.name)?;
        limits(&LimitFields {
            total: self.limit_total_usd,
            five_hours: self.limit_5h_usd,
            five_hour_mode: &self.limit_5h_mode,
            daily: self.limit_daily_usd,
            weekly: self.limit_weekly_usd,
            monthly: self.limit_monthly_usd,
            concurrent_sessions: self.limit_concurrent_sessions,
        })?;
        if let Some(group) = &self.provider_group {
            validate::name("provider_group", group)?;
        }
        Ok(())
    }
}

/// A key as the API returns it: masked, never the raw key or its hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Key {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    #[schema(example = "sk-…abcd")]
    pub key_masked: String,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub can_login_web_ui: bool,
    pub limit_total_usd: Option<Decimal>,
    pub limit_5h_usd: Option<Decimal>,
    #[schema(schema_with = limit_modes)]
    pub limit_5h_mode: String,
    pub limit_daily_usd: Option<Decimal>,
    pub limit_weekly_usd: Option<Decimal>,
    pub limit_monthly_usd: Option<Decimal>,
    pub limit_concurrent_sessions: Option<i32>,
    pub provider_group: Option<String>,
    /// Lifetime spend (limit_total_usd) counts from here; null: from the start.
    pub cost_reset_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The creation answer: the key plus the raw `key`, shown this once only.
// Debug is written by hand: it must not show the raw key.
#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    #[serde(flatten)]
    pub meta: Key,
    /// The raw key, shown only in this answer.
    pub key: String,
}

impl std::fmt::Debug for KeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCreated")
            .field("meta", &self.meta)
            .field("key", &hubgate_wire::mask_key(&self.key))
            .finish()
    }
}

impl From<&Key> for KeyInput {
    fn from(k: &Key) -> Self {
        KeyInput {
            name: k.name.clone(),
            enabled: k.enabled,
            expires_at: k.expires_at,
            can_login_web_ui: k.can_login_web_ui,
            limit_total_usd: k.limit_total_usd,
            limit_5h_usd: k.limit_5h_usd,
            limit_5h_mode: k.limit_5h_mode.clone(),
            limit_daily_usd: k.limit_daily_usd,
            limit_weekly_usd: k.limit_weekly_usd,
            limit_monthly_usd: k.limit_monthly_usd,
            limit_concurrent_sessions: k.limit_concurrent_sessions,
            provider_group: k.provider_group.clone(),
        }
    }
}

/// Stores a key with the given raw value (hashed and masked); bumps the policy.
pub async fn insert(
    conn: &mut PgConnection,
    user_id: i64,
    k: &KeyInput,
    raw: &str,
) -> ApiResult<Key> {
    let key = sqlx::query_as!(
        Key,
        "INSERT INTO keys (name, enabled, expires_at, can_login_web_ui, limit_total_usd, limit_5h_usd, \
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions, \
           provider_group, user_id, key_hash, key_masked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         RETURNING id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
           limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
           limit_concurrent_sessions, provider_group, cost_reset_at, created_at, updated_at",
        k.name,
        k.enabled,
        k.expires_at,
        k.can_login_web_ui,
        k.limit_total_usd,
        k.limit_5h_usd,
        k.limit_5h_mode,
        k.limit_daily_usd,
        k.limit_weekly_usd,
        k.limit_monthly_usd,
        k.limit_concurrent_sessions,
        k.provider_group,
        user_id,
        hubgate_wire::hash_key(raw),
        hubgate_wire::mask_key(raw)
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, true).await?;
    Ok(key)
}

/// Writes every writable field of key `id` (see [`after_patch`] for
/// `enabled`); bumps the policy.
async fn replace(
    conn: &mut PgConnection,
    id: i64,
    input: &KeyInput,
    enabled_in_patch: bool,
) -> ApiResult<Key> {
    let mut k = input.clone();
    let reason = sqlx::query_scalar!("SELECT disabled_reason FROM keys WHERE id = $1", id)
        .fetch_one(&mut *conn)
        .await?;
    let reason = after_patch(reason, enabled_in_patch, &mut k.enabled, k.expires_at);
    let key = sqlx::query_as!(
        Key,
        "UPDATE keys SET (name, enabled, expires_at, can_login_web_ui, limit_total_usd, limit_5h_usd, \
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions, \
           provider_group, disabled_reason, updated_at) \
           = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now()) \
         WHERE id = $14 \
         RETURNING id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
           limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
           limit_concurrent_sessions, provider_group, cost_reset_at, created_at, updated_at",
        k.name,
        k.enabled,
        k.expires_at,
        k.can_login_web_ui,
        k.limit_total_usd,
        k.limit_5h_usd,
        k.limit_5h_mode,
        k.limit_daily_usd,
        k.limit_weekly_usd,
        k.limit_monthly_usd,
        k.limit_concurrent_sessions,
        k.provider_group,
        reason,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, true).await?;
    Ok(key)
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/keys",
    tag = "keys",
    operation_id = "create_key",
    summary = "Create a key; the raw `key` is returned only here",
    params(Id),
    request_body = KeyInput,
    responses(
        (status = 201, description = "The new key, with its raw value", body = KeyCreated),
        NotFound,
        BadBody,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Id(user_id): Id,
    JsonBody(input): JsonBody<KeyInput>,
) -> ApiResult<(StatusCode, Json<KeyCreated>)> {
    let mut tx = state.pool.begin().await?;
    // Lock the user so a concurrent delete cannot leave a live key behind.
    users::find(&mut *tx, user_id, true).await?;
    input.validate()?;
    let raw = generate();
    let key = insert(&mut tx, user_id, &input, &raw).await?;
    tx.commit().await?;
    tracing::info!(key_id = key.id, user_id, masked = %key.key_masked, "key created");
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            meta: key,
            key: raw,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/keys",
    tag = "keys",
    operation_id = "list_keys",
    summary = "List the user's keys (masked); users: their own",
    params(Id),
    responses(
        (status = 200, description = "The user's live keys", body = Vec<Key>),
        NotFound,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(user_id): Id,
) -> ApiResult<Json<Vec<Key>>> {
    users::find(&state.pool, user_id, false).await?;
    if !caller.may_read_user(user_id) {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(
        sqlx::query_as!(
            Key,
            "SELECT id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
               limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
               limit_concurrent_sessions, provider_group, cost_reset_at, created_at, updated_at \
             FROM keys WHERE user_id = $1 AND deleted_at IS NULL ORDER BY id",
            user_id
        )
        .fetch_all(&state.pool)
        .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    operation_id = "get_key",
    summary = "Get one key (masked)",
    params(Id),
    responses((status = 200, description = "The key", body = Key), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Key>> {
    Ok(Json(find(&state.pool, id, false).await?))
}

/// A live (not deleted) key, or 404; `for_update` locks it.
async fn find<'e>(db: impl PgExecutor<'e>, id: i64, for_update: bool) -> ApiResult<Key> {
    let key = if for_update {
        sqlx::query_as!(
            Key,
            "SELECT id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
               limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
               limit_concurrent_sessions, provider_group, cost_reset_at, created_at, updated_at \
             FROM keys WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            Key,
            "SELECT id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
               limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
               limit_concurrent_sessions, provider_group, cost_reset_at, created_at, updated_at \
             FROM keys WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .fetch_optional(db)
        .await?
    };
    key.ok_or(ApiError::NotFound)
}

#[utoipa::path(
    patch,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    operation_id = "update_key",
    summary = "Update a key (enable/disable, expiry, limits)",
    params(Id),
    request_body = KeyPatch,
    responses(
        (status = 200, description = "The updated key", body = Key),
        NotFound,
        BadBody,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<Key>> {
    let enabled_in_patch = patch.contains_key("enabled");
    let write = async |conn: &mut PgConnection, id, input: &KeyInput| {
        replace(conn, id, input, enabled_in_patch).await
    };
    let lock = async |conn: &mut PgConnection, id| find(conn, id, true).await;
    let key = crud::update(&state.pool, id, patch, lock, KeyInput::validate, write).await?;
    tracing::info!(key_id = id, enabled = key.enabled, "key updated");
    Ok(Json(key))
}

/// A new secret for key `id`, everything else kept: the old raw key stops
/// resolving at once (key epoch bump). The new one is in the answer, once.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/rotate",
    tag = "keys",
    operation_id = "rotate_key",
    summary = "Replace the key's secret (the old one stops working at once); the new raw `key` is \
               returned only here. Users: their own keys",
    params(Id),
    responses(
        (status = 200, description = "The key, with its new raw value", body = KeyCreated),
        NotFound,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn rotate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
) -> ApiResult<Json<KeyCreated>> {
    let mut tx = state.pool.begin().await?;
    let current = find(&mut *tx, id, true).await?;
    if !caller.may_read_user(current.user_id) {
        return Err(ApiError::Forbidden);
    }
    let raw = generate();
    let key = sqlx::query_as!(
        Key,
        "UPDATE keys SET key_hash = $2, key_masked = $3, updated_at = now() WHERE id = $1 \
         RETURNING id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
           limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
           limit_concurrent_sessions, provider_group, cost_reset_at, created_at, updated_at",
        id,
        hubgate_wire::hash_key(&raw),
        hubgate_wire::mask_key(&raw)
    )
    .fetch_one(&mut *tx)
    .await?;
    bump_policy(&mut tx, true).await?;
    tx.commit().await?;
    tracing::info!(key_id = id, masked = %key.key_masked, "key rotated");
    Ok(Json(KeyCreated {
        meta: key,
        key: raw,
    }))
}

/// Soft delete: the key stops resolving at once (key epoch bump); audit rows stay.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    operation_id = "delete_key",
    summary = "Soft-delete a key",
    params(Id),
    responses((status = 204, description = "Deleted"), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    crud::delete(&state.pool, true, async |conn: &mut PgConnection| {
        sqlx::query!(
            "UPDATE keys SET deleted_at = now(), enabled = false, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .execute(conn)
        .await
    })
    .await?;
    tracing::info!(key_id = id, "key deleted");
    Ok(StatusCode::NO_CONTENT)
}
