//! `/api/v1/settings` (GET, PATCH): the single settings row.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::ApiResult;
use crate::extract::{merge_patch, JsonObject};
use crate::openapi::{self, AdminOnly, BadBody, Patch};
use crate::validate::{self, Check};

/// Longest audit retention (ten years).
pub const MAX_RETENTION_DAYS: i32 = 3650;

/// The languages client messages can be in (SPEC 3); the first is the default.
pub const LOCALES: &[&str] = &["en", "zh-CN"];

const UNKNOWN_PATHS: &[&str] = &["passthrough", "not_found"];

fn locales() -> ObjectBuilder {
    openapi::one_of(LOCALES).description(Some(
        "Language of messages to clients; codes, types and field names never change",
    ))
}

fn unknown_paths() -> ObjectBuilder {
    openapi::one_of(UNKNOWN_PATHS).description(Some(
        "A request to a path the gateway does not know: `passthrough` forwards it to a provider, \
         `not_found` answers 404",
    ))
}

/// The settings as PATCH sees them (every field, before the patch is laid over).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub enable_client_version_check: bool,
    pub intercept_anthropic_warmup_requests: bool,
    /// IANA time zone, e.g. UTC: the fixed quota windows and daily reset times are in it.
    pub timezone: String,
    #[schema(schema_with = unknown_paths)]
    pub unknown_path: String,
    /// Distinct users on a version that make it the GA version of its client type.
    #[schema(minimum = 1)]
    pub ga_threshold: i32,
    #[schema(schema_with = locales)]
    pub locale: String,
    /// Audit rows are kept at least this many days (whole days are dropped);
    /// usage totals are kept regardless.
    #[schema(minimum = 1, maximum = 3650)]
    pub audit_retention_days: i32,
    /// Providers one request may be tried on, in order, while each fails
    /// before its answer started (README "Failover"); 1 turns failover off.
    #[schema(minimum = 1, maximum = 5)]
    pub max_provider_attempts: i32,
}

pub type SettingsPatch = Patch<SettingsInput>;

impl SettingsInput {
    pub fn validate(&self) -> Check {
        validate::timezone("timezone", &self.timezone)?;
        validate::one_of("unknown_path", &self.unknown_path, UNKNOWN_PATHS)?;
        validate::at_least("ga_threshold", Some(self.ga_threshold), 1)?;
        validate::one_of("locale", &self.locale, LOCALES)?;
        validate::between(
            "audit_retention_days",
            self.audit_retention_days,
            1,
            MAX_RETENTION_DAYS,
        )?;
        validate::between(
            "max_provider_attempts",
            self.max_provider_attempts,
            1,
            i32::from(hubgate_wire::snapshot::MAX_PROVIDER_ATTEMPTS),
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Settings {
    pub enable_client_version_check: bool,
    pub intercept_anthropic_warmup_requests: bool,
    /// IANA time zone, e.g. UTC.
    pub timezone: String,
    #[schema(schema_with = unknown_paths)]
    pub unknown_path: String,
    pub ga_threshold: i32,
    #[schema(schema_with = locales)]
    pub locale: String,
    /// Audit rows (`/api/v1/requests`) are kept at least this many days;
    /// usage totals are kept regardless.
    pub audit_retention_days: i32,
    /// Providers one request may be tried on (README "Failover").
    pub max_provider_attempts: i32,
    pub updated_at: DateTime<Utc>,
}

pub async fn load<'e, E: sqlx::PgExecutor<'e>>(db: E) -> Result<Settings, sqlx::Error> {
    sqlx::query_as!(
        Settings,
        "SELECT enable_client_version_check, intercept_anthropic_warmup_requests, timezone, unknown_path, \
           ga_threshold, locale, audit_retention_days, max_provider_attempts, updated_at \
         FROM settings"
    )
    .fetch_one(db)
    .await
}

#[utoipa::path(
    get,
    path = "/api/v1/settings",
    tag = "settings",
    operation_id = "get_settings",
    summary = "Get settings",
    responses((status = 200, description = "The settings", body = Settings), AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>) -> ApiResult<Json<Settings>> {
    Ok(Json(load(&state.pool).await?))
}

/// The GA version of a client type (SPEC §2.5), as last computed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientVersion {
    pub client_type: String,
    pub version: String,
    /// Distinct users on this version in the last 7 days.
    pub users: i32,
    pub computed_at: DateTime<Utc>,
}

/// `GET /api/v1/client-versions`: what the version check compares against.
#[utoipa::path(
    get,
    path = "/api/v1/client-versions",
    tag = "settings",
    operation_id = "list_client_versions",
    summary = "GA version per client type (highest version used by ga_threshold distinct users in \
               the last 7 days); the client version check compares against these",
    responses(
        (status = 200, description = "One per client type", body = Vec<ClientVersion>),
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn client_versions(State(state): State<AppState>) -> ApiResult<Json<Vec<ClientVersion>>> {
    let rows = sqlx::query_as!(
        ClientVersion,
        "SELECT client_type, version, users, computed_at FROM client_ga_versions ORDER BY client_type"
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(rows))
}

#[utoipa::path(
    patch,
    path = "/api/v1/settings",
    tag = "settings",
    operation_id = "update_settings",
    summary = "Update settings (any subset of fields)",
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The updated settings", body = Settings),
        BadBody,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<Settings>> {
    let mut tx = state.pool.begin().await?;
    let current = sqlx::query_as!(
        Settings,
        "SELECT enable_client_version_check, intercept_anthropic_warmup_requests, timezone, unknown_path, \
           ga_threshold, locale, audit_retention_days, max_provider_attempts, updated_at \
         FROM settings FOR UPDATE"
    )
    .fetch_one(&mut *tx)
    .await?;
    let base = SettingsInput {
        enable_client_version_check: current.enable_client_version_check,
        intercept_anthropic_warmup_requests: current.intercept_anthropic_warmup_requests,
        timezone: current.timezone,
        unknown_path: current.unknown_path,
        ga_threshold: current.ga_threshold,
        locale: current.locale,
        audit_retention_days: current.audit_retention_days,
        max_provider_attempts: current.max_provider_attempts,
    };
    let input: SettingsInput = merge_patch(&base, patch)?;
    input.validate()?;
    let settings = sqlx::query_as!(
        Settings,
        "UPDATE settings SET enable_client_version_check = $1, intercept_anthropic_warmup_requests = $2, \
           timezone = $3, unknown_path = $4, ga_threshold = $5, locale = $6, audit_retention_days = $7, \
           max_provider_attempts = $8, updated_at = now() \
         RETURNING enable_client_version_check, intercept_anthropic_warmup_requests, timezone, unknown_path, \
           ga_threshold, locale, audit_retention_days, max_provider_attempts, updated_at",
        input.enable_client_version_check,
        input.intercept_anthropic_warmup_requests,
        input.timezone,
        input.unknown_path,
        input.ga_threshold,
        input.locale,
        input.audit_retention_days,
        input.max_provider_attempts
    )
    .fetch_one(&mut *tx)
    .await?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!("settings updated");
    Ok(Json(settings))
}
