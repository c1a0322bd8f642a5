//! `GET /api/v1/requests`: the audit log, newest first, filtered and paged.
//! Query parameters: user_id, key_id, provider_id, session_id, status,
//! blocked_by, from, to (RFC 3339; from inclusive, to exclusive), page (from
//! 1), page_size (1..=500, default 50). Answer: `{items, total, page, page_size}`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use super::paging::{parse, Page, Paging};
use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::openapi::{AdminOnly, BadQuery};
use crate::validate;

/// One request, as the filter reported it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct RequestLog {
    pub id: i64,
    pub event_id: String,
    pub request_id: String,
    pub started_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub key_id: Option<i64>,
    pub key_masked: Option<String>,
    pub provider_id: Option<i64>,
    pub method: String,
    pub endpoint: String,
    pub original_model: Option<String>,
    pub upstream_model: Option<String>,
    pub status: i32,
    pub duration_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_usd: Decimal,
    pub cost_multiplier: Decimal,
    pub session_id: Option<String>,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    pub stream: bool,
    /// Stable code of the guard that answered instead of a provider.
    pub blocked_by: Option<String>,
    /// A JSON object with the guard's details, or null.
    pub blocked_reason: Option<serde_json::Value>,
    pub error: Option<String>,
    pub flags: Vec<String>,
}

const COLUMNS: &str = "id, event_id, request_id, started_at, received_at, user_id, key_id, key_masked, \
    provider_id, method, endpoint, original_model, upstream_model, status, duration_ms, ttfb_ms, input_tokens, \
    output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, cost_usd, \
    cost_multiplier, session_id, user_agent, client_ip, stream, blocked_by, blocked_reason, error, flags";

#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct Filters {
    /// Only this user's requests.
    user_id: Option<i64>,
    /// Only this key's requests.
    key_id: Option<i64>,
    /// Only requests sent to this provider.
    provider_id: Option<i64>,
    /// Only this session.
    session_id: Option<String>,
    /// HTTP status answered to the client.
    status: Option<i32>,
    /// Stable code of the guard that answered, e.g. sensitive_word.
    blocked_by: Option<String>,
    /// RFC 3339, inclusive.
    from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    to: Option<DateTime<Utc>>,
    #[param(ignore)]
    paging: Paging,
}

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::validation(field, format!("must be an RFC 3339 timestamp: {e}")))
}

impl Filters {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Filters, ApiError> {
        let mut f = Filters::default();
        for (name, value) in pairs {
            validate::no_nul(&name, &value)?;
            if f.paging.take(&name, &value)? {
                continue;
            }
            match name.as_str() {
                "user_id" => f.user_id = Some(parse(&name, &value)?),
                "key_id" => f.key_id = Some(parse(&name, &value)?),
                "provider_id" => f.provider_id = Some(parse(&name, &value)?),
                "session_id" => f.session_id = Some(value),
                "status" => f.status = Some(parse(&name, &value)?),
                "blocked_by" => f.blocked_by = Some(value),
                "from" => f.from = Some(parse_time(&name, &value)?),
                "to" => f.to = Some(parse_time(&name, &value)?),
                _ => return Err(ApiError::validation(name, "unknown query parameter")),
            }
        }
        f.paging.check()?;
        Ok(f)
    }

    fn push_where(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" WHERE true");
        if let Some(v) = self.user_id {
            qb.push(" AND user_id = ").push_bind(v);
        }
        if let Some(v) = self.key_id {
            qb.push(" AND key_id = ").push_bind(v);
        }
        if let Some(v) = self.provider_id {
            qb.push(" AND provider_id = ").push_bind(v);
        }
        if let Some(v) = &self.session_id {
            qb.push(" AND session_id = ").push_bind(v.clone());
        }
        if let Some(v) = self.status {
            qb.push(" AND status = ").push_bind(v);
        }
        if let Some(v) = &self.blocked_by {
            qb.push(" AND blocked_by = ").push_bind(v.clone());
        }
        if let Some(v) = self.from {
            qb.push(" AND started_at >= ").push_bind(v);
        }
        if let Some(v) = self.to {
            qb.push(" AND started_at < ").push_bind(v);
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    operation_id = "list_requests",
    summary = "Audit log, newest first",
    params(Filters, Paging),
    responses(
        (status = 200, description = "One page of the log", body = Page<RequestLog>),
        BadQuery,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<Page<RequestLog>>> {
    let Query(pairs) = query.map_err(|e| ApiError::validation("", e.body_text()))?;
    let filters = Filters::from_pairs(pairs)?;

    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM message_request");
    filters.push_where(&mut count);
    let (total,): (i64,) = count.build_query_as().fetch_one(&state.pool).await?;

    let mut select =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM message_request"));
    filters.push_where(&mut select);
    select.push(" ORDER BY started_at DESC, id DESC");
    filters.paging.push_limit(&mut select);
    let items: Vec<RequestLog> = select.build_query_as().fetch_all(&state.pool).await?;
    Ok(Json(filters.paging.page(items, total)))
}
