//! `GET /api/v1/sessions`: client sessions (SPEC §2.7), newest activity
//! first. A session is *active* for [`ACTIVE_SECS`] after its last request;
//! only active sessions are listed unless `active=false`.
//!
//! Admins see every session; a user (`auth::require_account`) only their
//! own: their user_id is forced, asking for another user's is 403.
//!
//! Query parameters: user_id, key_id, active (`true`, the default: active
//! sessions only; `false`: every retained session, idle ones included), page
//! (from 1), page_size (1..=500, default 50), as for `/api/v1/requests`.
//! Answer: `{items, total, total_capped, page, page_size}` (counted exactly:
//! `total_capped` is always false).
//!
//! Rows are written at event ingestion (`internal::events`) and deleted by
//! the background sweep once idle for
//! [`crate::background::SESSION_RETENTION_HOURS`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use super::paging::{parse, Page, Paging};
use crate::app::AppState;
use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult};
use crate::openapi::{AdminOrOwner, BadQuery};
use crate::validate;

/// A session is active this long after its last request (SPEC §2.7).
pub const ACTIVE_SECS: i64 = 300;

/// Sessions with a request after this instant are active at `now`.
pub fn active_since(now: DateTime<Utc>) -> DateTime<Utc> {
    now - TimeDelta::seconds(ACTIVE_SECS)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Session {
    /// Client-provided; unique per key, not globally.
    pub session_id: String,
    pub user_id: Option<i64>,
    pub key_id: i64,
    /// User agent of the latest request (at most 256 characters).
    #[schema(max_length = 256)]
    pub client: Option<String>,
    /// Provider of the latest request.
    pub provider_id: Option<i64>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Forwarded requests (refusals and warmups not counted).
    pub request_count: i64,
    /// A request within the last 300 s.
    pub active: bool,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
struct Filters {
    /// Only this user's sessions (users: only their own id).
    user_id: Option<i64>,
    /// Only this key's sessions.
    key_id: Option<i64>,
    /// true: only sessions with a request in the last 300 s; false: every retained session
    /// (idle ones are deleted after 24 h).
    #[param(rename = "active", required = false, default = true)]
    active_only: bool,
    #[param(ignore)]
    paging: Paging,
}

impl Filters {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Filters, ApiError> {
        let mut f = Filters {
            user_id: None,
            key_id: None,
            active_only: true,
            paging: Paging::default(),
        };
        for (name, value) in pairs {
            validate::no_nul(&name, &value)?;
            if f.paging.take(&name, &value)? {
                continue;
            }
            match name.as_str() {
                "user_id" => f.user_id = Some(parse(&name, &value)?),
                "key_id" => f.key_id = Some(parse(&name, &value)?),
                "active" => {
                    f.active_only = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ApiError::validation(
                                name,
                                format!("must be true or false, not {value:?}"),
                            ))
                        }
                    }
                }
                _ => return Err(ApiError::validation(name, "unknown query parameter")),
            }
        }
        f.paging.check()?;
        Ok(f)
    }

    fn push_where(&self, qb: &mut QueryBuilder<'_, Postgres>, cutoff: DateTime<Utc>) {
        qb.push(" WHERE true");
        if let Some(v) = self.user_id {
            qb.push(" AND user_id = ").push_bind(v);
        }
        if let Some(v) = self.key_id {
            qb.push(" AND key_id = ").push_bind(v);
        }
        if self.active_only {
            qb.push(" AND last_seen_at > ").push_bind(cutoff);
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    operation_id = "list_sessions",
    summary = "Client sessions, most recently active first; only active ones unless active=false \
               (users: their own)",
    params(Filters, Paging),
    responses(
        (status = 200, description = "One page of sessions", body = Page<Session>),
        BadQuery,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<Page<Session>>> {
    let Query(pairs) = query.map_err(|e| ApiError::validation("", e.body_text()))?;
    let mut filters = Filters::from_pairs(pairs)?;
    if let Caller::User { user_id, .. } = caller {
        if filters.user_id.is_some_and(|asked| asked != user_id) {
            return Err(ApiError::Forbidden);
        }
        filters.user_id = Some(user_id);
    }
    // One instant for the filter and every item's `active`, on the clock
    // that event ingestion bounds last_seen_at with.
    let cutoff = active_since(Utc::now());

    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM sessions");
    filters.push_where(&mut count, cutoff);
    let (total,): (i64,) = count.build_query_as().fetch_one(&state.pool).await?;

    let mut select = QueryBuilder::<Postgres>::new(
        "SELECT session_id, user_id, key_id, client, provider_id, first_seen_at, last_seen_at, request_count, \
           last_seen_at > ",
    );
    select.push_bind(cutoff).push(" AS active FROM sessions");
    filters.push_where(&mut select, cutoff);
    select.push(" ORDER BY last_seen_at DESC, key_id, session_id");
    filters.paging.push_limit(&mut select);
    let items: Vec<Session> = select.build_query_as().fetch_all(&state.pool).await?;
    Ok(Json(filters.paging.page(items, total)))
}
