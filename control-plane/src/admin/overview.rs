//! `GET /api/v1/overview?window=hour|day|week`: the admin console's front
//! page. Requests, cost, errors and guard refusals over the window in
//! buckets (zero-filled, oldest first) and in total, the top users and
//! models, the answers other than a plain 200, the active sessions and the
//! providers' circuits.
//!
//! Windows end at the end of the current bucket: `hour` is 12 buckets of
//! 5 minutes, `day` 24 and `week` 168 of an hour, aligned to whole buckets
//! (UTC). `day` and `week` read the hourly rollups maintained at event
//! ingestion (`request_rollup`, and `usage_rollup` for the top users), never
//! the audit log; `hour` aggregates the audit rows of the last hour
//! (`message_request`, through its started_at index and partitions), which
//! the 5-minute buckets need.
//!
//! Definitions: `errors` are requests answered with a status of 400 or
//! more by the provider (no guard answered: blocked_by is null); `blocked`
//! are requests a guard answered (blocked_by set). The top users count
//! forwarded requests only (usage_rollup leaves guard refusals out, which
//! cost nothing), by cost then requests; the top models count every
//! request by its original model.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use hubgate_wire::CircuitState;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::openapi::{self, AdminOnly, BadQuery};
use crate::validate;

/// The windows, as `window` names them.
pub const WINDOWS: &[&str] = &["hour", "day", "week"];
/// Users and models listed at most.
pub const TOP: usize = 10;

fn windows() -> ObjectBuilder {
    openapi::one_of(WINDOWS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Hour,
    Day,
    Week,
}

impl Window {
    fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
        }
    }

    fn bucket_seconds(self) -> i64 {
        match self {
            Window::Hour => 300,
            Window::Day | Window::Week => 3600,
        }
    }

    fn buckets(self) -> i64 {
        match self {
            Window::Hour => 12,
            Window::Day => 24,
            Window::Week => 168,
        }
    }

    /// `(from, to)`: `to` is the end of the bucket `now` is in.
    fn range(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let size = self.bucket_seconds();
        let end = (now.timestamp().div_euclid(size) + 1) * size;
        let to = DateTime::<Utc>::from_timestamp(end, 0).unwrap_or(now);
        (to - TimeDelta::seconds(size * self.buckets()), to)
    }
}

/// The question.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Question {
    /// 12 buckets of 5 minutes, 24 of an hour (the default) or 168 of an hour.
    #[param(schema_with = windows, required = false, default = "day")]
    window: String,
}

fn parse_window(pairs: Vec<(String, String)>) -> Result<Window, ApiError> {
    let mut window = Window::Day;
    for (name, value) in pairs {
        validate::no_nul(&name, &value)?;
        match name.as_str() {
            "window" => {
                validate::one_of(&name, &value, WINDOWS)?;
                window = match value.as_str() {
                    "hour" => Window::Hour,
                    "week" => Window::Week,
                    _ => Window::Day,
                };
            }
            _ => return Err(ApiError::validation(name, "unknown query parameter")),
        }
    }
    Ok(window)
}

/// One bucket of the series.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Point {
    /// The bucket's start (it lasts `bucket_seconds`).
    pub start: DateTime<Utc>,
    pub requests: i64,
    pub cost_usd: Decimal,
    /// Answered 400 or above by the provider (not by a guard).
    pub errors: i64,
    /// Answered by a guard (blocked_by set).
    pub blocked: i64,
}

