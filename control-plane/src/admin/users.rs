//! `/api/v1/users`: create, list, get, update, soft delete. A user may get
//! their own record (`auth::require_account`); the rest is for admins.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::ToSchema;

use super::crud;
use super::{after_patch, limit_modes, limits, Id, LimitFields};
use crate::app::AppState;
use crate::auth::Caller;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{JsonBody, JsonObject};
use crate::openapi::{self, AdminOnly, AdminOrOwner, BadBody, Conflict, NotFound, Patch};
use crate::validate::{self, Check};

/// Body of `POST /api/v1/users`; PATCH takes any subset of these fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    #[schema(schema_with = openapi::name)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
    #[serde(default = "default_role")]
    #[schema(schema_with = roles)]
    pub role: String,
    #[serde(default = "super::yes")]
    pub enabled: bool,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(schema_with = openapi::patterns)]
    pub allowed_clients: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = openapi::patterns)]
    pub blocked_clients: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = openapi::models)]
    pub allowed_models: Vec<String>,
    /// Requests per minute.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub rpm: Option<i32>,
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
    #[serde(default = "default_reset_mode")]
    #[schema(schema_with = reset_modes)]
    pub daily_reset_mode: String,
    /// When a fixed daily window starts, in the settings' time zone.
    #[serde(default = "default_reset_time")]
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub daily_reset_time: String,
    #[serde(default)]
    #[schema(schema_with = openapi::group)]
    pub provider_group: Option<String>,
}

pub type UserPatch = Patch<UserInput>;

const ROLES: &[&str] = &["admin", "user"];
const RESET_MODES: &[&str] = &["fixed", "rolling"];

fn roles() -> ObjectBuilder {
    openapi::one_of(ROLES)
}

fn reset_modes() -> ObjectBuilder {
    openapi::one_of(RESET_MODES)
}

fn default_role() -> String {
    "user".to_string()
}

fn default_reset_mode() -> String {
    "fixed".to_string()
}

fn default_reset_time() -> String {
    "00:00".to_string()
}

impl UserInput {
    fn limits(&self) -> LimitFields<'_> {
        LimitFields {
            total: self.limit_total_usd,
            five_hours: self.limit_5h_usd,
            five_hour_mode: &self.limit_5h_mode,
            daily: self.limit_daily_usd,
            weekly: self.limit_weekly_usd,
            monthly: self.limit_monthly_usd,
            concurrent_sessions: self.limit_concurrent_sessions,
        }
    }

    pub fn validate(&self) -> Check {
        validate::name("name", &self.name)?;
        validate::optional_text("description", &self.description, 500)?;
        validate::one_of("role", &self.role, ROLES)?;
        validate::patterns("allowed_clients", &self.allowed_clients)?;
        validate::patterns("blocked_clients", &self.blocked_clients)?;
        validate::models("allowed_models", &self.allowed_models)?;
        validate::at_least("rpm", self.rpm, 1)?;
        limits(&self.limits())?;
        validate::one_of("daily_reset_mode", &self.daily_reset_mode, RESET_MODES)?;
        validate::hh_mm("daily_reset_time", &self.daily_reset_time)?;
        if let Some(group) = &self.provider_group {
            validate::name("provider_group", group)?;
        }
        Ok(())
    }
}

/// A user as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub description: String,
    #[schema(schema_with = roles)]
    pub role: String,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub allowed_clients: Vec<String>,
    pub blocked_clients: Vec<String>,
    pub allowed_models: Vec<String>,
    pub rpm: Option<i32>,
    pub limit_total_usd: Option<Decimal>,
    pub limit_5h_usd: Option<Decimal>,
    #[schema(schema_with = limit_modes)]
    pub limit_5h_mode: String,
    pub limit_daily_usd: Option<Decimal>,
    pub limit_weekly_usd: Option<Decimal>,
    pub limit_monthly_usd: Option<Decimal>,
    pub limit_concurrent_sessions: Option<i32>,
    #[schema(schema_with = reset_modes)]
    pub daily_reset_mode: String,
    pub daily_reset_time: String,
    pub provider_group: Option<String>,
    /// Lifetime spend (limit_total_usd) counts from here; null: from the start.
    pub cost_reset_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserInput {
    fn from(u: &User) -> Self {
        UserInput {
            name: u.name.clone(),
            description: u.description.clone(),
            role: u.role.clone(),
            enabled: u.enabled,
            expires_at: u.expires_at,
            allowed_clients: u.allowed_clients.clone(),
            blocked_clients: u.blocked_clients.clone(),
            allowed_models: u.allowed_models.clone(),
            rpm: u.rpm,
            limit_total_usd: u.limit_total_usd,
            limit_5h_usd: u.limit_5h_usd,
            limit_5h_mode: u.limit_5h_mode.clone(),
            limit_daily_usd: u.limit_daily_usd,
            limit_weekly_usd: u.limit_weekly_usd,
            limit_monthly_usd: u.limit_monthly_usd,
            limit_concurrent_sessions: u.limit_concurrent_sessions,
            daily_reset_mode: u.daily_reset_mode.clone(),
            daily_reset_time: u.daily_reset_time.clone(),
            provider_group: u.provider_group.clone(),
        }
    }
}

