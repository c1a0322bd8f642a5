//! `/api/v1/providers`. The credential (`api_key`) is write-only: answers
//! carry `api_key_masked` instead.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use hubgate_wire::pattern::PatternUse;
use hubgate_wire::{ModelRedirect, RedirectMatch};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::types::Json as DbJson;
use sqlx::{PgConnection, PgExecutor};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;

use super::crud;
use super::{limit_modes, limits, Id, LimitFields};
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{JsonBody, JsonObject};
use crate::openapi::{self, AdminOnly, BadBody, Conflict, NotFound, Patch};
use crate::validate::{self, Check};

pub const TYPES: &[&str] = &["claude", "codex", "openai-compatible", "gemini"];
pub const MAX_REDIRECTS: usize = 100;
pub const MAX_WEIGHT: i32 = 10_000;
/// `priority` lies in -MAX_PRIORITY..=MAX_PRIORITY (lower wins).
pub const MAX_PRIORITY: i32 = 1000;
const MAX_COST_MULTIPLIER: i64 = 1000;

fn types() -> ObjectBuilder {
    openapi::one_of(TYPES)
}

fn cost_multiplier() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
        .minimum(Some(0))
        .maximum(Some(MAX_COST_MULTIPLIER))
        .default(Some("1".into()))
        .description(Some(
            "Decimal, as a number or a string: the cost of this provider's requests is \
             multiplied by it",
        ))
}

/// Body of `POST /api/v1/providers`; PATCH takes any subset.
// No Debug: it holds the credential.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    #[schema(schema_with = openapi::name)]
    pub name: String,
    #[serde(rename = "type")]
    #[schema(schema_with = types)]
    pub provider_type: String,
    /// An http(s) URL with a host, no query, fragment or credentials.
    #[schema(format = "uri", max_length = 2048)]
    pub base_url: String,
    /// Write-only credential sent upstream by the filter; never returned.
    #[schema(write_only, min_length = 1, max_length = 4096)]
    pub api_key: String,
    #[serde(default = "super::yes")]
    pub enabled: bool,
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 10000, default = one)]
    pub weight: i32,
    /// Lower wins.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000, default = 0)]
    pub priority: i32,
    #[serde(default = "unit")]
    #[schema(schema_with = cost_multiplier)]
    pub cost_multiplier: Decimal,
    #[serde(default)]
    #[schema(schema_with = openapi::patterns)]
    pub group_tags: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = openapi::models)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub model_redirects: Vec<ModelRedirect>,
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
    /// Consecutive failures that open the circuit.
    #[serde(default = "default_failure_threshold")]
    #[schema(minimum = 1, default = default_failure_threshold)]
    pub circuit_failure_threshold: i32,
    /// Seconds an open circuit keeps the provider out before it is tried
    /// again (half-open).
    #[serde(default = "default_open_seconds")]
    #[schema(minimum = 1, default = default_open_seconds)]
    pub circuit_open_seconds: i32,
    /// Successes in half-open state that close the circuit again.
    #[serde(default = "default_half_open_successes")]
    #[schema(minimum = 1, default = default_half_open_successes)]
    pub circuit_half_open_successes: i32,
    /// Longest wait for the provider's response headers; past it the next
    /// eligible provider is tried (failover), or the client gets 504
    /// `upstream_timeout`. None: no limit of its own.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub first_byte_timeout_ms: Option<i32>,
    /// Longest pause between two chunks of a response once it started;
    /// past it the stream is cut (never retried) and its row flagged
    /// `idle_timeout`. None: no limit of its own.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub idle_timeout_ms: Option<i32>,
}

pub type ProviderPatch = Patch<ProviderInput>;

fn one() -> i32 {
    1
}

fn unit() -> Decimal {
    Decimal::ONE
}

fn default_failure_threshold() -> i32 {
    5
}

fn default_open_seconds() -> i32 {
    1800
}

fn default_half_open_successes() -> i32 {
    2
}

