//! `POST KEY_RESOLVE_PATH`: key hash → key, user and limits. Disabled and
//! expired keys/users are returned with their flags (the filter decides and
//! words the refusal); unknown and deleted keys answer `key: null`.

use axum::extract::State;
use axum::Json;
use hubgate_wire::{KeyResolveRequest, KeyResolveResponse, ResolvedKey, ResolvedUser};

use super::snapshot::wire_limits;
use super::wire_enum;
use crate::admin::users::{self, User};
use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::extract::JsonBody;

struct KeyRow {
    id: i64,
    user_id: i64,
    name: String,
    key_masked: String,
    enabled: bool,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    can_login_web_ui: bool,
    limit_total_usd: Option<rust_decimal::Decimal>,
    limit_5h_usd: Option<rust_decimal::Decimal>,
    limit_5h_mode: String,
    limit_daily_usd: Option<rust_decimal::Decimal>,
    limit_weekly_usd: Option<rust_decimal::Decimal>,
    limit_monthly_usd: Option<rust_decimal::Decimal>,
    limit_concurrent_sessions: Option<i32>,
    provider_group: Option<String>,
}

pub async fn resolve(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<KeyResolveRequest>,
) -> ApiResult<Json<KeyResolveResponse>> {
    // Read the epoch first: data read afterwards is at least as new as the
    // epoch it is tagged with, so the filter never caches stale data under a
    // current epoch.
    let epoch = crate::db::policy_state(&state.pool).await?.key_epoch as u64;
    let key = sqlx::query_as!(
        KeyRow,
        "SELECT id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
           limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
           limit_concurrent_sessions, provider_group \
         FROM keys WHERE key_hash = $1 AND deleted_at IS NULL",
        req.key_hash
    )
    .fetch_optional(&state.pool)
    .await?;
    let Some(key) = key else {
        return Ok(Json(KeyResolveResponse {
            key_epoch: epoch,
            key: None,
        }));
    };
    let user = match users::find(&state.pool, key.user_id, false).await {
        Ok(user) => user,
        Err(ApiError::NotFound) => {
            return Ok(Json(KeyResolveResponse {
                key_epoch: epoch,
                key: None,
            }))
        }
        Err(err) => return Err(err),
    };

    let now = chrono::Utc::now();
    let expired = |at: Option<chrono::DateTime<chrono::Utc>>| at.is_some_and(|t| t <= now);
    if (key.enabled && expired(key.expires_at)) || (user.enabled && expired(user.expires_at)) {
        state.expiry_wakeup.notify_one();
    }

    Ok(Json(KeyResolveResponse {
        key_epoch: epoch,
        key: Some(resolved(key, user)?),
    }))
}

/// Key `id` (live) and its user as the filter would receive them; `None`
/// when either is gone.
pub(crate) async fn resolve_id(pool: &sqlx::PgPool, id: i64) -> ApiResult<Option<ResolvedKey>> {
    let key = sqlx::query_as!(
        KeyRow,
        "SELECT id, user_id, name, key_masked, enabled, expires_at, can_login_web_ui, limit_total_usd, \
           limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, \
           limit_concurrent_sessions, provider_group \
         FROM keys WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .fetch_optional(pool)
    .await?;
    let Some(key) = key else { return Ok(None) };
    match users::find(pool, key.user_id, false).await {
        Ok(user) => Ok(Some(resolved(key, user)?)),
        Err(ApiError::NotFound) => Ok(None),
        Err(err) => Err(err),
    }
}

fn resolved(key: KeyRow, user: User) -> anyhow::Result<ResolvedKey> {
    let key_limits = wire_limits(
        key.limit_total_usd,
        key.limit_5h_usd,
        &key.limit_5h_mode,
        key.limit_daily_usd,
        key.limit_weekly_usd,
        key.limit_monthly_usd,
        key.limit_concurrent_sessions,
    )?;
    Ok(ResolvedKey {
        id: key.id,
        name: key.name,
        masked: key.key_masked,
        enabled: key.enabled,
        expires_at_ms: key.expires_at.map(|t| t.timestamp_millis()),
        can_login_web_ui: key.can_login_web_ui,
        limits: key_limits,
        provider_group: key.provider_group,
        user: resolved_user(user)?,
    })
}

/// A user as the filter receives it with one of its keys.
pub(crate) fn resolved_user(user: User) -> anyhow::Result<ResolvedUser> {
    let user_limits = wire_limits(
        user.limit_total_usd,
        user.limit_5h_usd,
        &user.limit_5h_mode,
        user.limit_daily_usd,
        user.limit_weekly_usd,
        user.limit_monthly_usd,
        user.limit_concurrent_sessions,
    )?;
    Ok(ResolvedUser {
        id: user.id,
        name: user.name,
        enabled: user.enabled,
        expires_at_ms: user.expires_at.map(|t| t.timestamp_millis()),
        role: wire_enum("role", &user.role)?,
        allowed_clients: user.allowed_clients,
        blocked_clients: user.blocked_clients,
        allowed_models: user.allowed_models,
        rpm: user.rpm.and_then(|n| u32::try_from(n).ok()),
        limits: user_limits,
        daily_reset_mode: wire_enum("daily_reset_mode", &user.daily_reset_mode)?,
        daily_reset_time: user.daily_reset_time,
        provider_group: user.provider_group,
    })
}