/// Inserts a user (used by the API and by `bootstrap`); bumps the policy.
pub async fn insert(conn: &mut PgConnection, u: &UserInput) -> Result<User, ApiError> {
    let user = sqlx::query_as!(
        User,
        "INSERT INTO users (name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
           allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
           limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
           name_fold) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         RETURNING id, name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
           allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
           limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
           cost_reset_at, created_at, updated_at",
        u.name,
        u.description,
        u.role,
        u.enabled,
        u.expires_at,
        &u.allowed_clients,
        &u.blocked_clients,
        &u.allowed_models,
        u.rpm,
        u.limit_total_usd,
        u.limit_5h_usd,
        u.limit_5h_mode,
        u.limit_daily_usd,
        u.limit_weekly_usd,
        u.limit_monthly_usd,
        u.limit_concurrent_sessions,
        u.daily_reset_mode,
        u.daily_reset_time,
        u.provider_group,
        validate::fold(&u.name)
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, true).await?;
    Ok(user)
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "create_user",
    summary = "Create a user",
    request_body = UserInput,
    responses(
        (status = 201, description = "The new user", body = User),
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<UserInput>,
) -> ApiResult<(StatusCode, Json<User>)> {
    input.validate()?;
    let mut tx = state.pool.begin().await?;
    let user = insert(&mut tx, &input).await?;
    tx.commit().await?;
    tracing::info!(user_id = user.id, name = %user.name, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Writes every writable field of user `id` (see [`after_patch`] for
/// `enabled`); bumps the policy.
async fn replace(
    conn: &mut PgConnection,
    id: i64,
    input: &UserInput,
    enabled_in_patch: bool,
) -> ApiResult<User> {
    let mut u = input.clone();
    let reason = sqlx::query_scalar!("SELECT disabled_reason FROM users WHERE id = $1", id)
        .fetch_one(&mut *conn)
        .await?;
    let reason = after_patch(reason, enabled_in_patch, &mut u.enabled, u.expires_at);
    let user = sqlx::query_as!(
        User,
        "UPDATE users SET (name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
           allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
           limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
           name_fold, disabled_reason, updated_at) \
           = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, now()) \
         WHERE id = $22 \
         RETURNING id, name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
           allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
           limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
           cost_reset_at, created_at, updated_at",
        u.name,
        u.description,
        u.role,
        u.enabled,
        u.expires_at,
        &u.allowed_clients,
        &u.blocked_clients,
        &u.allowed_models,
        u.rpm,
        u.limit_total_usd,
        u.limit_5h_usd,
        u.limit_5h_mode,
        u.limit_daily_usd,
        u.limit_weekly_usd,
        u.limit_monthly_usd,
        u.limit_concurrent_sessions,
        u.daily_reset_mode,
        u.daily_reset_time,
        u.provider_group,
        validate::fold(&u.name),
        reason,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, true).await?;
    Ok(user)
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "list_users",
    summary = "List users",
    responses((status = 200, description = "Every live user", body = Vec<User>), AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<User>>> {
    let users = sqlx::query_as!(
        User,
        "SELECT id, name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
           allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
           limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
           cost_reset_at, created_at, updated_at \
         FROM users WHERE deleted_at IS NULL ORDER BY id"
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(users))
}

/// A live (not deleted) user, or 404; `for_update` locks it.
pub async fn find<'e>(db: impl PgExecutor<'e>, id: i64, for_update: bool) -> ApiResult<User> {
    let user = if for_update {
        sqlx::query_as!(
            User,
            "SELECT id, name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
               allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
               limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
               cost_reset_at, created_at, updated_at \
             FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            User,
            "SELECT id, name, description, role, enabled, expires_at, allowed_clients, blocked_clients, \
               allowed_models, rpm, limit_total_usd, limit_5h_usd, limit_5h_mode, limit_daily_usd, limit_weekly_usd, \
               limit_monthly_usd, limit_concurrent_sessions, daily_reset_mode, daily_reset_time, provider_group, \
               cost_reset_at, created_at, updated_at \
             FROM users WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .fetch_optional(db)
        .await?
    };
    user.ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    operation_id = "get_user",
    summary = "Get a user (users: themselves)",
    params(Id),
    responses((status = 200, description = "The user", body = User), NotFound, AdminOrOwner),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
) -> ApiResult<Json<User>> {
    let user = find(&state.pool, id, false).await?;
    if !caller.may_read_user(id) {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(user))
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "users",
    operation_id = "update_user",
    summary = "Update a user (any subset of fields; null clears a nullable field)",
    params(Id),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The updated user", body = User),
        NotFound,
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<User>> {
    let enabled_in_patch = patch.contains_key("enabled");
    let write = async |conn: &mut PgConnection, id, input: &UserInput| {
        replace(conn, id, input, enabled_in_patch).await
    };
    let lock = async |conn: &mut PgConnection, id| find(conn, id, true).await;
    let user = crud::update(&state.pool, id, patch, lock, UserInput::validate, write).await?;
    tracing::info!(user_id = id, "user updated");
    Ok(Json(user))
}

/// Soft delete: the user and all their keys stop resolving; audit rows stay.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "users",
    operation_id = "delete_user",
    summary = "Soft-delete the user and their keys",
    params(Id),
    responses((status = 204, description = "Deleted"), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    crud::delete(&state.pool, true, async |conn: &mut PgConnection| {
        let deleted = sqlx::query!(
            "UPDATE users SET deleted_at = now(), enabled = false, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!(
            "UPDATE keys SET deleted_at = now(), enabled = false, updated_at = now() \
             WHERE user_id = $1 AND deleted_at IS NULL",
            id
        )
        .execute(&mut *conn)
        .await?;
        Ok(deleted)
    })
    .await?;
    tracing::info!(user_id = id, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