impl ProviderInput {
    /// A provider with defaults for everything but the four required fields.
    pub fn new(name: &str, provider_type: &str, base_url: &str, api_key: &str) -> Self {
        ProviderInput {
            name: name.to_string(),
            provider_type: provider_type.to_string(),
            base_url: base_url.to_string(),
            api_key: api_key.to_string(),
            enabled: true,
            weight: 1,
            priority: 0,
            cost_multiplier: Decimal::ONE,
            group_tags: Vec::new(),
            allowed_models: Vec::new(),
            model_redirects: Vec::new(),
            limit_total_usd: None,
            limit_5h_usd: None,
            limit_5h_mode: "rolling".to_string(),
            limit_daily_usd: None,
            limit_weekly_usd: None,
            limit_monthly_usd: None,
            limit_concurrent_sessions: None,
            circuit_failure_threshold: 5,
            circuit_open_seconds: 1800,
            circuit_half_open_successes: 2,
            first_byte_timeout_ms: None,
            idle_timeout_ms: None,
        }
    }

    pub fn validate(&self) -> Check {
        validate::name("name", &self.name)?;
        validate::one_of("type", &self.provider_type, TYPES)?;
        validate::base_url("base_url", &self.base_url)?;
        validate::text("api_key", &self.api_key, 4096)?;
        validate::between("weight", self.weight, 1, MAX_WEIGHT)?;
        validate::between("priority", self.priority, -MAX_PRIORITY, MAX_PRIORITY)?;
        if self.cost_multiplier.is_sign_negative() && !self.cost_multiplier.is_zero() {
            return Err(ApiError::validation("cost_multiplier", "must be ≥ 0"));
        }
        if self.cost_multiplier > Decimal::from(MAX_COST_MULTIPLIER) {
            return Err(ApiError::validation(
                "cost_multiplier",
                format!("must be ≤ {MAX_COST_MULTIPLIER}"),
            ));
        }
        validate::patterns("group_tags", &self.group_tags)?;
        validate::models("allowed_models", &self.allowed_models)?;
        if self.model_redirects.len() > MAX_REDIRECTS {
            return Err(ApiError::validation(
                "model_redirects",
                format!("at most {MAX_REDIRECTS} items"),
            ));
        }
        for (i, r) in self.model_redirects.iter().enumerate() {
            let field = format!("model_redirects[{i}].pattern");
            if r.match_type == RedirectMatch::Regex {
                validate::regex(&field, &r.pattern, PatternUse::ModelRedirect)?;
            } else {
                validate::text(&field, &r.pattern, 128)?;
            }
            validate::model_name(&format!("model_redirects[{i}].target"), &r.target)?;
        }
        limits(&LimitFields {
            total: self.limit_total_usd,
            five_hours: self.limit_5h_usd,
            five_hour_mode: &self.limit_5h_mode,
            daily: self.limit_daily_usd,
            weekly: self.limit_weekly_usd,
            monthly: self.limit_monthly_usd,
            concurrent_sessions: self.limit_concurrent_sessions,
        })?;
        validate::at_least(
            "circuit_failure_threshold",
            Some(self.circuit_failure_threshold),
            1,
        )?;
        validate::at_least("circuit_open_seconds", Some(self.circuit_open_seconds), 1)?;
        validate::at_least(
            "circuit_half_open_successes",
            Some(self.circuit_half_open_successes),
            1,
        )?;
        validate::at_least("first_byte_timeout_ms", self.first_byte_timeout_ms, 1)?;
        validate::at_least("idle_timeout_ms", self.idle_timeout_ms, 1)?;
        Ok(())
    }
}

/// A provider row. `credential` never leaves through the admin API.
#[derive(Clone, Serialize, ToSchema)]
pub struct Provider {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(schema_with = types)]
    pub provider_type: String,
    pub base_url: String,
    #[serde(skip_serializing)]
    pub credential: String,
    // Queries select '' for it; [`Provider::masked`] fills it.
    #[schema(example = "sk-…abcd")]
    pub api_key_masked: String,
    pub enabled: bool,
    pub weight: i32,
    pub priority: i32,
    pub cost_multiplier: Decimal,
    pub group_tags: Vec<String>,
    pub allowed_models: Vec<String>,
    #[schema(value_type = Vec<ModelRedirect>)]
    pub model_redirects: DbJson<Vec<ModelRedirect>>,
    pub limit_total_usd: Option<Decimal>,
    pub limit_5h_usd: Option<Decimal>,
    #[schema(schema_with = limit_modes)]
    pub limit_5h_mode: String,
    pub limit_daily_usd: Option<Decimal>,
    pub limit_weekly_usd: Option<Decimal>,
    pub limit_monthly_usd: Option<Decimal>,
    pub limit_concurrent_sessions: Option<i32>,
    pub circuit_failure_threshold: i32,
    pub circuit_open_seconds: i32,
    pub circuit_half_open_successes: i32,
    pub first_byte_timeout_ms: Option<i32>,
    pub idle_timeout_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Provider {
    fn masked(mut self) -> Self {
        self.api_key_masked = hubgate_wire::mask_key(&self.credential);
        self
    }
}