/// The whole window.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = OverviewTotals)]
pub struct Totals {
    pub requests: i64,
    pub cost_usd: Decimal,
    pub errors: i64,
    pub blocked: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopUser {
    pub user_id: i64,
    /// Empty when the user is not in the users table.
    pub name: String,
    /// Forwarded requests (guard refusals are not counted).
    pub requests: i64,
    pub cost_usd: Decimal,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopModel {
    /// The model the client asked for (original_model).
    pub model: String,
    pub requests: i64,
    pub cost_usd: Decimal,
}

/// Requests answered with one status, by one guard or by the provider.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusCount {
    pub status: i32,
    /// The guard that answered; null: the provider (or the gateway) did.
    pub blocked_by: Option<String>,
    pub requests: i64,
}

/// A live provider and its circuit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderStatus {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    /// The worst state on any Envoy instance reporting currently, as
    /// `GET /api/v1/providers/{id}/circuit` gives it; `closed` when no
    /// current instance reports one.
    pub circuit: CircuitState,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    #[schema(schema_with = windows)]
    pub window: &'static str,
    /// Start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the last (current) bucket.
    pub to: DateTime<Utc>,
    pub bucket_seconds: i64,
    /// Every bucket from `from` to `to`, oldest first, zero-filled.
    pub series: Vec<Point>,
    pub totals: Totals,
    /// Top 10 users by cost, then requests.
    pub top_users: Vec<TopUser>,
    /// Top 10 original models by cost, then requests; requests without a
    /// model are left out.
    pub top_models: Vec<TopModel>,
    /// Every (status, blocked_by) but a plain 200, most frequent first.
    pub codes: Vec<StatusCount>,
    /// Sessions with a request in the last 300 s (as `GET /api/v1/sessions`
    /// counts them).
    pub active_sessions: i64,
    /// Every live provider, by id.
    pub providers: Vec<ProviderStatus>,
}

#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "overview",
    operation_id = "get_overview",
    summary = "Requests, cost, errors and refusals over the last hour, day or week, with the top \
               users and models, the status codes, the active sessions and the providers' circuits",
    description = "Buckets are aligned to their size (UTC) and the window ends at the end of the \
                   current bucket: hour = 12 × 300 s, day = 24 × 3600 s, week = 168 × 3600 s. \
                   Day and week come from hourly rollups kept at ingestion; hour from the audit \
                   log's last hour. errors: status >= 400 with no blocked_by; blocked: blocked_by \
                   set. Top users count forwarded requests (guard refusals cost nothing and are \
                   left out).",
    params(Question),
    responses(
        (status = 200, description = "The overview", body = Overview),
        BadQuery,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<Overview>> {
    let Query(pairs) = query.map_err(|e| ApiError::validation("", e.body_text()))?;
    let window = parse_window(pairs)?;
    let now = Utc::now();
    let (from, to) = window.range(now);
    let size = window.bucket_seconds();

    // The reads are independent: run them side by side on the pool.
    let (groups, top_users, active_sessions, providers) = tokio::try_join!(
        groups(&state, window, from, to),
        top_users(&state, window, from, to),
        active_sessions(&state, now),
        providers(&state),
    )?;

    let mut series: Vec<Point> = (0..window.buckets())
        .map(|i| Point {
            start: from + TimeDelta::seconds(i * size),
            requests: 0,
            cost_usd: Decimal::ZERO,
            errors: 0,
            blocked: 0,
        })
        .collect();
    let mut totals = Totals {
        requests: 0,
        cost_usd: Decimal::ZERO,
        errors: 0,
        blocked: 0,
        input_tokens: 0,
        output_tokens: 0,
    };
    let mut models = Vec::new();
    let mut codes = Vec::new();
    for g in groups {
        match g.kind {
            Group::Bucket(start) => {
                let i = (start - from).num_seconds().div_euclid(size);
                if let Some(p) = usize::try_from(i).ok().and_then(|i| series.get_mut(i)) {
                    p.requests += g.requests;
                    p.cost_usd += g.cost_usd;
                    p.errors += g.errors;
                    p.blocked += g.blocked;
                }
                totals.requests += g.requests;
                totals.cost_usd += g.cost_usd;
                totals.errors += g.errors;
                totals.blocked += g.blocked;
                totals.input_tokens = totals.input_tokens.saturating_add(g.input_tokens);
                totals.output_tokens = totals.output_tokens.saturating_add(g.output_tokens);
            }
            Group::Model(model) if !model.is_empty() => models.push(TopModel {
                model,
                requests: g.requests,
                cost_usd: g.cost_usd,
            }),
            Group::Model(_) => {}
            Group::Status(status, blocked_by) => {
                if status != 200 || !blocked_by.is_empty() {
                    codes.push(StatusCount {
                        status,
                        blocked_by: Some(blocked_by).filter(|b| !b.is_empty()),
                        requests: g.requests,
                    });
                }
            }
        }
    }
    models.sort_by(|a, b| {
        (b.cost_usd, b.requests)
            .cmp(&(a.cost_usd, a.requests))
            .then_with(|| a.model.cmp(&b.model))
    });
    models.truncate(TOP);
    codes.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| (a.status, &a.blocked_by).cmp(&(b.status, &b.blocked_by)))
    });

    Ok(Json(Overview {
        window: window.name(),
        from,
        to,
        bucket_seconds: size,
        series,
        totals,
        top_users,
        top_models: models,
        codes,
        active_sessions,
        providers,
    }))
}

