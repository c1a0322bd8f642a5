//! `GET /api/v1/usage/users/{id}` and `/api/v1/usage/keys/{id}`: what a
//! user or key has spent in each quota window (SPEC §4, §7), with its limit
//! and when the window resets; `POST …/reset` starts the lifetime total
//! (`limit_total_usd`) again from now by moving `cost_reset_at`.
//!
//! Spend is summed from the hourly rollup (`usage_rollup`) for whole hours
//! and from the audit log (`message_request`) for the part of an hour at a
//! window's start, so windows that begin on the half hour (a time zone such
//! as Asia/Kolkata, a rolling window) are exact to the request. Admins read
//! anyone; a user reads only themselves, with a key that may log in to the
//! web UI (`auth::require_account`).

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, DurationRound, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::ToSchema;

use super::windows::{self, Reset, Window};
use crate::admin::sessions::ACTIVE_SECS;
use crate::admin::Id;
use crate::app::AppState;
use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult};
use crate::openapi::{self, AdminOnly, AdminOrOwner, NotFound};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    User,
    Key,
}

impl Entity {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Key => "key",
        }
    }
}

fn entities() -> ObjectBuilder {
    openapi::one_of(&["user", "key"])
}

fn limit_types() -> ObjectBuilder {
    openapi::one_of(&[
        "usd_total",
        "usd_5h",
        "daily_quota",
        "usd_weekly",
        "usd_monthly",
    ])
    .description(Some("The limit, as named by a 402 answer's `limit_type`"))
}

fn modes() -> ObjectBuilder {
    openapi::one_of(&["lifetime", "fixed", "rolling"])
}

/// One cost limit's window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CostWindow {
    /// `usd_total`, `usd_5h`, `daily_quota`, `usd_weekly` or `usd_monthly`
    /// (the `limit_type` of a 402 answer).
    #[schema(schema_with = limit_types)]
    pub limit_type: &'static str,
    /// `lifetime`, `fixed` or `rolling`.
    #[schema(schema_with = modes)]
    pub mode: &'static str,
    pub spent_usd: Decimal,
    /// `null`: no limit is set.
    pub limit_usd: Option<Decimal>,
    /// What is left under the limit (never below zero).
    pub remaining_usd: Option<Decimal>,
    /// Spend counts from here (`null`: since the beginning).
    pub window_start: Option<DateTime<Utc>>,
    /// When the spend drops out: a fixed window's end; for a rolling window
    /// when its oldest charge leaves it; `null`: never, or (a fixed 5 h
    /// window that is not running) 5 h after the next charge.
    pub reset_at: Option<DateTime<Utc>>,
    /// Length of a rolling window.
    pub rolling_hours: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Counted {
    pub current: i64,
    pub limit: Option<i64>,
}

/// What a user or key has spent in each quota window, with limits and
/// reset times.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    /// `user` or `key`.
    #[schema(schema_with = entities)]
    pub entity: &'static str,
    pub id: i64,
    /// The owning user (a user's own id).
    pub user_id: i64,
    /// The moment the numbers are for.
    pub at: DateTime<Utc>,
    /// Time zone of the fixed windows (`settings.timezone`).
    pub timezone: String,
    pub windows: Vec<CostWindow>,
    /// Sessions with a request in the last 300 s.
    pub concurrent_sessions: Counted,
    /// The user's forwarded requests in the last minute (users only).
    pub rpm: Option<Counted>,
}