impl From<&Provider> for ProviderInput {
    fn from(p: &Provider) -> Self {
        ProviderInput {
            name: p.name.clone(),
            provider_type: p.provider_type.clone(),
            base_url: p.base_url.clone(),
            api_key: p.credential.clone(),
            enabled: p.enabled,
            weight: p.weight,
            priority: p.priority,
            cost_multiplier: p.cost_multiplier,
            group_tags: p.group_tags.clone(),
            allowed_models: p.allowed_models.clone(),
            model_redirects: p.model_redirects.0.clone(),
            limit_total_usd: p.limit_total_usd,
            limit_5h_usd: p.limit_5h_usd,
            limit_5h_mode: p.limit_5h_mode.clone(),
            limit_daily_usd: p.limit_daily_usd,
            limit_weekly_usd: p.limit_weekly_usd,
            limit_monthly_usd: p.limit_monthly_usd,
            limit_concurrent_sessions: p.limit_concurrent_sessions,
            circuit_failure_threshold: p.circuit_failure_threshold,
            circuit_open_seconds: p.circuit_open_seconds,
            circuit_half_open_successes: p.circuit_half_open_successes,
            first_byte_timeout_ms: p.first_byte_timeout_ms,
            idle_timeout_ms: p.idle_timeout_ms,
        }
    }
}

pub async fn insert(conn: &mut PgConnection, p: &ProviderInput) -> ApiResult<Provider> {
    let provider = sqlx::query_as!(
        Provider,
        r#"INSERT INTO providers (name, type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models, model_redirects, limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, name_fold)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
           $22, $23, $24)
         RETURNING id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models,
           model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!""#,
        p.name,
        p.provider_type,
        p.base_url,
        p.api_key,
        p.enabled,
        p.weight,
        p.priority,
        p.cost_multiplier,
        &p.group_tags,
        &p.allowed_models,
        DbJson(&p.model_redirects) as _,
        p.limit_total_usd,
        p.limit_5h_usd,
        p.limit_5h_mode,
        p.limit_daily_usd,
        p.limit_weekly_usd,
        p.limit_monthly_usd,
        p.limit_concurrent_sessions,
        p.circuit_failure_threshold,
        p.circuit_open_seconds,
        p.circuit_half_open_successes,
        p.first_byte_timeout_ms,
        p.idle_timeout_ms,
        validate::fold(&p.name)
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, false).await?;
    Ok(provider.masked())
}

/// Replaces every writable field of provider `id`; bumps the policy.
pub async fn replace(conn: &mut PgConnection, id: i64, p: &ProviderInput) -> ApiResult<Provider> {
    let provider = sqlx::query_as!(
        Provider,
        r#"UPDATE providers SET (name, type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models, model_redirects, limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, name_fold, updated_at)
           = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
           $22, $23, $24, now())
         WHERE id = $25
         RETURNING id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models,
           model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!""#,
        p.name,
        p.provider_type,
        p.base_url,
        p.api_key,
        p.enabled,
        p.weight,
        p.priority,
        p.cost_multiplier,
        &p.group_tags,
        &p.allowed_models,
        DbJson(&p.model_redirects) as _,
        p.limit_total_usd,
        p.limit_5h_usd,
        p.limit_5h_mode,
        p.limit_daily_usd,
        p.limit_weekly_usd,
        p.limit_monthly_usd,
        p.limit_concurrent_sessions,
        p.circuit_failure_threshold,
        p.circuit_open_seconds,
        p.circuit_half_open_successes,
        p.first_byte_timeout_ms,
        p.idle_timeout_ms,
        validate::fold(&p.name),
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, false).await?;
    Ok(provider.masked())
}

/// The live provider whose folded name is `fold`, credential unmasked.
pub async fn find_by_fold(conn: &mut PgConnection, fold: &str) -> sqlx::Result<Option<Provider>> {
    sqlx::query_as!(
        Provider,
        r#"SELECT id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models,
           model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!"
         FROM providers WHERE name_fold = $1 AND deleted_at IS NULL"#,
        fold
    )
    .fetch_optional(conn)
    .await
}