enum Group {
    /// A bucket's start.
    Bucket(DateTime<Utc>),
    /// An original model (`''`: none).
    Model(String),
    /// A status and blocked_by (`''`: none).
    Status(i32, String),
}

/// The requests of the window summed per bucket, per model and per
/// (status, blocked_by).
struct Sums {
    kind: Group,
    requests: i64,
    cost_usd: Decimal,
    errors: i64,
    blocked: i64,
    input_tokens: i64,
    output_tokens: i64,
}

/// One row of the grouping-sets queries below.
struct SumRow {
    by_bucket: bool,
    by_model: bool,
    bucket: Option<DateTime<Utc>>,
    model: Option<String>,
    status: Option<i32>,
    blocked_by: Option<String>,
    requests: i64,
    cost_usd: Decimal,
    errors: i64,
    blocked: i64,
    input_tokens: i64,
    output_tokens: i64,
}

impl SumRow {
    fn sums(self) -> Sums {
        let kind = if self.by_bucket {
            Group::Bucket(self.bucket.unwrap_or_default())
        } else if self.by_model {
            Group::Model(self.model.unwrap_or_default())
        } else {
            Group::Status(
                self.status.unwrap_or_default(),
                self.blocked_by.unwrap_or_default(),
            )
        };
        Sums {
            kind,
            requests: self.requests,
            cost_usd: self.cost_usd,
            errors: self.errors,
            blocked: self.blocked,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }
}

/// Sums per bucket, model and (status, blocked_by), in one pass: from the
/// hourly request rollup, or for the hour window from the audit rows, cut
/// into the same cells (the rollup's keys).
async fn groups(
    state: &AppState,
    window: Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<Sums>> {
    let rows = match window {
        Window::Hour => {
            sqlx::query_as!(
                SumRow,
                r#"WITH cells AS (
                     SELECT to_timestamp(floor(extract(epoch FROM started_at) / $3::float8) * $3::float8) AS bucket,
                            left(coalesce(original_model, ''), 256) AS model, status,
                            coalesce(blocked_by, '') AS blocked_by, 1::int8 AS n, cost_usd AS cost,
                            input_tokens AS input, output_tokens AS output
                     FROM message_request WHERE started_at >= $1 AND started_at < $2)
                   SELECT GROUPING(bucket) = 0 AS "by_bucket!", GROUPING(model) = 0 AS "by_model!",
                          bucket AS "bucket?", model AS "model?", status AS "status?",
                          blocked_by AS "blocked_by?",
                          sum(n)::int8 AS "requests!", sum(cost) AS "cost_usd!",
                          coalesce(sum(n) FILTER (WHERE status >= 400 AND blocked_by = ''), 0)::int8 AS "errors!",
                          coalesce(sum(n) FILTER (WHERE blocked_by <> ''), 0)::int8 AS "blocked!",
                          sum(input)::int8 AS "input_tokens!", sum(output)::int8 AS "output_tokens!"
                   FROM cells GROUP BY GROUPING SETS ((bucket), (model), (status, blocked_by))"#,
                from,
                to,
                window.bucket_seconds() as f64
            )
            .fetch_all(&state.pool)
            .await?
        }
        Window::Day | Window::Week => {
            sqlx::query_as!(
                SumRow,
                r#"WITH cells AS (
                     SELECT bucket_start AS bucket, model, status, blocked_by, request_count AS n,
                            cost_usd AS cost, input_tokens AS input, output_tokens AS output
                     FROM request_rollup WHERE bucket_start >= $1 AND bucket_start < $2)
                   SELECT GROUPING(bucket) = 0 AS "by_bucket!", GROUPING(model) = 0 AS "by_model!",
                          bucket AS "bucket?", model AS "model?", status AS "status?",
                          blocked_by AS "blocked_by?",
                          sum(n)::int8 AS "requests!", sum(cost) AS "cost_usd!",
                          coalesce(sum(n) FILTER (WHERE status >= 400 AND blocked_by = ''), 0)::int8 AS "errors!",
                          coalesce(sum(n) FILTER (WHERE blocked_by <> ''), 0)::int8 AS "blocked!",
                          sum(input)::int8 AS "input_tokens!", sum(output)::int8 AS "output_tokens!"
                   FROM cells GROUP BY GROUPING SETS ((bucket), (model), (status, blocked_by))"#,
                from,
                to
            )
            .fetch_all(&state.pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(SumRow::sums).collect())
}

async fn top_users(
    state: &AppState,
    window: Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<TopUser>> {
    let limit = TOP as i64;
    let users = match window {
        Window::Hour => {
            sqlx::query_as!(
                TopUser,
                r#"SELECT m.user_id AS "user_id!", coalesce(u.name, '') AS "name!",
                          count(*) AS "requests!", sum(m.cost_usd) AS "cost_usd!"
                   FROM message_request m LEFT JOIN users u ON u.id = m.user_id
                   WHERE m.started_at >= $1 AND m.started_at < $2 AND m.user_id IS NOT NULL
                     AND m.blocked_by IS NULL
                   GROUP BY m.user_id, u.name
                   ORDER BY 4 DESC, 3 DESC, 1 LIMIT $3"#,
                from,
                to,
                limit
            )
            .fetch_all(&state.pool)
            .await?
        }
        Window::Day | Window::Week => {
            sqlx::query_as!(
                TopUser,
                r#"SELECT r.entity_id AS "user_id!", coalesce(u.name, '') AS "name!",
                          sum(r.request_count)::int8 AS "requests!", sum(r.cost_usd) AS "cost_usd!"
                   FROM usage_rollup r LEFT JOIN users u ON u.id = r.entity_id
                   WHERE r.entity_type = 'user' AND r.bucket_start >= $1 AND r.bucket_start < $2
                   GROUP BY r.entity_id, u.name
                   ORDER BY 4 DESC, 3 DESC, 1 LIMIT $3"#,
                from,
                to,
                limit
            )
            .fetch_all(&state.pool)
            .await?
        }
    };
    Ok(users)
}

async fn active_sessions(state: &AppState, now: DateTime<Utc>) -> ApiResult<i64> {
    let since = super::sessions::active_since(now);
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM sessions WHERE last_seen_at > $1"#,
        since
    )
    .fetch_one(&state.pool)
    .await?;
    Ok(n)
}

async fn providers(state: &AppState) -> ApiResult<Vec<ProviderStatus>> {
    let circuits: BTreeMap<i64, CircuitState> =
        super::circuits::current_states(&state.pool).await?;
    let rows = sqlx::query!(
        "SELECT id, name, enabled FROM providers WHERE deleted_at IS NULL ORDER BY id"
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|p| ProviderStatus {
            circuit: circuits.get(&p.id).copied().unwrap_or(CircuitState::Closed),
            id: p.id,
            name: p.name,
            enabled: p.enabled,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_the_end_of_the_current_bucket() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let now = at("2026-03-04T10:07:30.5Z");
        assert_eq!(
            Window::Hour.range(now),
            (at("2026-03-04T09:10:00Z"), at("2026-03-04T10:10:00Z"))
        );
        assert_eq!(
            Window::Day.range(now),
            (at("2026-03-03T11:00:00Z"), at("2026-03-04T11:00:00Z"))
        );
        assert_eq!(
            Window::Week.range(now),
            (at("2026-02-25T11:00:00Z"), at("2026-03-04T11:00:00Z"))
        );
        // On a bucket's first second, that bucket is the current one.
        let edge = at("2026-03-04T10:00:00Z");
        assert_eq!(Window::Day.range(edge).1, at("2026-03-04T11:00:00Z"));
    }
}
