//! `/api/v1/request-filters` (SPEC §2.8).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use hubgate_wire::pattern::PatternUse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json as DbJson;
use sqlx::{PgConnection, PgExecutor};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder};
use utoipa::ToSchema;

use super::crud;
use super::sensitive_words::MATCH_TYPES;
use super::Id;
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{JsonBody, JsonObject};
use crate::openapi::{self, AdminOnly, BadBody, Conflict, NotFound, Patch};
use crate::validate::{self, Check};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = RequestFilterInput)]
#[serde(deny_unknown_fields)]
pub struct FilterInput {
    #[schema(schema_with = openapi::name)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
    #[schema(schema_with = scopes)]
    pub scope: String,
    #[schema(schema_with = actions)]
    pub action: String,
    #[serde(default)]
    #[schema(schema_with = match_type_or_null)]
    pub match_type: Option<String>,
    /// Header name, JSON path, or the text/pattern to replace.
    #[schema(min_length = 1)]
    pub target: String,
    /// Any JSON value; a string for the header scope and for `text_replace`;
    /// absent for `remove`.
    #[serde(default)]
    pub replacement: Option<Value>,
    /// Filters run in ascending priority.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "super::yes")]
    pub enabled: bool,
    #[serde(default = "global")]
    #[schema(schema_with = bindings)]
    pub binding: String,
    #[serde(default)]
    #[schema(schema_with = provider_ids)]
    pub provider_ids: Vec<i64>,
    #[serde(default)]
    #[schema(schema_with = group_tags)]
    pub group_tags: Vec<String>,
}

pub type FilterPatch = Patch<FilterInput>;

const SCOPES: &[&str] = &["header", "body"];
const ACTIONS: &[&str] = &["remove", "set", "json_path", "text_replace"];
const BINDINGS: &[&str] = &["global", "providers", "groups"];

fn scopes() -> ObjectBuilder {
    openapi::one_of(SCOPES)
}

fn actions() -> ObjectBuilder {
    openapi::one_of(ACTIONS)
}

fn bindings() -> ObjectBuilder {
    openapi::one_of(BINDINGS)
}

fn provider_ids() -> ArrayBuilder {
    openapi::ids().description(Some("Required when `binding` is `providers`"))
}

fn group_tags() -> ArrayBuilder {
    openapi::patterns().description(Some("Required when `binding` is `groups`"))
}

fn match_type_or_null() -> ObjectBuilder {
    openapi::one_of_or_null(MATCH_TYPES)
        .description(Some("For `text_replace` only, and required there"))
}

fn global() -> String {
    "global".to_string()
}

fn fail(field: &str, message: &str) -> Check {
    Err(ApiError::validation(field, message))
}