/// The enabled providers in routing order, credentials unmasked.
pub async fn enabled<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<Vec<Provider>> {
    sqlx::query_as!(
        Provider,
        r#"SELECT id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models,
           model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!"
         FROM providers WHERE enabled AND deleted_at IS NULL ORDER BY priority, id"#
    )
    .fetch_all(db)
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/providers",
    tag = "providers",
    operation_id = "create_provider",
    summary = "Create a provider",
    request_body = ProviderInput,
    responses(
        (status = 201, description = "The new provider", body = Provider),
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<ProviderInput>,
) -> ApiResult<(StatusCode, Json<Provider>)> {
    input.validate()?;
    let mut tx = state.pool.begin().await?;
    let provider = insert(&mut tx, &input).await?;
    tx.commit().await?;
    tracing::info!(provider_id = provider.id, name = %provider.name, "provider created");
    Ok((StatusCode::CREATED, Json(provider)))
}

#[utoipa::path(
    get,
    path = "/api/v1/providers",
    tag = "providers",
    operation_id = "list_providers",
    summary = "List providers",
    responses(
        (status = 200, description = "Every live provider", body = Vec<Provider>),
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Provider>>> {
    let rows = sqlx::query_as!(
        Provider,
        r#"SELECT id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
           cost_multiplier, group_tags, allowed_models,
           model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
           limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
           circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
           idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!"
         FROM providers WHERE deleted_at IS NULL ORDER BY id"#
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(rows.into_iter().map(Provider::masked).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    operation_id = "get_provider",
    summary = "Get a provider",
    params(Id),
    responses((status = 200, description = "The provider", body = Provider), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Provider>> {
    Ok(Json(find(&state.pool, id, false).await?.masked()))
}

/// A live (not deleted) provider, credential unmasked, or 404; `for_update`
/// locks it.
async fn find<'e>(db: impl PgExecutor<'e>, id: i64, for_update: bool) -> ApiResult<Provider> {
    let row = if for_update {
        sqlx::query_as!(
            Provider,
            r#"SELECT id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
               cost_multiplier, group_tags, allowed_models,
               model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
               limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
               circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
               idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!"
             FROM providers WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"#,
            id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            Provider,
            r#"SELECT id, name, type AS provider_type, base_url, credential, enabled, weight, priority,
               cost_multiplier, group_tags, allowed_models,
               model_redirects AS "model_redirects: DbJson<Vec<ModelRedirect>>", limit_total_usd, limit_5h_usd,
               limit_5h_mode, limit_daily_usd, limit_weekly_usd, limit_monthly_usd, limit_concurrent_sessions,
               circuit_failure_threshold, circuit_open_seconds, circuit_half_open_successes, first_byte_timeout_ms,
               idle_timeout_ms, created_at, updated_at, '' AS "api_key_masked!"
             FROM providers WHERE id = $1 AND deleted_at IS NULL"#,
            id
        )
        .fetch_optional(db)
        .await?
    };
    row.ok_or(ApiError::NotFound)
}

#[utoipa::path(
    patch,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    operation_id = "update_provider",
    summary = "Update a provider (any subset of fields; null clears a nullable field)",
    params(Id),
    request_body = ProviderPatch,
    responses(
        (status = 200, description = "The updated provider", body = Provider),
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
) -> ApiResult<Json<Provider>> {
    let lock = async |conn: &mut PgConnection, id| find(conn, id, true).await;
    let provider = crud::update(
        &state.pool,
        id,
        patch,
        lock,
        ProviderInput::validate,
        replace,
    )
    .await?;
    tracing::info!(provider_id = id, "provider updated");
    Ok(Json(provider))
}

#[utoipa::path(
    delete,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    operation_id = "delete_provider",
    summary = "Soft-delete a provider",
    params(Id),
    responses((status = 204, description = "Deleted"), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    crud::delete(&state.pool, false, async |conn: &mut PgConnection| {
        sqlx::query!(
            "UPDATE providers SET deleted_at = now(), enabled = false, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .execute(conn)
        .await
    })
    .await?;
    tracing::info!(provider_id = id, "provider deleted");
    Ok(StatusCode::NO_CONTENT)
}