/// The limits of one user or key, and the user settings keys inherit.
struct Limits {
    user_id: i64,
    limit_total_usd: Option<Decimal>,
    limit_5h_usd: Option<Decimal>,
    limit_5h_mode: String,
    limit_daily_usd: Option<Decimal>,
    limit_weekly_usd: Option<Decimal>,
    limit_monthly_usd: Option<Decimal>,
    limit_concurrent_sessions: Option<i32>,
    rpm: Option<i32>,
    daily_reset_mode: String,
    daily_reset_time: String,
    cost_reset_at: Option<DateTime<Utc>>,
    five_hour_opened_at: Option<DateTime<Utc>>,
    timezone: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/usage/users/{id}",
    tag = "usage",
    operation_id = "get_user_usage",
    summary = "A user's spend per quota window, with limits and reset times (users: their own)",
    params(Id),
    responses(
        (status = 200, description = "The user's usage", body = Usage),
        NotFound,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
) -> ApiResult<Json<Usage>> {
    read(&state, &caller, Entity::User, id).await
}

#[utoipa::path(
    get,
    path = "/api/v1/usage/keys/{id}",
    tag = "usage",
    operation_id = "get_key_usage",
    summary = "A key's spend per quota window, with limits and reset times (users: their own keys)",
    params(Id),
    responses(
        (status = 200, description = "The key's usage", body = Usage),
        NotFound,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
) -> ApiResult<Json<Usage>> {
    read(&state, &caller, Entity::Key, id).await
}

#[utoipa::path(
    post,
    path = "/api/v1/usage/users/{id}/reset",
    tag = "usage",
    operation_id = "reset_user_usage",
    summary = "Start the user's lifetime spend (limit_total_usd) again from now: moves \
               cost_reset_at",
    params(Id),
    responses(
        (status = 200, description = "The user's usage after the reset", body = Usage),
        NotFound,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn reset_user(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Usage>> {
    reset(&state, Entity::User, id).await
}

#[utoipa::path(
    post,
    path = "/api/v1/usage/keys/{id}/reset",
    tag = "usage",
    operation_id = "reset_key_usage",
    summary = "Start the key's lifetime spend (limit_total_usd) again from now: moves \
               cost_reset_at",
    params(Id),
    responses(
        (status = 200, description = "The key's usage after the reset", body = Usage),
        NotFound,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn reset_key(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Usage>> {
    reset(&state, Entity::Key, id).await
}

async fn read(
    state: &AppState,
    caller: &Caller,
    entity: Entity,
    id: i64,
) -> ApiResult<Json<Usage>> {
    let mut conn = state.pool.acquire().await?;
    let limits = load(&mut conn, entity, id).await?;
    if !caller.may_read_user(limits.user_id) {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(
        usage(&mut conn, entity, id, &limits, Utc::now()).await?,
    ))
}

async fn reset(state: &AppState, entity: Entity, id: i64) -> ApiResult<Json<Usage>> {
    let mut tx = state.pool.begin().await?;
    let now = Utc::now();
    let done = match entity {
        Entity::User => sqlx::query!(
            "UPDATE users SET cost_reset_at = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL",
            id,
            now
        )
        .execute(&mut *tx)
        .await?,
        Entity::Key => sqlx::query!(
            "UPDATE keys SET cost_reset_at = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL",
            id,
            now
        )
        .execute(&mut *tx)
        .await?,
    };
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    let limits = load(&mut tx, entity, id).await?;
    let usage = usage(&mut tx, entity, id, &limits, now).await?;
    tx.commit().await?;
    tracing::info!(entity = entity.name(), id, "lifetime spend reset");
    Ok(Json(usage))
}

/// The user of `id` and the cost windows of its limits, at `now`: the
/// numbers the usage API shows and the leases are granted from. Spend is
/// read only for windows that have a limit.
pub(crate) async fn cost_windows(
    conn: &mut PgConnection,
    entity: Entity,
    id: i64,
    now: DateTime<Utc>,
) -> ApiResult<(i64, Vec<CostWindow>)> {
    let limits = load(conn, entity, id).await?;
    let tz: Tz = limits.timezone.parse().unwrap_or(chrono_tz::UTC);
    let windows = windows_of(conn, entity, id, &limits, tz, now, true).await?;
    Ok((limits.user_id, windows))
}

async fn load(conn: &mut PgConnection, entity: Entity, id: i64) -> ApiResult<Limits> {
    // A key has no RPM of its own and takes the daily reset from its user.
    let limits = match entity {
        Entity::User => {
            sqlx::query_as!(
                Limits,
                "SELECT u.id AS user_id, u.limit_total_usd, u.limit_5h_usd, u.limit_5h_mode, \
                   u.limit_daily_usd, u.limit_weekly_usd, u.limit_monthly_usd, \
                   u.limit_concurrent_sessions, u.rpm, u.daily_reset_mode, u.daily_reset_time, \
                   u.cost_reset_at, u.five_hour_opened_at, s.timezone \
                 FROM users u CROSS JOIN settings s \
                 WHERE u.id = $1 AND u.deleted_at IS NULL",
                id
            )
            .fetch_optional(conn)
            .await?
        }
        Entity::Key => {
            sqlx::query_as!(
                Limits,
                "SELECT u.id AS user_id, k.limit_total_usd, k.limit_5h_usd, k.limit_5h_mode, \
                   k.limit_daily_usd, k.limit_weekly_usd, k.limit_monthly_usd, \
                   k.limit_concurrent_sessions, NULL::integer AS rpm, u.daily_reset_mode, u.daily_reset_time, \
                   k.cost_reset_at, k.five_hour_opened_at, s.timezone \
                 FROM users u JOIN keys k ON k.user_id = u.id CROSS JOIN settings s \
                 WHERE k.id = $1 AND k.deleted_at IS NULL",
                id
            )
            .fetch_optional(conn)
            .await?
        }
    };
    limits.ok_or(ApiError::NotFound)
}

/// Spend, limit and reset of each cost window, in SPEC §4 order
/// (`limited_only`: the windows that have a limit).
async fn windows_of(
    conn: &mut PgConnection,
    entity: Entity,
    id: i64,
    l: &Limits,
    tz: Tz,
    now: DateTime<Utc>,
    limited_only: bool,
) -> ApiResult<Vec<CostWindow>> {
    let reset_time =
        NaiveTime::parse_from_str(&l.daily_reset_time, "%H:%M").unwrap_or(NaiveTime::MIN);
    let daily = if l.daily_reset_mode == "rolling" {
        windows::daily_rolling(now)
    } else {
        windows::daily_fixed(tz, reset_time, now)
    };
    let five_hours = if l.limit_5h_mode == "fixed" {
        windows::five_hours_fixed(l.five_hour_opened_at, now)
    } else {
        windows::five_hours_rolling(now)
    };
    let plan = [
        (
            "usd_total",
            windows::total(l.cost_reset_at),
            l.limit_total_usd,
        ),
        ("usd_5h", five_hours, l.limit_5h_usd),
        ("daily_quota", daily, l.limit_daily_usd),
        ("usd_weekly", windows::weekly(tz, now), l.limit_weekly_usd),
        (
            "usd_monthly",
            windows::monthly(tz, now),
            l.limit_monthly_usd,
        ),
    ];
    let mut out = Vec::with_capacity(plan.len());
    for (limit_type, window, limit) in plan {
        if limited_only && limit.is_none() {
            continue;
        }
        let (spent, oldest) = spent(conn, entity, id, window, now).await?;
        let (mode, reset_at, rolling_hours) = match window.reset {
            Reset::Never => ("lifetime", None, None),
            Reset::NextCharge => ("fixed", None, None),
            Reset::At(t) => ("fixed", Some(t), None),
            Reset::Rolling(length) => (
                "rolling",
                oldest.map(|t| t + length),
                Some(length.num_hours()),
            ),
        };
        out.push(CostWindow {
            limit_type,
            mode,
            spent_usd: spent,
            limit_usd: limit,
            remaining_usd: limit.map(|l| (l - spent).max(Decimal::ZERO)),
            window_start: window.start,
            reset_at,
            rolling_hours,
        });
    }
    Ok(out)
}

async fn usage(
    conn: &mut PgConnection,
    entity: Entity,
    id: i64,
    l: &Limits,
    now: DateTime<Utc>,
) -> ApiResult<Usage> {
    let tz: Tz = l.timezone.parse().unwrap_or(chrono_tz::UTC);
    let out = windows_of(conn, entity, id, l, tz, now, false).await?;
    let active_since = now - TimeDelta::seconds(ACTIVE_SECS);
    let sessions = match entity {
        Entity::User => sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM sessions WHERE user_id = $1 AND last_seen_at > $2"#,
            id,
            active_since
        )
        .fetch_one(&mut *conn)
        .await?,
        Entity::Key => sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM sessions WHERE key_id = $1 AND last_seen_at > $2"#,
            id,
            active_since
        )
        .fetch_one(&mut *conn)
        .await?,
    };
    let rpm = match entity {
        Entity::User => {
            let count = sqlx::query_scalar!(
                r#"SELECT count(*) AS "count!" FROM message_request
                   WHERE user_id = $1 AND started_at > $2 AND started_at <= $3 AND blocked_by IS NULL"#,
                id,
                now - TimeDelta::minutes(1),
                now
            )
            .fetch_one(&mut *conn)
            .await?;
            Some(Counted {
                current: count,
                limit: l.rpm.map(i64::from),
            })
        }
        Entity::Key => None,
    };
    Ok(Usage {
        entity: entity.name(),
        id,
        user_id: l.user_id,
        at: now,
        timezone: tz.name().to_string(),
        windows: out,
        concurrent_sessions: Counted {
            current: sessions,
            limit: l.limit_concurrent_sessions.map(i64::from),
        },
        rpm,
    })
}

/// Spend in `window` up to `now`, and (rolling windows) the time of the
/// oldest charge in it.
async fn spent(
    conn: &mut PgConnection,
    entity: Entity,
    id: i64,
    window: Window,
    now: DateTime<Utc>,
) -> ApiResult<(Decimal, Option<DateTime<Utc>>)> {
    if window.reset == Reset::NextCharge {
        return Ok((Decimal::ZERO, None));
    }
    // Whole hours from the rollup, from the first hour boundary at or after
    // the start; the minutes before it from the audit log.
    let edge = window.start.map(|start| {
        let hour = start.duration_trunc(TimeDelta::hours(1)).unwrap_or(start);
        if hour == start {
            start
        } else {
            hour + TimeDelta::hours(1)
        }
    });
    let (from_rollup, from_log) = match entity {
        Entity::User => sqlx::query!(
            "SELECT \
               (SELECT sum(cost_usd) FROM usage_rollup \
                 WHERE entity_type = 'user' AND entity_id = $1 \
                   AND ($2::timestamptz IS NULL OR bucket_start >= $2)) AS from_rollup, \
               (SELECT sum(cost_usd) FROM message_request \
                 WHERE user_id = $1 AND blocked_by IS NULL AND started_at >= $3 AND started_at < $2) AS from_log",
            id,
            edge,
            window.start
        )
        .fetch_one(&mut *conn)
        .await
        .map(|r| (r.from_rollup, r.from_log))?,
        Entity::Key => sqlx::query!(
            "SELECT \
               (SELECT sum(cost_usd) FROM usage_rollup \
                 WHERE entity_type = 'key' AND entity_id = $1 \
                   AND ($2::timestamptz IS NULL OR bucket_start >= $2)) AS from_rollup, \
               (SELECT sum(cost_usd) FROM message_request \
                 WHERE key_id = $1 AND blocked_by IS NULL AND started_at >= $3 AND started_at < $2) AS from_log",
            id,
            edge,
            window.start
        )
        .fetch_one(&mut *conn)
        .await
        .map(|r| (r.from_rollup, r.from_log))?,
    };
    let spent = from_rollup.unwrap_or_default() + from_log.unwrap_or_default();
    let oldest = match (window.reset, entity) {
        (Reset::Rolling(_), Entity::User) => {
            sqlx::query_scalar!(
                "SELECT min(started_at) FROM message_request \
                 WHERE user_id = $1 AND blocked_by IS NULL AND cost_usd > 0 \
                   AND started_at >= $2 AND started_at <= $3",
                id,
                window.start,
                now
            )
            .fetch_one(&mut *conn)
            .await?
        }
        (Reset::Rolling(_), Entity::Key) => {
            sqlx::query_scalar!(
                "SELECT min(started_at) FROM message_request \
                 WHERE key_id = $1 AND blocked_by IS NULL AND cost_usd > 0 \
                   AND started_at >= $2 AND started_at <= $3",
                id,
                window.start,
                now
            )
            .fetch_one(&mut *conn)
            .await?
        }
        _ => None,
    };
    Ok((spent, oldest))
}