impl FilterInput {
    pub fn validate(&self) -> Check {
        validate::name("name", &self.name)?;
        validate::optional_text("description", &self.description, 500)?;
        validate::one_of("scope", &self.scope, SCOPES)?;
        validate::one_of("action", &self.action, ACTIONS)?;
        match (&self.match_type, self.action.as_str()) {
            (Some(m), "text_replace") => validate::one_of("match_type", m, MATCH_TYPES)?,
            (None, "text_replace") => {
                return fail("match_type", "required when action is text_replace")
            }
            (Some(_), _) => return fail("match_type", "only allowed when action is text_replace"),
            (None, _) => {}
        }
        if self.match_type.as_deref() == Some("regex") {
            validate::regex("target", &self.target, PatternUse::RequestFilter)?;
        } else {
            validate::text("target", &self.target, 1024)?;
        }
        if self.scope == "header" {
            if self.action == "json_path" {
                return fail("action", "json_path applies to the body scope only");
            }
            if http::HeaderName::from_bytes(self.target.as_bytes()).is_err()
                && self.action != "text_replace"
            {
                return fail("target", "must be a valid header name");
            }
        }
        match (self.action.as_str(), &self.replacement) {
            ("remove", Some(_)) => return fail("replacement", "not allowed when action is remove"),
            ("remove", None) => {}
            (_, None) => return fail("replacement", "required for this action"),
            (_, Some(v)) => {
                let needs_text = self.scope == "header" || self.action == "text_replace";
                if needs_text && !v.is_string() {
                    return fail("replacement", "must be a string");
                }
                validate::json_without_nul("replacement", v)?;
            }
        }
        validate::one_of("binding", &self.binding, BINDINGS)?;
        if self.binding == "providers" && self.provider_ids.is_empty() {
            return fail("provider_ids", "required when binding is providers");
        }
        if self.binding == "groups" && self.group_tags.is_empty() {
            return fail("group_tags", "required when binding is groups");
        }
        if self.provider_ids.len() > validate::MAX_LIST_ITEMS {
            return fail("provider_ids", "at most 50 items");
        }
        validate::patterns("group_tags", &self.group_tags)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestFilter {
    pub id: i64,
    pub name: String,
    pub description: String,
    #[schema(schema_with = scopes)]
    pub scope: String,
    #[schema(schema_with = actions)]
    pub action: String,
    #[schema(schema_with = match_type_or_null)]
    pub match_type: Option<String>,
    pub target: String,
    #[schema(value_type = Option<Value>)]
    pub replacement: Option<DbJson<Value>>,
    pub priority: i32,
    pub enabled: bool,
    #[schema(schema_with = bindings)]
    pub binding: String,
    pub provider_ids: Vec<i64>,
    pub group_tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&RequestFilter> for FilterInput {
    fn from(f: &RequestFilter) -> Self {
        FilterInput {
            name: f.name.clone(),
            description: f.description.clone(),
            scope: f.scope.clone(),
            action: f.action.clone(),
            match_type: f.match_type.clone(),
            target: f.target.clone(),
            replacement: f.replacement.as_ref().map(|v| v.0.clone()),
            priority: f.priority,
            enabled: f.enabled,
            binding: f.binding.clone(),
            provider_ids: f.provider_ids.clone(),
            group_tags: f.group_tags.clone(),
        }
    }
}

async fn write(
    conn: &mut PgConnection,
    id: Option<i64>,
    f: &FilterInput,
) -> ApiResult<RequestFilter> {
    let row = match id {
        None => {
            sqlx::query_as!(
                RequestFilter,
                r#"INSERT INTO request_filters (name, description, scope, action, match_type, target,
                   replacement, priority, enabled, binding, provider_ids, group_tags, name_fold)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 RETURNING id, name, description, scope, action, match_type, target,
           replacement AS "replacement: DbJson<Value>", priority, enabled, binding, provider_ids, group_tags,
           created_at, updated_at"#,
        f.name,
        f.description,
        f.scope,
        f.action,
        f.match_type,
        f.target,
        f.replacement.as_ref().map(DbJson) as _,
        f.priority,
        f.enabled,
        f.binding,
        &f.provider_ids,
        &f.group_tags,
        validate::fold(&f.name)
            )
            .fetch_one(&mut *conn)
            .await?
        }
        Some(id) => {
            sqlx::query_as!(
                RequestFilter,
                r#"UPDATE request_filters SET (name, description, scope, action, match_type, target,
                   replacement, priority, enabled, binding, provider_ids, group_tags, name_fold, updated_at)
                   = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
                 WHERE id = $14
                 RETURNING id, name, description, scope, action, match_type, target,
           replacement AS "replacement: DbJson<Value>", priority, enabled, binding, provider_ids, group_tags,
           created_at, updated_at"#,
        f.name,
        f.description,
        f.scope,
        f.action,
        f.match_type,
        f.target,
        f.replacement.as_ref().map(DbJson) as _,
        f.priority,
        f.enabled,
        f.binding,
        &f.provider_ids,
        &f.group_tags,
        validate::fold(&f.name),
                id
            )
            .fetch_one(&mut *conn)
            .await?
        }
    };
    bump_policy(conn, false).await?;
    Ok(row)
}

#[utoipa::path(
    post,
    path = "/api/v1/request-filters",
    tag = "request-filters",
    operation_id = "create_request_filter",
    summary = "Create a filter",
    request_body = FilterInput,
    responses(
        (status = 201, description = "The new filter", body = RequestFilter),
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<FilterInput>,
) -> ApiResult<(StatusCode, Json<RequestFilter>)> {
    input.validate()?;
    let mut tx = state.pool.begin().await?;
    let filter = write(&mut tx, None, &input).await?;
    tx.commit().await?;
    tracing::info!(filter_id = filter.id, "request filter created");
    Ok((StatusCode::CREATED, Json(filter)))
}

#[utoipa::path(
    get,
    path = "/api/v1/request-filters",
    tag = "request-filters",
    operation_id = "list_request_filters",
    summary = "List filters",
    responses(
        (
            status = 200,
            description = "Every filter, in the order they run",
            body = Vec<RequestFilter>,
        ),
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<RequestFilter>>> {
    let filters = sqlx::query_as!(
        RequestFilter,
        r#"SELECT id, name, description, scope, action, match_type, target,
           replacement AS "replacement: DbJson<Value>", priority, enabled, binding, provider_ids, group_tags,
           created_at, updated_at
         FROM request_filters ORDER BY priority, id"#
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(filters))
}

#[utoipa::path(
    get,
    path = "/api/v1/request-filters/{id}",
    tag = "request-filters",
    operation_id = "get_request_filter",
    summary = "Get a filter",
    params(Id),
    responses(
        (status = 200, description = "The filter", body = RequestFilter),
        NotFound,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<RequestFilter>> {
    Ok(Json(find(&state.pool, id, false).await?))
}

/// A filter, or 404; `for_update` locks it.
async fn find<'e>(db: impl PgExecutor<'e>, id: i64, for_update: bool) -> ApiResult<RequestFilter> {
    let row = if for_update {
        sqlx::query_as!(
            RequestFilter,
            r#"SELECT id, name, description, scope, action, match_type, target,
               replacement AS "replacement: DbJson<Value>", priority, enabled, binding, provider_ids, group_tags,
               created_at, updated_at
             FROM request_filters WHERE id = $1 FOR UPDATE"#,
            id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            RequestFilter,
            r#"SELECT id, name, description, scope, action, match_type, target,
               replacement AS "replacement: DbJson<Value>", priority, enabled, binding, provider_ids, group_tags,
               created_at, updated_at
             FROM request_filters WHERE id = $1"#,
            id
        )
        .fetch_optional(db)
        .await?
    };
    row.ok_or(ApiError::NotFound)
}

#[utoipa::path(
    patch,
    path = "/api/v1/request-filters/{id}",
    tag = "request-filters",
    operation_id = "update_request_filter",
    summary = "Update a filter (any subset of fields; null clears a nullable field)",
    params(Id),
    request_body = FilterPatch,
    responses(
        (status = 200, description = "The updated filter", body = RequestFilter),
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
) -> ApiResult<Json<RequestFilter>> {
    let replace =
        async |conn: &mut PgConnection, id, input: &FilterInput| write(conn, Some(id), input).await;
    let lock = async |conn: &mut PgConnection, id| find(conn, id, true).await;
    let filter = crud::update(&state.pool, id, patch, lock, FilterInput::validate, replace).await?;
    Ok(Json(filter))
}

#[utoipa::path(
    delete,
    path = "/api/v1/request-filters/{id}",
    tag = "request-filters",
    operation_id = "delete_request_filter",
    summary = "Delete a filter",
    params(Id),
    responses((status = 204, description = "Deleted"), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    crud::delete(&state.pool, false, async |conn: &mut PgConnection| {
        sqlx::query!("DELETE FROM request_filters WHERE id = $1", id)
            .execute(conn)
            .await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
